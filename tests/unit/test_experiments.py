"""A/B tests: planned sizes equal statsmodels' power analysis, results exist only at the
planned size and equal the textbook tests, and seeded simulations keep the false-positive
rate at alpha and the power at the plan; the sequential test stays valid when monitored
after every outcome, where peeking at the fixed test does not."""

import math
import pickle
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from river import stats as river_stats
from scipy import stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from online_models.versions.experiments import (
    KEEP_CONTROL,
    PENDING,
    SEQUENTIAL_BURN_IN,
    Analysis,
    ArmOutcomes,
    Experiment,
    ExperimentDesign,
    ExperimentError,
    assign_arm,
    msprt_confidence_sequence,
    msprt_p_value,
)

ROOT = Path(__file__).resolve().parents[2]
ALPHA, POWER = 0.05, 0.8
LOSS = 10.0  # mean per-event loss of the simulated arms: normal outcomes stay positive
#: Designs small enough to simulate a thousand times: 195 and 252 outcomes per arm.
CTR = ExperimentDesign("ctr", ("control", "new"), mde=0.1, baseline=0.1)
MAE = ExperimentDesign("mae", ("control", "new"), mde=0.25, baseline=1.0)


def binomial_bound(rate: float, runs: int) -> float:
    """Three standard errors of a rate measured over `runs` independent runs."""
    return 3 * math.sqrt(rate * (1 - rate) / runs)


def draw(rng: np.random.Generator, design: ExperimentDesign, mean: float, n: int) -> list[float]:
    """n outcomes of an arm: clicks with probability `mean`, or normal losses of mean
    `mean` and the design's standard deviation."""
    if design.metric == "ctr":
        return (rng.random(n) < mean).astype(float).tolist()
    return rng.normal(mean, design.baseline, n).tolist()


def fixed_run(design: ExperimentDesign, means: tuple[float, ...], seed: int) -> Analysis:
    rng = np.random.default_rng(seed)
    experiment = Experiment(design)
    for arm, mean in zip(design.arms, means, strict=True):
        for value in draw(rng, design, mean, experiment.planned):
            experiment.observe(arm, value)
    return experiment.analysis()


def rejection_rate(design: ExperimentDesign, means: tuple[float, ...], runs: int) -> float:
    """Fraction of seeded runs in which some comparison is "better" or "worse"."""
    rejected = 0
    for seed in range(runs):
        analysis = fixed_run(design, means, seed)
        rejected += any(c.decision != "no_difference" for c in analysis.comparisons)
    return rejected / runs


# --- planned sample size ---------------------------------------------------------------
def test_sample_size_equals_statsmodels_power_analysis_for_a_click_rate() -> None:
    design = ExperimentDesign("ctr", ("control", "new"), mde=0.02, baseline=0.1)
    h = abs(proportion_effectsize(0.12, 0.1))  # Cohen's h: 2 asin sqrt(.12) - 2 asin sqrt(.1)
    solved = NormalIndPower().solve_power(
        effect_size=h, alpha=0.05, power=0.8, ratio=1.0, alternative="two-sided"
    )
    assert design.sample_size() == math.ceil(solved)
    # The textbook formula n = 2 (z_.975 + z_.8)² / h² (statsmodels adds the far tail's
    # negligible power): 2 * 7.849 / 0.06398² = 3834.6, so 3835 per arm.
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert design.sample_size() == math.ceil(2 * z**2 / h**2) == 3835


def test_sample_size_of_a_loss_uses_the_mde_in_standard_deviations() -> None:
    design = ExperimentDesign("logloss", ("control", "new"), mde=0.05, baseline=0.2)
    solved = NormalIndPower().solve_power(
        effect_size=0.25, alpha=0.05, power=0.8, ratio=1.0, alternative="two-sided"
    )
    # d = 0.05 / 0.2 = 0.25: 2 * 7.849 / 0.0625 = 251.2, so 252.
    assert design.sample_size() == math.ceil(solved) == 252


def test_sample_size_grows_as_the_mde_shrinks() -> None:
    sizes = [
        ExperimentDesign("ctr", ("a", "b"), mde=mde, baseline=0.1).sample_size()
        for mde in (0.04, 0.02, 0.01)
    ]
    assert sizes[0] < sizes[1] < sizes[2]
    # n grows as 1 / h², and h is nearly proportional to the MDE: halving it about
    # quadruples n (a little less, as the arcsine flattens towards 0.5).
    assert 3.5 < sizes[1] / sizes[0] < 4.5 and 3.5 < sizes[2] / sizes[1] < 4.5


def test_three_arms_are_each_compared_with_the_control_at_half_alpha() -> None:
    two = ExperimentDesign("ctr", ("control", "b"), mde=0.02, baseline=0.1)
    three = ExperimentDesign("ctr", ("control", "b", "c"), mde=0.02, baseline=0.1)
    assert three.comparison_alpha == 0.025  # Bonferroni: 0.05 / (3 - 1)
    h = abs(proportion_effectsize(0.12, 0.1))
    solved = NormalIndPower().solve_power(
        effect_size=h, alpha=0.025, power=0.8, ratio=1.0, alternative="two-sided"
    )
    assert three.sample_size() == math.ceil(solved) > two.sample_size()


# --- no peeking ------------------------------------------------------------------------
def test_no_result_before_every_arm_has_its_planned_outcomes() -> None:
    experiment = Experiment(CTR)
    planned = experiment.planned
    for _ in range(planned + 50):  # the control overshoots its plan: 50 are not used
        experiment.observe("control", 0.0)
    for _ in range(planned - 1):  # every visitor clicks: as significant as can be
        experiment.observe("new", 1.0)
        analysis = experiment.analysis()
        assert not analysis.complete and analysis.comparisons == ()
        assert analysis.decision == PENDING
    assert experiment.analysis().counts == {"control": planned, "new": planned - 1}
    experiment.observe("new", 1.0)
    done = experiment.analysis()
    assert done.complete and done.decision == "new" and done.planned == planned
    assert done.comparisons[0].effect == 1.0  # all clicks minus none
    for _ in range(1000):  # outcomes past the plan, the other way round: not used
        experiment.observe("control", 1.0)
        experiment.observe("new", 0.0)
    assert experiment.analysis() == done
    assert experiment.extra == {"control": 1050, "new": 1000}


def test_a_click_rate_result_equals_the_textbook_z_test() -> None:
    experiment = Experiment(CTR)
    n = experiment.planned
    for i in range(n):
        experiment.observe("control", float(i < 20))  # 20 clicks of 195
        experiment.observe("new", float(i < 45))  # 45 clicks of 195
    (result,) = experiment.analysis().comparisons
    pc, pa = 20 / n, 45 / n
    pooled = 65 / (2 * n)
    z = (pa - pc) / math.sqrt(pooled * (1 - pooled) * 2 / n)  # pooled for the p-value
    half = stats.norm.ppf(0.975) * math.sqrt(pa * (1 - pa) / n + pc * (1 - pc) / n)  # unpooled
    assert result.effect == pytest.approx(25 / n, rel=1e-12)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(z), rel=1e-9)
    assert (result.ci_low, result.ci_high) == pytest.approx((pa - pc - half, pa - pc + half))
    assert result.decision == "better" and result.p_value < 0.05  # z = 3.40


def test_a_loss_result_equals_scipys_welch_test_on_the_raw_outcomes() -> None:
    rng = np.random.default_rng(11)
    design = ExperimentDesign("mae", ("control", "new", "other"), mde=0.25, baseline=1.0)
    experiment = Experiment(design)
    raw = {
        "control": rng.normal(LOSS, 1.0, experiment.planned),
        "new": rng.normal(LOSS + 0.4, 1.5, experiment.planned),  # worse, and noisier
        "other": rng.normal(LOSS, 0.5, experiment.planned),
    }
    for arm, values in raw.items():
        for value in values.tolist():
            experiment.observe(arm, value)
    analysis = experiment.analysis()
    for result in analysis.comparisons:
        welch = stats.ttest_ind(raw[result.arm], raw["control"], equal_var=False)
        ci = welch.confidence_interval(1 - design.comparison_alpha)
        assert result.effect == pytest.approx(raw[result.arm].mean() - raw["control"].mean())
        assert result.p_value == pytest.approx(welch.pvalue, rel=1e-6)
        assert (result.ci_low, result.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    # 0.4 worse at 305 outcomes per arm: z near 0.4 / sqrt(3.25 / 305) = 3.9, alpha 0.025.
    new = analysis.comparisons[0]
    assert new.decision == "worse" and analysis.decision == KEEP_CONTROL


def test_the_best_significantly_better_arm_wins() -> None:
    design = ExperimentDesign("ctr", ("control", "b", "c", "d"), mde=0.1, baseline=0.1)
    experiment = Experiment(design)
    rates = {"control": 0.1, "b": 0.3, "c": 0.5, "d": 0.0}  # c best, d worse
    for arm, rate in rates.items():
        clicks = round(rate * experiment.planned)
        for i in range(experiment.planned):
            experiment.observe(arm, float(i < clicks))
    analysis = experiment.analysis()
    assert [c.decision for c in analysis.comparisons] == ["better", "better", "worse"]
    assert analysis.decision == "c"


def test_arm_outcomes_equal_exact_statistics() -> None:
    rng = np.random.default_rng(3)
    # A large offset: a running sum of squares would lose every digit of the variance.
    values = (1e9 + rng.normal(0.0, 1.0, 5000)).tolist()
    arm, var = ArmOutcomes(), river_stats.Var(ddof=1)
    for value in values:
        arm.add(value)
        var.update(value)
    assert arm.n == 5000
    # Rounding at 1e9 (steps of 1.2e-7) accumulates over the updates: far below the spread.
    assert arm.mean == pytest.approx(statistics.fmean(values), abs=1e-5)
    assert arm.variance == pytest.approx(statistics.variance(values), rel=1e-6)  # exact fractions
    assert arm.variance == pytest.approx(var.get(), rel=1e-9)


# --- error rates, by simulation --------------------------------------------------------
@pytest.mark.parametrize("design", [CTR, MAE], ids=["ctr", "mae"])
def test_equal_arms_differ_in_alpha_of_the_runs(design: ExperimentDesign) -> None:
    runs = 1000
    mean = 0.1 if design.metric == "ctr" else LOSS
    rate = rejection_rate(design, (mean, mean), runs)
    # Both tests have size alpha when the arms are equal (the z test of rates is discrete
    # but at 195 outcomes per arm its size is within a fraction of a point of 0.05).
    assert abs(rate - ALPHA) <= binomial_bound(ALPHA, runs), rate


def test_three_equal_arms_raise_a_false_alarm_in_at_most_alpha_of_the_runs() -> None:
    runs = 500
    design = ExperimentDesign("ctr", ("control", "b", "c"), mde=0.1, baseline=0.1)
    rate = rejection_rate(design, (0.1, 0.1, 0.1), runs)
    # Bonferroni bounds the family-wise rate by 2 * 0.025; without the correction it is
    # near 1 - 0.95² = 0.0975 (less, as both comparisons share the control).
    assert rate <= ALPHA + binomial_bound(ALPHA, runs), rate


@pytest.mark.parametrize("design", [CTR, MAE], ids=["ctr", "mae"])
def test_a_true_effect_of_the_mde_is_found_with_the_planned_power(
    design: ExperimentDesign,
) -> None:
    runs = 1000
    # Better by the MDE: a higher click rate, a lower loss.
    means = (0.1, 0.1 + design.mde) if design.metric == "ctr" else (LOSS, LOSS - design.mde)
    found = 0
    for seed in range(runs):
        analysis = fixed_run(design, means, 10_000 + seed)
        found += analysis.decision == "new"
    # The plan gives power 0.8 at the MDE under the normal approximation (arcsine for
    # rates), which the z and Welch tests follow closely at about 200 outcomes per arm.
    assert abs(found / runs - POWER) <= binomial_bound(POWER, runs), found / runs


# --- sequential (mSPRT) ----------------------------------------------------------------
def test_msprt_p_value_is_johari_pekelis_walshs_formula() -> None:
    rng = np.random.default_rng(5)
    for _ in range(100):
        n = int(rng.integers(2, 10_000))
        big_v, tau, effect = rng.uniform(0.1, 4), rng.uniform(0.01, 1), rng.normal(0, 0.1)
        # Their mixture likelihood ratio for n outcomes per arm, V = s_a² + s_b².
        ratio = math.sqrt(big_v / (big_v + n * tau**2)) * math.exp(
            n**2 * tau**2 * effect**2 / (2 * big_v * (big_v + n * tau**2))
        )
        assert msprt_p_value(effect, big_v / n, tau) == pytest.approx(min(1.0, 1 / ratio))
    # The running minimum: a p-value once reached stays, a lower one replaces it.
    assert msprt_p_value(0.0, 0.01, 0.1, previous=0.2) == 0.2
    assert msprt_p_value(0.1, 0.001, 0.1, previous=0.5) == msprt_p_value(0.1, 0.001, 0.1) < 0.5


def test_msprt_confidence_sequence_ends_where_the_test_rejects_at_alpha() -> None:
    effect, variance, tau = 0.3, 0.004, 0.2
    low, high = msprt_confidence_sequence(effect, variance, tau, 0.05)
    # The interval is the θ the test of "difference = θ" keeps: p = alpha at both ends.
    assert msprt_p_value(effect - low, variance, tau) == pytest.approx(0.05)
    assert msprt_p_value(effect - high, variance, tau) == pytest.approx(0.05)
    assert low < effect < high


def sequential_draws(
    design: ExperimentDesign, means: tuple[float, float], seed: int, n: int
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([draw(rng, design, mean, n) for mean in means])


def monitored(design: ExperimentDesign, outcomes: np.ndarray) -> tuple[Experiment, int]:
    """Feed the arms' outcomes in turn; the experiment tests after every one. Returns the
    experiment and the outcomes per arm when it completed."""
    experiment = Experiment(design)
    for i, (control, new) in enumerate(outcomes.T.tolist(), 1):
        experiment.observe("control", control)
        experiment.observe("new", new)
        if experiment.complete:
            return experiment, i
    return experiment, outcomes.shape[1]


def peeking_rejects(outcomes: np.ndarray, start: int, z: float) -> bool:
    """Whether the fixed-horizon z test, applied after every outcome from `start` on,
    ever rejects: what the sequential test must not do."""
    n = np.arange(1, outcomes.shape[1] + 1)
    means = np.cumsum(outcomes, axis=1) / n
    variances = (np.cumsum(outcomes**2, axis=1) - n * means**2) / np.maximum(n - 1, 1)
    se = np.sqrt(variances.sum(axis=0) / n)
    stat = np.abs(means[1] - means[0])[start - 1 :] / se[start - 1 :]
    return bool((stat > z).any())


@pytest.mark.parametrize(
    ("design", "mean"),
    [
        (
            ExperimentDesign("mae", ("control", "new"), mde=0.2, baseline=1.0, sequential=True),
            LOSS,
        ),  # 393 outcomes per arm
        (
            ExperimentDesign("ctr", ("control", "new"), mde=0.07, baseline=0.1, sequential=True),
            0.1,
        ),  # 369 outcomes per arm, about 10 clicks when monitoring starts
    ],
    ids=["mae", "ctr"],
)
def test_sequential_test_monitored_after_every_outcome_keeps_its_false_positive_rate(
    design: ExperimentDesign, mean: float
) -> None:
    runs = 300
    horizon = design.sample_size()
    stopped = peeked = 0
    for seed in range(runs):
        outcomes = sequential_draws(design, (mean, mean), seed, horizon)
        experiment, _ = monitored(design, outcomes)
        stopped += any(c.decision != "no_difference" for c in experiment.analysis().comparisons)
        peeked += peeking_rejects(outcomes, SEQUENTIAL_BURN_IN, stats.norm.ppf(0.975))
    # Always valid: P(the p-value ever falls below alpha) <= alpha (Ville's inequality).
    assert stopped / runs <= ALPHA + binomial_bound(ALPHA, runs), stopped / runs
    # The same draws with the fixed test applied at every count: far above alpha, so the
    # simulation does catch a test that is not valid under monitoring.
    assert peeked / runs > ALPHA + binomial_bound(ALPHA, runs), peeked / runs


def test_sequential_test_stops_early_on_a_real_effect() -> None:
    runs = 200
    design = ExperimentDesign("mae", ("control", "new"), mde=0.2, baseline=1.0, sequential=True)
    planned = design.sample_size()
    stops = []
    for seed in range(runs):
        outcomes = sequential_draws(design, (LOSS, LOSS - 2 * design.mde), 1000 + seed, planned)
        experiment, at = monitored(design, outcomes)
        analysis = experiment.analysis()
        (result,) = analysis.comparisons
        if experiment.stopped:
            stops.append(at)
            assert analysis.complete and analysis.decision == "new"
            assert result.p_value < ALPHA and result.ci_high < 0  # the sequence excludes 0
    # At twice the MDE and half the planned size, the expected log-likelihood ratio is
    # about 0.8 * 16.7 / 2 - 0.8 = 5.9 > log(1 / 0.05) = 3.0: most runs stop before half.
    assert len(stops) / runs > 0.5 and statistics.median(stops) < planned / 2, len(stops)


def test_sequential_analysis_is_available_at_every_call() -> None:
    design = ExperimentDesign("ctr", ("control", "new"), mde=0.05, baseline=0.1, sequential=True)
    experiment = Experiment(design)
    first = experiment.analysis()
    assert not first.complete and first.decision == PENDING
    (result,) = first.comparisons
    assert (result.p_value, result.ci_low, result.ci_high) == (1.0, -math.inf, math.inf)
    for i in range(SEQUENTIAL_BURN_IN):
        experiment.observe("control", float(i % 10 == 0))
        experiment.observe("new", float(i % 10 < 2))
    (result,) = experiment.analysis().comparisons
    assert result.effect == pytest.approx(0.1) and math.isfinite(result.ci_low)
    assert result.p_value == experiment.always_valid["new"] <= 1.0


# --- assignment ------------------------------------------------------------------------
KEYS = [f"visitor-{i}" for i in range(10_000)]
ARMS = ("control", "b", "c")


def test_assignment_is_the_same_in_every_process() -> None:
    here = [assign_arm(key, ARMS, salt="exp-1") for key in KEYS[:200]]
    assert here == [assign_arm(key, ARMS, salt="exp-1") for key in KEYS[:200]]
    code = (
        "from online_models.versions.experiments import assign_arm\n"
        f"print(' '.join(assign_arm(f'visitor-{{i}}', {ARMS!r}, salt='exp-1') for i in range(200)))"
    )
    # Another hash seed: an assignment by Python's hash() would differ on most keys.
    other = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PYTHONHASHSEED": "7"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert other.stdout.split() == here


def test_assignment_is_uniform() -> None:
    counts = Counter(assign_arm(key, ARMS, salt="exp-1") for key in KEYS)
    # Chi-square with 2 degrees of freedom: 13.8 is exceeded with probability 0.001.
    assert stats.chisquare([counts[arm] for arm in ARMS]).pvalue > 0.001, counts


def test_other_salts_assign_independently() -> None:
    first = [assign_arm(key, ARMS, salt="exp-1") for key in KEYS]
    second = [assign_arm(key, ARMS, salt="exp-2") for key in KEYS]
    table = np.zeros((3, 3))
    for a, b in zip(first, second, strict=True):
        table[ARMS.index(a), ARMS.index(b)] += 1
    # Independent assignments: every cell near 10 000 / 9, chi-square test of independence.
    assert stats.chi2_contingency(table).pvalue > 0.001, table
    same = sum(a == b for a, b in zip(first, second, strict=True)) / len(KEYS)
    assert abs(same - 1 / 3) <= binomial_bound(1 / 3, len(KEYS)), same


# --- validation ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"metric": "auc"}, "'auc'"),
        ({"arms": ("only",)}, "('only',)"),
        ({"arms": ("a", "a")}, "('a', 'a')"),
        ({"arms": "ab"}, "'ab'"),
        ({"arms": ("control", "")}, "''"),
        ({"arms": ("control", "keep_control")}, "'keep_control'"),
        ({"alpha": 0.0}, "alpha=0.0"),
        ({"alpha": 1.5}, "alpha=1.5"),
        ({"power": 1.0}, "power=1.0"),
        ({"power": 0.04}, "power=0.04"),
        ({"mde": 0.0}, "mde=0.0"),
        ({"mde": -0.01}, "mde=-0.01"),
        ({"mde": math.nan}, "mde=nan"),
        ({"baseline": 0.0}, "baseline=0.0"),
        ({"baseline": 0.95, "mde": 0.1}, "1.05"),
        ({"metric": "logloss", "baseline": -1.0}, "baseline=-1.0"),
        ({"tau": 0.0}, "tau=0.0"),
    ],
)
def test_an_impossible_design_is_refused_with_the_bad_value(
    changes: dict[str, object], named: str
) -> None:
    kwargs: dict[str, object] = {
        "metric": "ctr",
        "arms": ("control", "new"),
        "mde": 0.02,
        "baseline": 0.1,
        **changes,
    }
    with pytest.raises(ExperimentError) as raised:
        ExperimentDesign(**kwargs)  # type: ignore[arg-type]
    message = str(raised.value)
    assert named in message and ":" in message and "\n" not in message
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize(
    ("design", "arm", "value", "named"),
    [
        (CTR, "other", 1.0, "'other'"),
        (CTR, "new", 0.5, "0.5"),
        (MAE, "new", -1.0, "-1.0"),
        (MAE, "new", math.inf, "inf"),
    ],
)
def test_an_impossible_outcome_is_refused_with_the_bad_value(
    design: ExperimentDesign, arm: str, value: float, named: str
) -> None:
    experiment = Experiment(design)
    with pytest.raises(ExperimentError, match=named):
        experiment.observe(arm, value)
    assert experiment.analysis().counts == {"control": 0, "new": 0}


# --- checkpoints -----------------------------------------------------------------------
@pytest.mark.parametrize("sequential", [False, True])
def test_a_restored_experiment_continues_exactly(sequential: bool) -> None:
    design = ExperimentDesign(
        "mae", ("control", "new"), mde=0.25, baseline=1.0, sequential=sequential
    )
    outcomes = sequential_draws(design, (LOSS, LOSS - 0.1), 21, design.sample_size())
    half = outcomes.shape[1] // 2
    straight = Experiment(design)
    for control, new in outcomes.T.tolist()[:half]:
        straight.observe("control", control)
        straight.observe("new", new)
    restored = pickle.loads(pickle.dumps(straight))
    assert restored.analysis() == straight.analysis()
    for experiment in (straight, restored):
        for control, new in outcomes.T.tolist()[half:]:
            experiment.observe("control", control)
            experiment.observe("new", new)
    assert restored.analysis() == straight.analysis()
    assert restored.analysis().complete
