"""Bandit routing among model versions, with the probability of every decision.

For each event a River policy (`river.bandit`: ThompsonSampling, EpsilonGreedy or UCB,
seeded) picks the version that serves it, and the event's label is the reward of that
version, given whenever the label arrives. Each `Decision` carries the probability with
which the policy chose its arm, computed from the policy's state before the pull without
touching River's random state (the routing is exactly an un-instrumented policy's), for
off-policy evaluation (inverse propensity weighting):

- epsilon_greedy (exact): River explores with probability epsilon (times
  exp(-decay * rewards so far) with a decay) by a uniform choice among the K arms, and
  otherwise exploits the first arm, in the design's order, of highest mean reward: that arm
  has 1 - epsilon + epsilon / K, every other arm epsilon / K.
- ucb (exact): River pulls the arm of highest upper confidence bound (an arm without a
  reward has an infinite one) and breaks ties uniformly at random: 1 / (number of tied
  arms) for each tied arm, 0 for the others.
- thompson: River draws from each arm's Beta posterior (a Beta(1, 1) prior updated with
  0/1 rewards) and pulls the largest draw. With two arms the probability is exact: the
  closed form of P(X > Y) for Beta variables with integer parameters (Evan Miller,
  "Formulas for Bayesian A/B testing"), in double precision (~1e-11 relative with
  thousands of rewards, ~1e-8 with millions). It costs ~5-15 microseconds per decision
  once one arm leads (the sums are as long as the trailing arm's counts), and grows as
  the square root of the rewards while the arms stay even (~70 microseconds at 10^4
  events, ~160 at 10^6, ~380 at 10^7). With three or more arms it is estimated from
  `THOMPSON_DRAWS` posterior draws of a numpy generator seeded with (seed, decision
  number), smoothed so that no arm gets 0: (wins + 1) / (draws + K); ~200-400
  microseconds per decision.
- burn_in (every policy): while an arm has fewer than `burn_in` rewards, River pulls the
  first such arm, with probability 1. With delayed rewards it keeps pulling that arm until
  its rewards arrive.

The routing is deterministic: the same design fed the same calls makes the same
decisions, and a pickled router continues exactly as the original would have.

>>> design = BanditDesign("epsilon_greedy", ("v1", "v2"), seed=42, params={"epsilon": 0.1})
>>> router = BanditRouter(design)
>>> decision = router.choose()  # no reward yet: the greedy arm is v1, the first of the ties
>>> decision
Decision(arm='v1', probability=0.95)
>>> router.reward(decision.arm, 1.0)  # the label of the event it served, when it arrives
>>> router.probabilities()
{'v1': 0.95, 'v2': 0.05}
>>> router.shares(), router.regret(oracle_mean=0.5)
({'v1': 1.0, 'v2': 0.0}, -0.5)
"""

import difflib
import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from river import bandit, proba

__all__ = [
    "POLICIES",
    "THOMPSON_DRAWS",
    "BanditDesign",
    "BanditError",
    "BanditRouter",
    "Decision",
]

POLICIES: tuple[str, ...] = ("thompson", "epsilon_greedy", "ucb")
_CLASSES: dict[str, Callable[..., bandit.base.Policy]] = {
    "thompson": bandit.ThompsonSampling,
    "epsilon_greedy": bandit.EpsilonGreedy,
    "ucb": bandit.UCB,
}
#: Draws per decision behind Thompson sampling's probabilities with three or more arms:
#: a standard error of at most 0.5 / sqrt(1000) ~ 0.016 on each probability.
THOMPSON_DRAWS = 1000
_LOOP_TERMS = 40  # Thompson, two arms: shorter sums are faster in a Python loop
# Constructor arguments that the router sets itself rather than the design's params.
_NOT_PARAMS = {"self", "reward_obj", "reward_scaler", "seed"}


class BanditError(ValueError):
    """A bandit that cannot be designed or fed as asked; `str()` is one sentence saying
    what is wrong and what to do."""


def _accepted(policy: str) -> dict[str, inspect.Parameter]:
    """The River policy's own parameters, by name (required ones have no default)."""
    signature = inspect.signature(_CLASSES[policy].__init__)
    return {n: p for n, p in signature.parameters.items() if n not in _NOT_PARAMS}


def _check_param(policy: str, name: str, value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
    ):
        raise BanditError(f"{policy} param {name}={value!r} is not a finite number: set one")
    value = float(value)
    if name == "epsilon" and not 0 <= value <= 1:
        raise BanditError(
            f"epsilon={value!r} is not a probability: set the share of explored decisions "
            "between 0 and 1 (e.g. 0.1)"
        )
    if name == "decay" and value < 0:
        raise BanditError(f"decay={value!r} is negative: set 0 (no decay) or a positive rate")
    if name == "delta" and value <= 0:
        raise BanditError(
            f"delta={value!r} must be positive: it scales UCB's confidence bonus (1 is UCB1; "
            "about the rewards' standard deviation explores less)"
        )
    if name == "burn_in" and (value < 0 or not value.is_integer()):
        raise BanditError(
            f"burn_in={value!r} is not a whole number of rewards per arm: set 0 or more"
        )


@dataclass(frozen=True)
class BanditDesign:
    """Which River policy routes among which arms (model versions), seeded, and its
    parameters (`epsilon`, `decay` and `burn_in` for epsilon_greedy, `delta` and
    `burn_in` for ucb, `burn_in` for thompson). The reward is the event's label.

    >>> BanditDesign("ucb", ("v1", "v2"), params={"delta": 0.3}).params
    {'delta': 0.3}
    >>> BanditDesign("thompsn", ("v1", "v2"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    online_models.versions.bandits.BanditError: unknown bandit policy 'thompsn' (did you ...
    """

    policy: str
    arms: tuple[str, ...]
    seed: int = 0
    params: Mapping[str, float] = field(default_factory=dict, hash=False)
    reward: Literal["label"] = "label"

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            close = difflib.get_close_matches(str(self.policy), POLICIES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise BanditError(
                f"unknown bandit policy {self.policy!r}{hint}: use one of {', '.join(POLICIES)}"
            )
        if isinstance(self.arms, str) or not all(isinstance(a, str) and a for a in self.arms):
            raise BanditError(
                f"arms={self.arms!r} is not a sequence of arm names: pass e.g. ('v1', 'v2')"
            )
        object.__setattr__(self, "arms", tuple(self.arms))
        if len(set(self.arms)) < 2 or len(set(self.arms)) != len(self.arms):
            raise BanditError(
                f"arms={self.arms!r} must name at least two distinct arms: a bandit chooses "
                "among versions, pass e.g. ('v1', 'v2')"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise BanditError(f"seed={self.seed!r} is not a non-negative integer: set one")
        if self.reward != "label":
            raise BanditError(
                f"reward={self.reward!r} is unknown: the reward is the event's label ('label')"
            )
        if not isinstance(self.params, Mapping):
            raise BanditError(f"params={self.params!r} is not a mapping: pass e.g. {{}}")
        object.__setattr__(self, "params", dict(self.params))
        accepted = _accepted(self.policy)
        for name, value in self.params.items():
            if name not in accepted:
                close = difflib.get_close_matches(str(name), list(accepted), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise BanditError(
                    f"{self.policy} has no param {name!r}{hint}: it takes {', '.join(accepted)}"
                )
            _check_param(self.policy, name, value)
        for name, parameter in accepted.items():
            if parameter.default is inspect.Parameter.empty and name not in self.params:
                example = {"epsilon": 0.1, "delta": 1.0}.get(name, 1.0)
                raise BanditError(
                    f"{self.policy} needs param {name!r}: pass e.g. params={{{name!r}: {example}}}"
                )

    def new_policy(self) -> bandit.base.Policy:
        """A fresh River policy of this design (the one a router starts from)."""
        kwargs: dict[str, Any] = {
            name: int(value) if name == "burn_in" else float(value)
            for name, value in self.params.items()
        }
        if self.policy == "thompson":
            kwargs["reward_obj"] = proba.Beta(1, 1)
        return _CLASSES[self.policy](**kwargs, seed=self.seed)


@dataclass(frozen=True)
class Decision:
    """The arm that serves an event and the probability with which the policy chose it."""

    arm: str
    probability: float


def _beta_greater(a1: int, b1: int, a2: int, b2: int) -> float:
    """P(X2 > X1) for X1 ~ Beta(a1, b1) and X2 ~ Beta(a2, b2), integer parameters.

    Evan Miller's sum of a2 terms, or the same for 1 - X1 > 1 - X2 (b1 terms), whichever
    is shorter. Its terms are the probabilities of a beta negative binomial variable
    (i successes before b2 failures at a rate drawn from Beta(a1, b1)): a long sum keeps
    only those within 10 standard deviations of its mode, so that its cost grows as the
    square root of the rewards (the others change no digit of a double: tested).

    >>> round(_beta_greater(1, 1, 1, 1), 12), round(_beta_greater(1, 1, 2, 1), 12)
    (0.5, 0.666666666667)
    """
    if b1 < a2:
        a1, b1, a2, b2 = b2, a2, b1, a1
    if a2 <= _LOOP_TERMS:  # a Python loop from t_0 = B(a1, b1 + b2) / B(a1, b1)
        log_t0 = (
            math.lgamma(b1 + b2)
            + math.lgamma(a1 + b1)
            - math.lgamma(a1 + b1 + b2)
            - math.lgamma(b1)
        )
        term = total = 1.0
        for i in range(a2 - 1):
            term *= _ratio(a1, b1, b2, i)
            total += term
            if total > 1e250:  # rescaled before it overflows (a ratio is below a1 + b2)
                log_t0 += math.log(total)
                term, total = term / total, 1.0
        return math.exp(log_t0) * total
    mode = (a1 * b2 - a1 - b1 - b2) / (b1 + 1)  # where the ratio of two terms crosses 1
    sd = math.sqrt(b2 * a1 * (b2 + b1 - 1) * (a1 + b1 - 1) / ((b1 - 2) * (b1 - 1) ** 2))
    reach = 10 * sd + 20
    low = int(max(0, min(mode, a2 - 1) - reach))
    high = int(min(a2 - 1, max(mode, 0) + reach))
    indices = np.arange(low, high, dtype=float)
    log_terms = np.concatenate(([0.0], np.cumsum(np.log(_ratio(a1, b1, b2, indices)))))
    top = float(log_terms.max())
    log_low = (  # log t_low = log C(b2 + low - 1, low) + log B(a1 + low, b1 + b2) - log B(a1, b1)
        math.lgamma(b2 + low)
        - math.lgamma(low + 1)
        - math.lgamma(b2)
        + math.lgamma(a1 + low)
        + math.lgamma(b1 + b2)
        - math.lgamma(a1 + low + b1 + b2)
        - math.lgamma(a1)
        - math.lgamma(b1)
        + math.lgamma(a1 + b1)
    )
    return math.exp(log_low + top + math.log(float(np.exp(log_terms - top).sum())))


def _ratio(a1: int, b1: int, b2: int, i: Any) -> Any:
    """t_{i+1} / t_i in Evan Miller's sum (i an int or a numpy array)."""
    return (a1 + i) * (b2 + i) / ((a1 + b1 + b2 + i) * (1 + i))


def _two_beta_chances(a0: int, b0: int, a1: int, b1: int) -> tuple[float, float]:
    """P(X0 > X1) and P(X1 > X0) for X0 ~ Beta(a0, b0) and X1 ~ Beta(a1, b1).

    The shorter sum first; the other probability is 1 minus it when that is at least 0.5
    (no precision lost), else its own sum (a small probability keeps its relative
    precision, which matters for 1 / p).
    """
    if min(a0, b1) <= min(a1, b0):
        first = _beta_greater(a1, b1, a0, b0)
        second = 1.0 - first if first <= 0.5 else _beta_greater(a0, b0, a1, b1)
    else:
        second = _beta_greater(a0, b0, a1, b1)
        first = 1.0 - second if second <= 0.5 else _beta_greater(a1, b1, a0, b0)
    total = first + second  # 1 up to rounding when both are sums
    return first / total, second / total


class BanditRouter:
    """Routes events among a design's arms with its River policy and learns from their
    rewards; every decision carries its selection probability."""

    def __init__(self, design: BanditDesign) -> None:
        self.design = design
        self.policy = design.new_policy()
        self.decisions = 0
        self.counts: dict[str, int] = dict.fromkeys(design.arms, 0)
        self.total_reward = 0.0

    def probabilities(self) -> dict[str, float]:
        """The probability of each arm at the next `choose`, from the policy's state now."""
        policy, arms = self.policy, self.design.arms
        rewards: Mapping[Any, Any] = policy._rewards
        # River's internals read here: `_counts` (rewards per arm; a Counter, reading a
        # missing arm adds nothing) and `_rewards` (reward statistic per arm; a defaultdict,
        # read with `get` so that no statistic is created, which for Thompson sampling would
        # draw a seed from the policy's random state).
        for arm in arms:  # Policy.pull: burn-in first
            if policy._counts[arm] < policy.burn_in:
                return {a: float(a == arm) for a in arms}
        if isinstance(policy, bandit.EpsilonGreedy):
            epsilon = policy.current_epsilon
            means = {a: rewards.get(a, policy.reward_obj).get() for a in arms}
            greedy = max(arms, key=means.__getitem__)  # as River's max(): the first best
            explore = epsilon / len(arms)
            chances = dict.fromkeys(arms, explore)
            chances[greedy] = 1 - epsilon * (len(arms) - 1) / len(arms)
            return chances
        if isinstance(policy, bandit.UCB):
            bounds = {}
            for arm in arms:  # UCB._pull's bound, the same floating-point operations
                reward = rewards.get(arm)
                bounds[arm] = (
                    math.inf
                    if reward is None
                    else reward.get()
                    + policy.delta * math.sqrt(2 * math.log(policy._n) / policy._counts[arm])
                )
            best = max(bounds.values())
            tied = [arm for arm in arms if bounds[arm] == best]
            return {arm: 1 / len(tied) if arm in tied else 0.0 for arm in arms}
        posteriors = [rewards.get(arm, policy.reward_obj) for arm in arms]
        alphas = [int(p.alpha) for p in posteriors]
        betas = [int(p.beta) for p in posteriors]
        if len(arms) == 2:
            first, second = _two_beta_chances(alphas[0], betas[0], alphas[1], betas[1])
            return {arms[0]: first, arms[1]: second}
        generator = np.random.default_rng((self.design.seed, self.decisions))
        draws = generator.beta(alphas, betas, size=(THOMPSON_DRAWS, len(arms)))
        wins = np.bincount(draws.argmax(axis=1), minlength=len(arms))
        return {
            arm: (int(w) + 1) / (THOMPSON_DRAWS + len(arms))
            for arm, w in zip(arms, wins, strict=True)
        }

    def choose(self) -> Decision:
        """The arm that serves the next event (River's `pull`), with its probability."""
        chances = self.probabilities()
        arm = str(self.policy.pull(list(self.design.arms)))
        if chances[arm] <= 0:
            raise RuntimeError(
                f"River's {type(self.policy).__name__} pulled {arm!r}, to which "
                "online_models.versions.bandits gave probability 0: River's selection rule "
                "changed, update probabilities() to match it"
            )
        self.decisions += 1
        self.counts[arm] += 1
        return Decision(arm, chances[arm])

    def reward(self, arm: str, value: float) -> None:
        """Learn the reward (the label) of a decision for `arm`, whenever it arrives."""
        if arm not in self.counts:
            raise BanditError(
                f"arm {arm!r} is not in the design: reward one of {', '.join(self.counts)}"
            )
        if isinstance(value, bool):
            value = float(value)
        if not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
            raise BanditError(f"reward {value!r} for {arm!r} is not a finite number: pass one")
        value = float(value)
        if self.design.policy == "thompson" and value not in (0.0, 1.0):
            raise BanditError(
                f"reward {value!r} for {arm!r}: thompson learns 0/1 outcomes (a click, a "
                "conversion) with Beta posteriors; route real-valued outcomes with "
                "epsilon_greedy or ucb"
            )
        self.policy.update(arm, value)
        self.total_reward += value

    def shares(self) -> dict[str, float]:
        """The fraction of decisions that went to each arm so far."""
        return {
            arm: n / self.decisions if self.decisions else 0.0 for arm, n in self.counts.items()
        }

    def regret(self, oracle_mean: float) -> float:
        """Cumulative regret against always pulling an arm of mean `oracle_mean`:
        decisions * oracle_mean - total reward (a decision whose reward is still pending
        counts as reward 0)."""
        return self.decisions * oracle_mean - self.total_reward
