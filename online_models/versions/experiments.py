"""A/B tests among model versions on a stream: planned up front, read once.

Fixed horizon (the default). The number of labelled outcomes each arm needs is computed
before the experiment starts, from the metric's baseline, the minimum detectable effect
(MDE), `alpha` and `power` (statsmodels' `NormalIndPower`). Each arm keeps exactly that
many outcomes (later ones are counted, not used), and effects, confidence intervals and
p-values exist only once every arm has them: looking earlier and stopping on a good
p-value ("peeking") would make the false-positive rate far larger than `alpha`.

Sequential (opt in, `sequential=True`): the mixture sequential probability ratio test
(mSPRT, Johari, Pekelis and Walsh 2017) gives an always-valid p-value and a confidence
sequence after every outcome, so a team can monitor continuously and stop as soon as the
p-value falls below alpha. The price is power: it stops at the planned size at the latest,
and an effect equal to the MDE is found by then in about half the runs, not 80% (55% in a
simulation of the tests' loss design); larger effects it finds well before the plan.

Outcomes, one per labelled event and arm: for "ctr" the label (1 click, 0 no click,
higher is better); for "logloss" and "mae" the per-event loss of the arm's prediction
(lower is better). Arm 0 is the control; every other arm is compared with it at
alpha / (k - 1) for k arms (Bonferroni), and the planned size uses that alpha, so that the
chance of any false "better" or "worse" among the k - 1 comparisons is at most alpha.
"""

import functools
import hashlib
import math
import warnings
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Literal, get_args

from scipy import stats

__all__ = [
    "KEEP_CONTROL",
    "METRICS",
    "PENDING",
    "SEQUENTIAL_BURN_IN",
    "Analysis",
    "ArmOutcomes",
    "Comparison",
    "Decision",
    "Experiment",
    "ExperimentDesign",
    "ExperimentError",
    "Metric",
    "assign_arm",
    "msprt_confidence_sequence",
    "msprt_p_value",
]

Metric = Literal["ctr", "logloss", "mae"]
METRICS: tuple[str, ...] = get_args(Metric)
HIGHER_IS_BETTER = {"ctr": True, "logloss": False, "mae": False}
Decision = Literal["better", "worse", "no_difference"]
PENDING = "pending"  # the experiment's decision until it is complete
KEEP_CONTROL = "keep_control"  # ... when no arm is significantly better than the control
#: A sequential test starts monitoring once every arm has this many outcomes (or its
#: planned size, if smaller): the mSPRT plugs in the sample variances, and over the first
#: outcomes (a handful of clicks) they are too noisy for its guarantee to hold (monitoring
#: from 2 outcomes on, 6.75% of 400 simulated runs without an effect rejected at 0.05).
SEQUENTIAL_BURN_IN = 100


class ExperimentError(ValueError):
    """An experiment that cannot be designed or fed as asked; `str()` is one sentence
    saying what is wrong and what to do."""


def _probability(name: str, value: float) -> None:
    if not 0 < value < 1:
        raise ExperimentError(f"{name}={value!r} is not a probability: set it between 0 and 1")


def _positive(name: str, value: float, advice: str) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ExperimentError(f"{name}={value!r} is not a positive number: {advice}")


@dataclass(frozen=True)
class ExperimentDesign:
    """What is compared, on which metric, and what difference must be found how surely.

    `baseline` is the control arm's expected click rate for "ctr" and the standard
    deviation of the per-event loss for "logloss" and "mae" (from past traffic); `mde` is
    the smallest difference worth finding, in the metric's own units (an absolute
    difference of rates, or of mean losses). `tau`, for sequential designs, is the
    standard deviation of the mSPRT's normal mixture over the true difference (default:
    the MDE, the effect the test should be quickest to find). Everything after `arms` is
    keyword-only.

    >>> design = ExperimentDesign("ctr", ("control", "new"), mde=0.02, baseline=0.1)
    >>> design.comparison_alpha, design.sample_size()
    (0.05, 3835)
    >>> ExperimentDesign("mae", ("a", "b", "c"), mde=0.1, baseline=1.0).comparison_alpha
    0.025
    """

    metric: Metric
    arms: tuple[str, ...]
    _: KW_ONLY
    alpha: float = 0.05
    power: float = 0.8
    mde: float
    baseline: float
    sequential: bool = False
    tau: float | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ExperimentError(
                f"metric={self.metric!r} is unknown: use one of {', '.join(METRICS)}"
            )
        if isinstance(self.arms, str) or not isinstance(self.arms, Sequence):
            raise ExperimentError(
                f"arms={self.arms!r} is not a sequence of arm names: pass e.g. "
                "('control', 'challenger'), the control first"
            )
        object.__setattr__(self, "arms", tuple(self.arms))
        if len(self.arms) < 2 or len(set(self.arms)) != len(self.arms):
            raise ExperimentError(
                f"arms={self.arms!r} must name at least two distinct arms: pass e.g. "
                "('control', 'challenger'), the control first"
            )
        for arm in self.arms:
            if not isinstance(arm, str) or not arm or arm in (PENDING, KEEP_CONTROL):
                raise ExperimentError(
                    f"arm name {arm!r} cannot be used: name each arm with a non-empty "
                    f"string other than {PENDING!r} and {KEEP_CONTROL!r}"
                )
        _probability("alpha", self.alpha)
        _probability("power", self.power)
        if not self.power > self.alpha:
            raise ExperimentError(
                f"power={self.power!r} is not above alpha={self.alpha!r}: a test finds an "
                "effect at least as often as it raises a false alarm; ask for e.g. power=0.8"
            )
        _positive(
            "mde",
            self.mde,
            f"set the smallest difference worth detecting, in the units of {self.metric}",
        )
        if self.metric == "ctr":
            _probability("baseline", self.baseline)
            if not 0 < self.baseline + self.mde < 1:
                raise ExperimentError(
                    f"baseline + mde = {self.baseline + self.mde!r} is not a click rate: "
                    "lower mde so that the rate to detect stays below 1"
                )
        else:
            _positive(
                "baseline",
                self.baseline,
                f"set the standard deviation of the per-event {self.metric} of the control "
                "(from past traffic)",
            )
        if self.tau is not None:
            _positive(
                "tau",
                self.tau,
                "set the mixing standard deviation of the sequential test, or leave it None "
                "(the MDE)",
            )

    @property
    def comparison_alpha(self) -> float:
        """The alpha of each arm-versus-control comparison: alpha / (k - 1) (Bonferroni)."""
        return self.alpha / (len(self.arms) - 1)

    @property
    def mixing_sd(self) -> float:
        """The mSPRT's mixing standard deviation: `tau`, or the MDE when it is None."""
        return self.mde if self.tau is None else self.tau

    def effect_size(self) -> float:
        """The MDE in standard deviations: Cohen's h for rates (arcsine difference),
        mde / baseline for losses."""
        if self.metric == "ctr":
            from statsmodels.stats.proportion import proportion_effectsize

            return abs(float(proportion_effectsize(self.baseline + self.mde, self.baseline)))
        return self.mde / self.baseline

    def sample_size(self) -> int:
        """Planned labelled outcomes per arm: statsmodels' two-sample normal power
        analysis (equal arms, two-sided, at `comparison_alpha`), rounded up, at least 2."""
        return _sample_size(self.effect_size(), self.comparison_alpha, self.power)


@functools.cache  # a root finder: milliseconds, and every Experiment of a design asks
def _sample_size(effect: float, alpha: float, power: float) -> int:
    from statsmodels.stats.power import NormalIndPower  # (pandas and all: only when asked)

    with warnings.catch_warnings():  # a huge effect: the root finder fails below n=2
        warnings.simplefilter("ignore")
        n = float(
            NormalIndPower().solve_power(
                effect_size=effect, alpha=alpha, power=power, ratio=1.0, alternative="two-sided"
            )
        )
    if math.isfinite(n):
        return max(2, math.ceil(n))
    if NormalIndPower().power(effect, nobs1=2, alpha=alpha, ratio=1.0) >= power:
        return 2
    raise ExperimentError(
        f"no sample size reaches power={power!r} for effect size {effect!r}: check mde and baseline"
    )


class ArmOutcomes:
    """Running count, mean and sum of squared deviations (`m2`, Welford's update) of one
    arm's outcomes: exact enough for millions of outcomes, constant memory.

    >>> arm = ArmOutcomes()
    >>> for loss in (1.0, 2.0, 4.0):
    ...     arm.add(loss)
    >>> arm.n, round(arm.mean, 12), round(arm.variance, 12)
    (3, 2.333333333333, 2.333333333333)
    """

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0

    def add(self, value: float) -> None:
        """One more outcome."""
        self.n += 1
        delta = value - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (value - self.mean)

    @property
    def variance(self) -> float:
        """Sample variance (divisor n - 1); 0.0 with fewer than two outcomes."""
        return self.m2 / (self.n - 1) if self.n > 1 else 0.0


@dataclass(frozen=True)
class Comparison:
    """One arm against the control: effect = arm mean - control mean, its
    (1 - comparison_alpha) confidence interval (a confidence sequence, when sequential),
    the p-value (always-valid, when sequential) and what it means for the metric."""

    arm: str
    control: str
    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    decision: Decision


@dataclass(frozen=True)
class Analysis:
    """The experiment's state: outcomes used per arm, the plan, the comparisons (none
    before a fixed-horizon experiment is complete) and the decision: "pending" until it
    is complete, then the best arm significantly better than the control, else
    "keep_control"."""

    complete: bool
    counts: dict[str, int]
    planned: int
    comparisons: tuple[Comparison, ...]
    decision: str


def msprt_p_value(effect: float, variance: float, tau: float, previous: float = 1.0) -> float:
    """Always-valid p-value of the normal-mixture SPRT for "difference of two means = 0".

    `effect` is the difference of the sample means, `variance` its plug-in variance
    v = s_a² / n_a + s_b² / n_b and `tau` the standard deviation of the normal mixture
    N(0, tau²) over the true difference. The mixture likelihood ratio is

        Λ = sqrt(v / (v + tau²)) · exp(tau² · effect² / (2 · v · (v + tau²)))

    which, with n outcomes per arm and V = s_a² + s_b² (v = V / n), is Johari, Pekelis and
    Walsh's (2017) sqrt(V / (V + n tau²)) exp(n² tau² effect² / (2 V (V + n tau²))). The
    always-valid p-value is p_n = min(p_(n-1), 1 / Λ_n): pass the previous one as
    `previous`. Under the null Λ is a martingale, so P(ever p_n <= alpha) <= alpha (Ville):
    rejecting the first time p < alpha, at any stopping time, keeps the error below alpha.

    >>> msprt_p_value(0.0, 0.01, 0.1)  # no difference: Λ = sqrt(1/2) < 1
    1.0
    >>> round(msprt_p_value(0.1, 0.001, 0.1), 4)  # 3.16 standard errors: fixed z p = 0.0016
    0.0352
    """
    if not (variance > 0 and tau > 0):
        raise ExperimentError(
            f"variance={variance!r} and tau={tau!r} must be positive: wait for outcomes "
            "that vary in both arms"
        )
    spread = variance + tau * tau
    log_ratio = 0.5 * math.log(variance / spread) + tau * tau * effect * effect / (
        2 * variance * spread
    )
    return min(previous, 1.0, math.exp(-log_ratio))


def msprt_confidence_sequence(
    effect: float, variance: float, tau: float, alpha: float
) -> tuple[float, float]:
    """The (1 - alpha) confidence sequence of the mSPRT: the differences θ that its test
    of "difference = θ" does not reject (Λ(θ) < 1 / alpha), i.e. effect ± half with

        half² = 2 · v · (v + tau²) / tau² · (log(1 / alpha) + log(sqrt((v + tau²) / v)))

    It covers the true difference at every count at once with probability >= 1 - alpha.

    >>> low, high = msprt_confidence_sequence(0.1, 0.001, 0.1, 0.05)
    >>> round(low, 4), round(high, 4)
    (0.0039, 0.1961)
    """
    if not (variance > 0 and tau > 0):
        raise ExperimentError(
            f"variance={variance!r} and tau={tau!r} must be positive: wait for outcomes "
            "that vary in both arms"
        )
    spread = variance + tau * tau
    half = math.sqrt(
        2 * variance * spread / (tau * tau) * (-math.log(alpha) + 0.5 * math.log(spread / variance))
    )
    return effect - half, effect + half


def _decision(effect: float, p_value: float, alpha: float, metric: Metric) -> Decision:
    if not p_value < alpha:
        return "no_difference"
    return "better" if (effect > 0) == HIGHER_IS_BETTER[metric] else "worse"


class Experiment:
    """The outcomes of one experiment's arms, and their analysis.

    >>> design = ExperimentDesign("ctr", ("control", "new"), mde=0.2, baseline=0.3)
    >>> experiment = Experiment(design)
    >>> experiment.planned
    93
    >>> for i in range(experiment.planned):
    ...     experiment.observe("control", float(i % 10 < 3))  # 30% clicks
    ...     experiment.observe("new", float(i % 10 < 6))  # 60% clicks
    >>> analysis = experiment.analysis()
    >>> analysis.complete, analysis.decision, analysis.comparisons[0].decision
    (True, 'new', 'better')
    >>> experiment.observe("new", 1.0)  # after the plan: counted, not used
    >>> experiment.analysis().counts, experiment.extra
    ({'control': 93, 'new': 93}, {'control': 0, 'new': 1})
    """

    def __init__(self, design: ExperimentDesign) -> None:
        self.design = design
        self.planned = design.sample_size()
        self.outcomes = {arm: ArmOutcomes() for arm in design.arms}
        self.extra = dict.fromkeys(design.arms, 0)  # outcomes past the plan (or the stop)
        # Sequential: the running always-valid p-value of each challenger, and whether the
        # test has stopped (some p-value fell below comparison_alpha).
        self.always_valid = dict.fromkeys(design.arms[1:], 1.0)
        self.stopped = False

    @property
    def control(self) -> str:
        """The control arm (the design's first)."""
        return self.design.arms[0]

    @property
    def complete(self) -> bool:
        """Every arm has its planned outcomes, or (sequential) the mSPRT has stopped."""
        return self.stopped or all(o.n >= self.planned for o in self.outcomes.values())

    def observe(self, arm: str, value: float) -> None:
        """One labelled outcome of `arm`: a click (1.0) or not (0.0) for "ctr", the
        event's loss for "logloss" and "mae". Outcomes past the arm's planned count, or
        after a sequential test stopped, are counted in `extra` and not used."""
        outcomes = self.outcomes.get(arm)
        if outcomes is None:
            raise ExperimentError(
                f"arm {arm!r} is not in the experiment: send outcomes of one of "
                f"{', '.join(map(repr, self.design.arms))}, or design a new experiment"
            )
        value = float(value)
        if self.design.metric == "ctr":
            if value != 0.0 and value != 1.0:
                raise ExperimentError(
                    f"ctr outcome {value!r} of arm {arm!r} is not a label: send 1.0 for a "
                    "click and 0.0 for none"
                )
        elif not (value >= 0 and math.isfinite(value)):
            raise ExperimentError(
                f"{self.design.metric} outcome {value!r} of arm {arm!r} is not a loss: send "
                "the event's finite, non-negative loss"
            )
        if self.stopped or outcomes.n >= self.planned:
            self.extra[arm] += 1
            return
        outcomes.add(value)
        if self.design.sequential:
            self._monitor(arm)

    def analysis(self) -> Analysis:
        """Comparisons and decision: fixed-horizon, only once complete (else no
        comparisons and "pending"); sequential, always-valid at every call."""
        complete = self.complete
        challengers = self.design.arms[1:]
        if self.design.sequential:
            comparisons = tuple(self._sequential(arm) for arm in challengers)
        elif complete:
            comparisons = tuple(self._fixed(arm) for arm in challengers)
        else:
            comparisons = ()
        return Analysis(
            complete=complete,
            counts={arm: o.n for arm, o in self.outcomes.items()},
            planned=self.planned,
            comparisons=comparisons,
            decision=self._overall(comparisons) if complete else PENDING,
        )

    # --- fixed horizon -----------------------------------------------------------------
    def _fixed(self, arm: str) -> Comparison:
        a, c = self.outcomes[arm], self.outcomes[self.control]
        alpha = self.design.comparison_alpha
        if self.design.metric == "ctr":
            effect, low, high, p = _proportions_test(a, c, alpha)
        else:
            effect, low, high, p = _welch_test(a, c, alpha)
        decision = _decision(effect, p, alpha, self.design.metric)
        return Comparison(arm, self.control, effect, low, high, p, decision)

    # --- sequential --------------------------------------------------------------------
    def _difference(self, arm: str) -> tuple[float, float]:
        """Difference of means (arm - control) and its plug-in variance."""
        a, c = self.outcomes[arm], self.outcomes[self.control]
        return a.mean - c.mean, a.variance / a.n + c.variance / c.n

    def _monitoring(self) -> bool:
        burn_in = min(SEQUENTIAL_BURN_IN, self.planned)
        return all(o.n >= burn_in for o in self.outcomes.values())

    def _monitor(self, arm: str) -> None:
        """Update the always-valid p-values the new outcome of `arm` changes; stop at the
        first one below comparison_alpha."""
        if not self._monitoring():
            return
        changed = self.design.arms[1:] if arm == self.control else (arm,)
        for challenger in changed:
            effect, variance = self._difference(challenger)
            if variance > 0:
                p = msprt_p_value(
                    effect, variance, self.design.mixing_sd, self.always_valid[challenger]
                )
                self.always_valid[challenger] = p
                if p < self.design.comparison_alpha:
                    self.stopped = True

    def _sequential(self, arm: str) -> Comparison:
        alpha = self.design.comparison_alpha
        effect = self.outcomes[arm].mean - self.outcomes[self.control].mean
        low, high = -math.inf, math.inf  # nothing known before monitoring starts
        if self._monitoring():
            effect, variance = self._difference(arm)
            low = high = effect  # constant outcomes so far: as the fixed tests say
            if variance > 0:
                low, high = msprt_confidence_sequence(
                    effect, variance, self.design.mixing_sd, alpha
                )
        p = self.always_valid[arm]
        decision = _decision(effect, p, alpha, self.design.metric)
        return Comparison(arm, self.control, effect, low, high, p, decision)

    def _overall(self, comparisons: tuple[Comparison, ...]) -> str:
        better = [c for c in comparisons if c.decision == "better"]
        if not better:
            return KEEP_CONTROL
        sign = 1.0 if HIGHER_IS_BETTER[self.design.metric] else -1.0
        return max(better, key=lambda c: sign * c.effect).arm  # ties: the first arm


def _proportions_test(
    a: ArmOutcomes, c: ArmOutcomes, alpha: float
) -> tuple[float, float, float, float]:
    """Two-sample z test of proportions with statsmodels: `proportions_ztest` (pooled
    variance) for the p-value, `confint_proportions_2indep(method="wald")` (unpooled) for
    the interval of the difference."""
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

    clicks_a, clicks_c = round(a.mean * a.n), round(c.mean * c.n)  # outcomes are 0 or 1
    effect = clicks_a / a.n - clicks_c / c.n
    low, high = confint_proportions_2indep(
        clicks_a, a.n, clicks_c, c.n, method="wald", compare="diff", alpha=alpha
    )
    if 0 < clicks_a + clicks_c < a.n + c.n:
        _, p = proportions_ztest([clicks_a, clicks_c], [a.n, c.n], alternative="two-sided")
    else:  # all clicks or none in both arms: no variance and no difference
        p = 1.0
    return effect, float(low), float(high), float(p)


def _welch_test(a: ArmOutcomes, c: ArmOutcomes, alpha: float) -> tuple[float, float, float, float]:
    """Welch's t test of two means from their running sums (closed form; Student's t
    from scipy), with the Welch-Satterthwaite degrees of freedom."""
    effect = a.mean - c.mean
    va, vc = a.variance / a.n, c.variance / c.n
    se2 = va + vc
    if se2 == 0:  # constant outcomes in both arms: the difference is known exactly
        return effect, effect, effect, 1.0 if effect == 0 else 0.0
    df = se2 * se2 / (va * va / (a.n - 1) + vc * vc / (c.n - 1))
    se = math.sqrt(se2)
    p = 2 * float(stats.t.sf(abs(effect) / se, df))
    half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    return effect, effect - half, effect + half, p


def assign_arm(key: str, arms: Sequence[str], salt: str) -> str:
    """The arm a visitor `key` sees in the experiment `salt`: blake2b of the salt and the
    key, modulo the number of arms. Uniform, and the same in every process and release
    (unlike Python's `hash()`, which is salted per process); another salt gives an
    independent assignment, so one experiment's arms do not line up with another's.

    >>> assign_arm("visitor-42", ("control", "new"), salt="ranker-2026-01")
    'control'
    >>> assign_arm("visitor-42", ("control", "new"), salt="ranker-2026-03")
    'new'
    """
    if not arms:
        raise ExperimentError("no arms to assign to: pass the experiment's arm names")
    salted = salt.encode()
    # The salt's length first: ("ab", "c") and ("a", "bc") must hash differently.
    message = b"%d:%b%b" % (len(salted), salted, key.encode())
    digest = hashlib.blake2b(message, digest_size=8).digest()
    return arms[int.from_bytes(digest, "big") % len(arms)]
