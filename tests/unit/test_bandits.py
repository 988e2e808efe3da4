"""Bandit routing on synthetic Bernoulli click streams whose better arm is known: River's
policies find it, the logged selection probabilities are the policies' own (analytic,
calibrated, unbiased inverse propensity estimates), River's replay reproduces the online
run, delayed rewards still converge, designs are validated, and pickling is seamless."""

import copy
import math
import pickle
import random
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from river import bandit
from river.bandit.base import ArmID
from scipy import special

from online_models.versions import bandits
from online_models.versions.bandits import BanditDesign, BanditError, BanditRouter, Decision

ARMS = ("v1", "v2")
RATES = {"v1": 0.05, "v2": 0.10}  # click rates: v2 is the better arm
ORACLE = 0.10
N = 20_000
#: The last 20 % of the decisions: from event 16,000 on every policy has had thousands of
#: rewards from v2 and hundreds from v1 (see the first test's docstring).
TAIL = N // 5
#: Uniform random routing's expected regret: half the decisions lose 0.10 - 0.05.
UNIFORM_REGRET = N * (ORACLE - (RATES["v1"] + RATES["v2"]) / 2)
DESIGNS = {
    "thompson": BanditDesign("thompson", ARMS, seed=1),
    "epsilon_greedy": BanditDesign("epsilon_greedy", ARMS, seed=1, params={"epsilon": 0.1}),
    # delta scales UCB's bonus delta * sqrt(2 ln n / n_arm), which is a confidence bound for
    # rewards of standard deviation delta: 0.3 = sqrt(0.10 * 0.90), the better arm's.
    "ucb": BanditDesign("ucb", ARMS, seed=1, params={"delta": 0.3}),
}

Step = tuple[dict[str, float], Decision, float]  # probabilities before, decision, reward


def route(router: BanditRouter, rates: dict[str, float], n: int, seed: int) -> list[Step]:
    """`n` events, each rewarded at once with a click drawn at its arm's rate."""
    clicks = random.Random(seed)
    steps = []
    for _ in range(n):
        before = router.probabilities()
        decision = router.choose()
        assert decision.probability == before[decision.arm]
        reward = float(clicks.random() < rates[decision.arm])
        router.reward(decision.arm, reward)
        steps.append((before, decision, reward))
    return steps


def replay(design: BanditDesign, steps: list[Step]) -> tuple[float, int]:
    """River's `evaluate_offline` of a fresh policy of `design` on the logged (arm, reward)
    pairs: its reward sum on the events where it pulled the logged arm, and their number."""

    def history() -> Iterator[tuple[list[ArmID], dict[str, Any], ArmID, float]]:
        for _, decision, reward in steps:
            yield list(ARMS), {}, decision.arm, reward

    total, used = bandit.evaluate_offline(design.new_policy(), history())
    summed = total.get()
    assert summed is not None
    return summed, used


@pytest.fixture(scope="module")
def runs() -> dict[str, tuple[BanditRouter, list[Step]]]:
    """One 20,000-event run per policy, shared by the tests that read it (not changed)."""
    result = {}
    for seed, (name, design) in enumerate(DESIGNS.items()):
        router = BanditRouter(design)
        result[name] = (router, route(router, RATES, N, seed=100 + seed))
    return result


@pytest.mark.parametrize("policy", DESIGNS)
def test_each_policy_sends_the_tail_to_the_better_arm_with_less_regret_than_uniform(
    runs: dict[str, tuple[BanditRouter, list[Step]]], policy: str
) -> None:
    """Expected: epsilon-greedy (0.1) explores v1 on 5 % of decisions once v2 is its greedy
    arm, so ~95 % of the tail goes to v2 (binomial sd 0.3 % on 4,000); Thompson sampling and
    UCB pull v1 only O(log n) times (Lai-Robbins: ~ln(n) / KL(0.05 || 0.10) ~ 600 pulls for
    Thompson), so the tail is ~99 % v2. Regret: epsilon-greedy's expected regret is
    ~N * 0.05 * 0.05 = 50 plus its start, the others' at most ~0.05 * 600 = 30; the
    realized regret adds the clicks' noise, sd sqrt(N * 0.09) = 42. Half of uniform
    routing's 500 is 4.5 sd above the worst of these: a policy that learned nothing fails."""
    router, steps = runs[policy]
    tail = [decision.arm for _, decision, _ in steps[-TAIL:]]
    assert tail.count("v2") / TAIL >= 0.90
    assert router.decisions == N and sum(router.counts.values()) == N
    assert router.shares() == {arm: router.counts[arm] / N for arm in ARMS}
    assert router.total_reward == sum(reward for _, _, reward in steps)
    assert router.regret(ORACLE) == pytest.approx(N * ORACLE - router.total_reward)
    assert router.regret(ORACLE) < UNIFORM_REGRET / 2


@pytest.mark.parametrize("policy", DESIGNS)
def test_logged_probabilities_are_calibrated_against_the_arms_river_pulled(
    runs: dict[str, tuple[BanditRouter, list[Step]]], policy: str
) -> None:
    """Each arm's number of pulls minus the sum of its probabilities before each pull is a
    martingale of variance sum p (1 - p): within 4 sd unless the probabilities are not the
    ones River pulls with (then the difference grows with the number of decisions)."""
    router, steps = runs[policy]
    for arm in ARMS:
        expected = sum(before[arm] for before, _, _ in steps)
        variance = sum(before[arm] * (1 - before[arm]) for before, _, _ in steps)
        assert abs(router.counts[arm] - expected) <= 4 * math.sqrt(variance) + 1e-9
    for before, decision, _ in steps:
        assert sum(before.values()) == pytest.approx(1.0, abs=1e-12)
        assert 0 < decision.probability <= 1


def test_epsilon_greedy_probabilities_are_the_analytic_ones_with_burn_in_and_decay() -> None:
    """Expected, from the rewards fed so far: during the burn-in (an arm with fewer than 5
    rewards) the first such arm with probability 1; then epsilon_n = 0.2 exp(-0.0005 n) after
    n rewards, 1 - epsilon_n / 2 for the first arm of highest mean, epsilon_n / 2 for the
    other. Computed here from the test's own sums, not from River's state. The first 300
    events get no click, so that the means tie at 0 after the burn-in and River exploits
    the first arm of the tie, v1."""
    design = BanditDesign(
        "epsilon_greedy", ARMS, seed=3, params={"epsilon": 0.2, "decay": 0.0005, "burn_in": 5}
    )
    router = BanditRouter(design)
    clicks = random.Random(3)
    sums, counts = dict.fromkeys(ARMS, 0.0), dict.fromkeys(ARMS, 0)
    for n in range(4_000):
        burning = [arm for arm in ARMS if counts[arm] < 5]
        if burning:
            expected = {arm: float(arm == burning[0]) for arm in ARMS}
        else:
            epsilon = 0.2 * math.exp(-n * 0.0005)
            means = {arm: sums[arm] / counts[arm] for arm in ARMS}
            greedy = "v2" if means["v2"] > means["v1"] else "v1"
            expected = {arm: 1 - epsilon / 2 if arm == greedy else epsilon / 2 for arm in ARMS}
        assert router.probabilities() == pytest.approx(expected, rel=1e-12)
        decision = router.choose()
        assert decision.probability == pytest.approx(expected[decision.arm], rel=1e-12)
        reward = float(clicks.random() < RATES[decision.arm] and n >= 300)
        router.reward(decision.arm, reward)
        sums[decision.arm] += reward
        counts[decision.arm] += 1
    assert counts["v1"] >= 5 and counts["v2"] >= 5  # the burn-in happened


def test_thompson_inverse_propensity_estimates_each_arms_click_rate(
    runs: dict[str, tuple[BanditRouter, list[Step]]],
) -> None:
    """(1/N) sum 1[arm pulled] reward / p is unbiased for the arm's rate when p is the true
    selection probability; its variance is sum (rate / p_t - rate^2) / N^2 over every step's
    probability of the arm (Bernoulli rewards). Within 4 sd: for v2 that is ~0.009 (tight);
    for v1, which Thompson sampling starves (p down to ~1e-3), it is wide, which is inverse
    propensity weighting's known price. Logging 1 - p, or 0.5, misses v2 by > 10 sd."""
    _, steps = runs["thompson"]
    for arm, rate in RATES.items():
        estimate = sum((d.arm == arm) * reward / d.probability for _, d, reward in steps) / len(
            steps
        )
        variance = sum(rate / before[arm] - rate**2 for before, _, _ in steps) / len(steps) ** 2
        assert abs(estimate - rate) <= 4 * math.sqrt(variance)
        if arm == "v2":
            assert 4 * math.sqrt(variance) < 0.01


def test_replay_of_a_same_seed_policy_reproduces_every_decision_and_the_reward(
    runs: dict[str, tuple[BanditRouter, list[Step]]],
) -> None:
    """River's `evaluate_offline` pulls its policy on each logged event and learns only when
    it pulls the logged arm. A fresh policy of the same design, fed rewards at once as the
    online run was, is in the same state with the same random state at every event: it
    pulls every logged arm (all N events used) and its reward sum equals the online total
    exactly. This also shows that computing the probabilities never touched River's random
    state: the instrumented router routed as the bare policy does."""
    for name, design in DESIGNS.items():
        router, steps = runs[name]
        summed, used = replay(design, steps)
        assert used == N
        assert summed == router.total_reward


def test_replay_on_uniform_logs_estimates_thompson_samplings_online_reward(
    runs: dict[str, tuple[BanditRouter, list[Step]]],
) -> None:
    """Replay is unbiased when the logging policy chose uniformly at random (Li et al.
    2011): epsilon-greedy with epsilon = 1 logs probability 1/2 for every decision, and
    Thompson sampling replayed on its logs matches ~N/2 events, whose mean reward estimates
    Thompson sampling's online mean reward over as many events. Each mean has a per-event
    variance of at most ~0.1 (clicks of rate <= 0.10, 0.09, plus the spread of the
    policy's own pulls of v1): within 4 sd of the difference, ~0.018. And the replay tells
    Thompson sampling (~0.098 expected) from the logging policy (0.075): the gap exceeds 4
    sd of the replay estimate alone, ~0.013. (River's replay ignores the logged
    probabilities: on logs of a bandit it is biased.)"""
    uniform = BanditRouter(BanditDesign("epsilon_greedy", ARMS, seed=5, params={"epsilon": 1}))
    logs = route(uniform, RATES, N, seed=55)
    assert {p for before, _, _ in logs for p in before.values()} == {0.5}
    summed, used = replay(DESIGNS["thompson"], logs)
    replayed = summed / used
    _, steps = runs["thompson"]
    online = sum(reward for _, _, reward in steps[:used]) / used
    tolerance = 4 * math.sqrt(0.1 / used + 0.1 / used)
    assert abs(replayed - online) <= tolerance
    assert replayed - 0.075 > 4 * math.sqrt(0.1 / used)


@pytest.mark.parametrize("policy", DESIGNS)
def test_delayed_out_of_order_rewards_still_converge(policy: str) -> None:
    """Each reward arrives after 300 later decisions on average, in random order (one of
    the 300 pending, picked at random, per decision; the rest at the end). The bounds of
    the immediate case, whose regret bound has a margin of 4.5 sd, hold: the delay costs
    ~300 decisions at the start without any reward (at most 300 * 0.05 = 15 of regret)
    and decisions on means 300 rewards old (a few hundred more pulls of v1 at most)."""
    router = BanditRouter(DESIGNS[policy])
    clicks, delays = random.Random(7), random.Random(8)
    pending: list[tuple[str, float]] = []
    tail = []
    for step in range(N):
        decision = router.choose()
        pending.append((decision.arm, float(clicks.random() < RATES[decision.arm])))
        if len(pending) > 300:
            router.reward(*pending.pop(delays.randrange(len(pending))))
        if step >= N - TAIL:
            tail.append(decision.arm)
    delays.shuffle(pending)
    for arm, reward in pending:
        router.reward(arm, reward)
    assert router.policy._n == N  # every reward arrived
    assert tail.count("v2") / TAIL >= 0.90
    assert router.regret(ORACLE) < UNIFORM_REGRET / 2


def miller_exact(a1: int, b1: int, a2: int, b2: int) -> float:
    """P(X2 > X1) for Beta variables in exact rational arithmetic, Evan Miller's sum as
    written (no logs, no shorter-sum switch, no rescaling)."""

    def beta(a: int, b: int) -> Fraction:
        return Fraction(math.factorial(a - 1) * math.factorial(b - 1), math.factorial(a + b - 1))

    return float(
        sum(beta(a1 + i, b1 + b2) / ((b2 + i) * beta(1 + i, b2) * beta(a1, b1)) for i in range(a2))
    )


@pytest.mark.parametrize(
    "state",
    [
        (1, 1, 1, 1),  # the prior: 1/2 each
        (3, 85, 150, 1300),  # a starved loser against a leader
        (30, 600, 45, 700),  # close arms: sums of 30 terms (a loop) and 45 (numpy)
        (62, 409, 309, 269),  # 309 and 62 terms, numpy; the loser's 2.6e-45 kept
        (5, 40, 50, 900),  # the leader has fewer rewards; 50 > 40 terms switched to 40
    ],
)
def test_two_arm_thompson_probabilities_are_exact(state: tuple[int, int, int, int]) -> None:
    """Against Evan Miller's sum in exact rational arithmetic (no logs, no switch to the
    shorter sum, no window), to 1e-9 relative: the double-precision sums carry rounding
    errors of ~1e-12 for a few hundred terms."""
    a0, b0, a1, b1 = state
    first, second = miller_exact(a1, b1, a0, b0), miller_exact(a0, b0, a1, b1)
    assert bandits._beta_greater(a1, b1, a0, b0) == pytest.approx(first, rel=1e-9)
    assert bandits._beta_greater(a0, b0, a1, b1) == pytest.approx(second, rel=1e-9)
    assert bandits._two_beta_chances(*state) == pytest.approx((first, second), rel=1e-9)


def test_the_loop_and_numpy_sums_agree_at_millions_of_rewards(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same sums through both code paths. To 1e-7 relative: with millions of rewards
    the log-gamma values are ~10^7, whose rounding (~1e-9 absolute) is a relative error
    after exp. At 10^10 rewards the first term underflows and the loop's terms would
    overflow without rescaling: the result is 0, not NaN."""
    states = [(30, 600, 40, 700), (2_000_000, 3_000_000, 35, 1_000), (10**10, 10**10, 40, 10**10)]
    loop = [bandits._beta_greater(*state) for state in states]
    monkeypatch.setattr(bandits, "_LOOP_TERMS", 0)
    vectorized = [bandits._beta_greater(*state) for state in states]
    assert loop == pytest.approx(vectorized, rel=1e-7)
    assert 0 < loop[1] < 1 and loop[2] == 0.0


@pytest.mark.parametrize(
    "state",
    [
        (5_000, 45_000, 5_200, 44_800),  # even arms: the mode is inside the sum
        (40_000, 160_000, 60_000, 90_000),  # P ~ 1: the sum ends past the mode
        (3_000, 7_000, 2_500, 8_000),  # P ~ 0: the sum ends before the mode
    ],
)
def test_the_windowed_sum_equals_the_full_sum(state: tuple[int, int, int, int]) -> None:
    """Long sums keep the terms within 10 sd of the mode; every term, summed here in
    logs, gives the same value to 1e-9 relative (the rounding of the log-gamma values)."""
    a1, b1, a2, b2 = state
    if b1 < a2:
        a1, b1, a2, b2 = b2, a2, b1, a1
    i = np.arange(a2, dtype=float)
    log_terms = (
        special.gammaln(b2 + i)
        - special.gammaln(i + 1)
        - special.gammaln(b2)
        + special.betaln(a1 + i, b1 + b2)
        - special.betaln(a1, b1)
    )
    assert bandits._beta_greater(*state) == pytest.approx(
        float(np.exp(log_terms).sum()), rel=1e-9, abs=1e-300
    )


@pytest.mark.parametrize("arms", [("v1", "v2"), ("v1", "v2", "v3")])
def test_thompson_probabilities_match_the_frequency_of_rivers_pulls(arms: tuple[str, ...]) -> None:
    """After 300 events, copies of the policy pulled 4,000 times without learning choose
    each arm with its probability: within 4 sd of the frequency (binomial) and, with three
    arms, of the estimate (1,000 draws) plus its smoothing (1 / 1,003)."""
    rates = {"v1": 0.10, "v2": 0.12, "v3": 0.08}
    router = BanditRouter(BanditDesign("thompson", arms, seed=9))
    route(router, rates, 300, seed=9)
    chances = router.probabilities()
    pulls = 4_000
    policy = copy.deepcopy(router.policy)
    chosen = [policy.pull(list(arms)) for _ in range(pulls)]
    for arm in arms:
        p = chances[arm]
        variance = p * (1 - p) * (1 / pulls + (1 / bandits.THOMPSON_DRAWS if len(arms) > 2 else 0))
        smoothing = 1 / (bandits.THOMPSON_DRAWS + len(arms)) if len(arms) > 2 else 0
        assert abs(chosen.count(arm) / pulls - p) <= 4 * math.sqrt(variance) + smoothing


@pytest.mark.parametrize(
    "design",
    [
        *DESIGNS.values(),
        BanditDesign("thompson", ("v1", "v2", "v3"), seed=4),
        BanditDesign("ucb", ARMS, seed=2, params={"delta": 1.0, "burn_in": 3}),
    ],
)
def test_a_pickled_router_continues_exactly_as_the_original(design: BanditDesign) -> None:
    """Pickled after 200 events (rewards pending for the last 50), the copy makes the same
    next 200 decisions, with the same probabilities, as the original and as a third router
    of the same design fed the same calls from the start."""
    rates = {"v1": 0.05, "v2": 0.10, "v3": 0.08}
    clicks = random.Random(11)
    rewards = [clicks.random() for _ in range(400)]  # reward = that draw < the arm's rate
    original, twin = BanditRouter(design), BanditRouter(design)
    pending: dict[int, list[tuple[str, float]]] = {0: [], 1: []}
    for step in range(200):
        for index, router in enumerate((original, twin)):
            d = router.choose()
            pending[index].append((d.arm, float(rewards[step] < rates[d.arm])))
            if step < 150:
                router.reward(*pending[index].pop())
    restored: BanditRouter = pickle.loads(pickle.dumps(original))
    histories: list[list[Any]] = []
    for index, router in enumerate((original, restored, twin)):
        queue = list(pending[0 if index < 2 else 1])  # the restored copy: the original's
        history = []
        for step in range(200, 400):
            d = router.choose()
            history.append(d)
            queue.append((d.arm, float(rewards[step] < rates[d.arm])))
            router.reward(*queue.pop(0))
        histories.append(history)
    assert histories[0] == histories[1] == histories[2]
    assert original.counts == restored.counts and original.total_reward == restored.total_reward


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"policy": "thompsn"}, "unknown bandit policy 'thompsn' (did you mean 'thompson'?)"),
        ({"policy": "softmax"}, "use one of thompson, epsilon_greedy, ucb"),
        ({"arms": ("v1",)}, "at least two distinct arms"),
        ({"arms": ("v1", "v1")}, "at least two distinct arms"),
        ({"arms": "v1v2"}, "not a sequence of arm names"),
        ({"policy": "epsilon_greedy", "params": {}}, "needs param 'epsilon'"),
        (
            {"policy": "epsilon_greedy", "params": {"epsilon": 1.5}},
            "epsilon=1.5 is not a probability",
        ),
        ({"params": {"delta": -1}}, "delta=-1.0 must be positive"),
        ({"params": {"delta": math.nan}}, "is not a finite number"),
        ({"params": {"delta": "1"}}, "is not a finite number"),
        (
            {"params": {"delta": 1, "epsilon": 0.1}},
            "ucb has no param 'epsilon': it takes delta, burn_in",
        ),
        ({"params": {"delta": 1, "burnin": 3}}, "(did you mean 'burn_in'?)"),
        ({"params": {"delta": 1, "burn_in": 2.5}}, "burn_in=2.5 is not a whole number"),
        ({"seed": -1}, "seed=-1 is not a non-negative integer"),
        ({"reward": "revenue"}, "the reward is the event's label"),
    ],
)
def test_bad_designs_are_refused_with_what_to_do(kwargs: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"policy": "ucb", "arms": ARMS, "params": {"delta": 1.0}}
    with pytest.raises(BanditError) as raised:
        BanditDesign(**{**fields, **kwargs})
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize(
    ("policy", "arm", "value", "message"),
    [
        ("ucb", "v3", 1.0, "arm 'v3' is not in the design: reward one of v1, v2"),
        ("ucb", "v1", math.inf, "is not a finite number"),
        ("thompson", "v1", 0.5, "route real-valued outcomes with epsilon_greedy or ucb"),
    ],
)
def test_bad_rewards_are_refused_with_what_to_do(
    policy: str, arm: str, value: float, message: str
) -> None:
    router = BanditRouter(DESIGNS[policy])
    with pytest.raises(BanditError) as raised:
        router.reward(arm, value)
    assert message in str(raised.value)
    assert router.policy._n == 0 and router.total_reward == 0.0


def test_real_valued_rewards_route_with_epsilon_greedy_and_ucb() -> None:
    """Revenue-like rewards (v2's mean 3.0 against v1's 2.0, Gaussian noise of sd 1): after
    2,000 events both policies serve v2 on at least 90 % of the last 400 (epsilon-greedy's
    expected share is 95 %; UCB, with delta = 1 the noise's sd, pulls v1 while its bonus
    sqrt(2 ln n / n_v1) exceeds the gap of 1: ~2 ln(2000) = 15 pulls, a few dozen with the
    noise, against 400 allowed in the tail)."""
    means = {"v1": 2.0, "v2": 3.0}
    for design in (
        BanditDesign("epsilon_greedy", ARMS, seed=6, params={"epsilon": 0.1}),
        BanditDesign("ucb", ARMS, seed=6, params={"delta": 1.0}),
    ):
        router, noise, tail = BanditRouter(design), random.Random(6), []
        for step in range(2_000):
            decision = router.choose()
            router.reward(decision.arm, noise.gauss(means[decision.arm], 1.0))
            if step >= 1_600:
                tail.append(decision.arm)
        assert tail.count("v2") / len(tail) >= 0.90
