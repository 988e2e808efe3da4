"""Drift of one model replica, from the labelled events it learns from.

Concept drift: ADWIN and Page-Hinkley on the per-event loss (log loss, or absolute error
for regressors), alarming on increases only (a model that improves is not drifting).
Label, prediction and calibration drift: ADWIN on the label, the prediction and
prediction - label, both directions. Feature drift: every `window` labelled events, the
window is compared with the reference window (the first `reference` labelled events):
population stability index for numeric features (bins fixed on the reference window),
Jensen-Shannon divergence for categorical ones. Per event the cost is a handful of ADWIN
and Page-Hinkley updates and one bin lookup per feature; comparisons run once a window.
"""

import bisect
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any

from river import drift

from online_models.quality.evaluation import most_probable
from schemas.drift import DriftReport

OTHER = "__other__"
EPSILON = 1e-4  # smoothing of empty bins in PSI and JS


@dataclass(frozen=True)
class DriftConfig:
    """Detector parameters and windows."""

    reference: int = 1000
    window: int = 1000
    adwin_delta: float = 0.002
    ph_threshold: float = 50.0
    psi_threshold: float = 0.2
    js_threshold: float = 0.1
    bins: int = 10
    max_categories: int = 50


#: One scored, labelled event to watch: (features, label, prediction, event time, offset).
Watched = tuple[dict[str, Any], Any, Any, datetime, int | None]


def psi(reference: list[float], current: list[float]) -> float:
    """Population stability index of two distributions over the same bins.

    >>> round(psi([0.5, 0.5], [0.5, 0.5]), 6)
    0.0
    """
    total = 0.0
    for r, c in zip(reference, current, strict=True):
        r, c = max(r, EPSILON), max(c, EPSILON)
        total += (c - r) * math.log(c / r)
    return total


def jensen_shannon(reference: dict[str, float], current: dict[str, float]) -> float:
    """Jensen-Shannon divergence (base 2: 0 equal, 1 disjoint) of two distributions.

    >>> jensen_shannon({"a": 1.0}, {"b": 1.0})
    1.0
    """
    # In a fixed order: a set of strings iterates in a per-process hash order, and a sum
    # in another order can differ in its last bits (a restored worker's statistic would).
    keys = sorted(set(reference) | set(current), key=str)
    total = 0.0
    for key in keys:
        p, q = reference.get(key, 0.0), current.get(key, 0.0)
        m = (p + q) / 2
        if p > 0:
            total += 0.5 * p * math.log2(p / m)
        if q > 0:
            total += 0.5 * q * math.log2(q / m)
    return total


def page_hinkley_statistic(detector: drift.PageHinkley) -> float:
    """The value River's Page-Hinkley (mode "up") compares with its threshold: the
    cumulative sum of the signal's deviations from its running mean (less its delta),
    above the sum's minimum so far; 0 before its first update.

    River keeps it in private attributes (no public accessor): read here only, and
    pinned by a test (an alarm exactly when it exceeds the threshold).

    >>> ph = drift.PageHinkley(mode="up")
    >>> page_hinkley_statistic(ph)
    0.0
    >>> for x in [0.0] * 40 + [5.0] * 12:
    ...     ph.update(x)
    >>> ph.drift_detected, page_hinkley_statistic(ph) > ph.threshold
    (True, True)
    """
    value = detector._sum_increase - detector._min_increase
    return value if math.isfinite(value) and value > 0 else 0.0


def _proportions(counts: Counter[Any], n: int) -> dict[Any, float]:
    return {k: v / n for k, v in counts.items()} if n else {}


class DriftMonitor:
    """Drift detectors of one model replica; `observe` returns the reports due."""

    #: Page-Hinkley: the largest statistic of the window among the updates River tested,
    #: and the updates since its last (re)start. (Class defaults: a monitor restored from
    #: a checkpoint of an older version has neither attribute.)
    ph_peak = 0.0
    ph_seen = 0

    def __init__(self, model: str, version: str, task: str, config: DriftConfig) -> None:
        self.model, self.version, self.task, self.config = model, version, task, config
        self.detectors: dict[tuple[str, str], Any] = {
            ("adwin", "loss"): drift.ADWIN(delta=config.adwin_delta),
            ("page_hinkley", "loss"): drift.PageHinkley(threshold=config.ph_threshold, mode="up"),
            ("adwin", "label"): drift.ADWIN(delta=config.adwin_delta),
            ("adwin", "prediction"): drift.ADWIN(delta=config.adwin_delta),
            ("adwin", "calibration"): drift.ADWIN(delta=config.adwin_delta),
        }
        if task == "multiclass":  # a class is no number: its mix shows in the loss
            del self.detectors["adwin", "label"]
        self.sums: dict[str, float] = dict.fromkeys((signal for _, signal in self.detectors), 0.0)
        self.alarms: set[tuple[str, str]] = set()  # detectors that fired in the window
        self.n = 0
        self.label_scale = 0.0  # regressors: running mean of |label|
        # Reference window: raw values, then bin edges and proportions.
        self.reference_numeric: dict[str, list[float]] = {}
        self.reference_categorical: dict[str, Counter[str]] = {}
        self.edges: dict[str, list[float]] | None = None
        self.expected_numeric: dict[str, list[float]] = {}
        self.expected_categorical: dict[str, dict[str, float]] = {}
        self.window_numeric: dict[str, Counter[int]] = {}
        self.window_categorical: dict[str, Counter[str]] = {}
        self.window_n = 0
        self.start: tuple[datetime, int | None] | None = None

    def observe(
        self, x: dict[str, Any], y: Any, p: Any, ts: datetime, offset: int | None
    ) -> list[DriftReport]:
        """Update every detector with one labelled event, scored `p` before learning (a
        probability, a value, or a multiclass model's class probabilities).

        Multiclass: `prediction` is the probability of the most probable class (the
        model's confidence) and `calibration` that confidence minus 1 when the class is
        right, 0 when not."""
        return [report for _, report in self.observe_many([(x, y, p, ts, offset)])]

    def observe_many(self, rows: Sequence[Watched]) -> list[tuple[int, DriftReport]]:
        """`observe` of each row in order: the same detectors' states and the same reports,
        each with the position in `rows` of the event that made it. Between two window
        ends, each detector takes its run of values in one loop."""
        due: list[tuple[int, DriftReport]] = []
        start = 0
        while start < len(rows):
            # The run ends with the event that closes the window (or the reference).
            left = (
                self.config.window - self.window_n
                if self.edges is not None
                else self.config.reference - self.n
            )
            end = min(len(rows), start + max(left, 1))
            due += self._run(rows, start, end)
            start = end
        return due

    def _run(self, rows: Sequence[Watched], start: int, end: int) -> list[tuple[int, DriftReport]]:
        """Events start..end-1 of `rows`, of which only the last may close a window."""
        run = rows[start:end]
        if self.start is None:
            self.start = (run[0][3], run[0][4])
        values = self._signals(run)
        alarms: list[tuple[int, int, DriftReport]] = []
        for order, (key, state) in enumerate(self.detectors.items()):
            detector, signal = key
            column = values[signal]
            for i, statistic in self._fired(key, state, column):
                self.alarms.add(key)
                # The signal's window sum before event i, added in event order.
                total = self.sums[signal]
                for value in column[:i]:
                    total += value
                mean = total / max(self.window_n + i, 1)
                _, _, _, ts, offset = run[i]
                report = self._detector_report(
                    detector, signal, "alarm", mean, statistic, True, ts, offset
                )
                alarms.append((start + i, order, report))
        for signal, column in values.items():
            total = self.sums[signal]
            for value in column:  # (in order: the same sum, bit for bit)
                total += value
            self.sums[signal] = total
        for x, _, _, _, _ in run:
            self._features(x)
        self.window_n += len(run)
        alarms.sort(key=itemgetter(0, 1))
        due = [(at, report) for at, _, report in alarms]
        _, _, _, ts, offset = run[-1]
        if self.edges is not None and self.window_n >= self.config.window:
            due += [(end - 1, report) for report in self._window(ts, offset)]
        elif self.edges is None and self.n >= self.config.reference:
            self._fix_reference()
            self._reset(ts, offset)
        return due

    def _fired(
        self, key: tuple[str, str], state: Any, column: list[float]
    ) -> list[tuple[int, float | None]]:
        """Update one detector with `column`, in order: where it fired, each with the
        statistic its report shows (Page-Hinkley's; None for ADWIN)."""
        fired: list[tuple[int, float | None]] = []
        update = state.update
        if key == ("adwin", "loss"):  # alarm on increases only
            for i, value in enumerate(column):
                before = state.estimation
                update(value)
                if state.drift_detected and state.estimation > before:
                    fired.append((i, None))
        elif key[0] == "page_hinkley":
            seen, peak, least = self.ph_seen, self.ph_peak, state.min_instances
            for i, value in enumerate(column):
                seen = 1 if state.drift_detected else seen + 1  # (it resets)
                update(value)
                statistic = page_hinkley_statistic(state)
                if seen >= least:  # River tested it
                    peak = max(peak, statistic)
                if state.drift_detected:
                    fired.append((i, statistic))
            self.ph_seen, self.ph_peak = seen, peak
        else:
            for i, value in enumerate(column):
                update(value)
                if state.drift_detected:
                    fired.append((i, None))
        return fired

    def _signals(self, run: Sequence[Watched]) -> dict[str, list[float]]:
        """Each signal's values over `run`, in order (counts the events in `n`)."""
        signals: dict[str, list[float]] = {signal: [] for signal in self.sums}
        loss_of, label_of = signals["loss"].append, signals.get("label", []).append
        prediction_of, calibration_of = signals["prediction"].append, signals["calibration"].append
        for _, y, p, _, _ in run:
            self.n += 1
            if self.task == "binary":
                q = min(max(p, 1e-15), 1 - 1e-15)
                loss = -math.log(q if y else 1 - q)
            elif self.task == "multiclass":
                loss = -math.log(min(max(p.get(y, 0.0), 1e-15), 1 - 1e-15))
                predicted = most_probable(p)
                confidence = p[predicted]
                p = confidence  # the signals below
                y = predicted == y
            else:
                # Relative to the mean |label| so far, so that the loss detectors'
                # thresholds mean the same for counts in the tens and values in the
                # thousands.
                self.label_scale += (abs(float(y)) - self.label_scale) / self.n
                loss = abs(p - float(y)) / max(self.label_scale, 1e-9)
            loss_of(loss)
            label_of(float(y))
            prediction_of(p)
            calibration_of(p - float(y))
        return signals

    # --- features ----------------------------------------------------------------------
    def _features(self, x: dict[str, Any]) -> None:
        if self.edges is None:  # still the reference window
            for name, value in x.items():
                if type(value) is str or type(value) is bool:
                    self.reference_categorical.setdefault(name, Counter())[str(value)] += 1
                elif isinstance(value, int | float):
                    self.reference_numeric.setdefault(name, []).append(float(value))
            return
        edges, numeric, categorical = self.edges, self.window_numeric, self.window_categorical
        for name, value in x.items():
            if name in edges:
                if type(value) is not str and type(value) is not bool:
                    numeric[name][bisect.bisect_right(edges[name], value)] += 1
            else:
                known = self.expected_categorical.get(name)
                if known is not None:
                    category = value if type(value) is str else str(value)
                    categorical[name][category if category in known else OTHER] += 1

    def _fix_reference(self) -> None:
        """Bin edges (reference quantiles) and proportions of the reference window."""
        self.edges = {}
        for name, values in self.reference_numeric.items():
            ordered = sorted(values)
            qs = [
                ordered[int(len(ordered) * i / self.config.bins)]
                for i in range(1, self.config.bins)
            ]
            edges = sorted(set(qs))
            self.edges[name] = edges
            counts = Counter(bisect.bisect_right(edges, v) for v in values)
            self.expected_numeric[name] = [counts[i] / len(values) for i in range(len(edges) + 1)]
        for name, categories in self.reference_categorical.items():
            top = dict(categories.most_common(self.config.max_categories))
            other = sum(categories.values()) - sum(top.values())
            if other:
                top[OTHER] = other
            self.expected_categorical[name] = _proportions(Counter(top), sum(categories.values()))
        self.reference_numeric.clear()
        self.reference_categorical.clear()
        self.window_numeric = {name: Counter() for name in self.edges}
        self.window_categorical = {name: Counter() for name in self.expected_categorical}

    def _window(self, ts: datetime, offset: int | None) -> list[DriftReport]:
        """The window's statistics against the reference, then a new window."""
        c = self.config
        reports = []
        for (detector, signal), _ in self.detectors.items():
            mean = self.sums[signal] / self.window_n
            fired = (detector, signal) in self.alarms
            peak = self.ph_peak if detector == "page_hinkley" else None
            reports.append(
                self._detector_report(detector, signal, "window", mean, peak, fired, ts, offset)
            )
        assert self.edges is not None
        for name, expected in self.expected_numeric.items():
            counts = self.window_numeric.get(name, Counter())
            n = sum(counts.values())
            if not n:
                continue
            current = [counts[i] / n for i in range(len(expected))]
            value = psi(expected, current)
            flag = value > c.psi_threshold
            report = self._report(
                "psi", f"feature:{name}", "window", value, c.psi_threshold, flag, ts, offset
            )
            reports.append(report)
        for name, expected_dist in self.expected_categorical.items():
            seen = self.window_categorical.get(name, Counter())
            total = sum(seen.values())
            if not total:
                continue
            value = jensen_shannon(expected_dist, _proportions(seen, total))
            flag = value > c.js_threshold
            report = self._report(
                "jensen_shannon",
                f"feature:{name}",
                "window",
                value,
                c.js_threshold,
                flag,
                ts,
                offset,
            )
            reports.append(report)
        self._reset(ts, offset)
        return reports

    def _reset(self, ts: datetime, offset: int | None) -> None:
        self.sums = dict.fromkeys(self.sums, 0.0)
        self.ph_peak = 0.0
        self.alarms.clear()
        for bins in self.window_numeric.values():
            bins.clear()
        for categories in self.window_categorical.values():
            categories.clear()
        self.window_n = 0
        self.start = None

    def _detector_report(
        self,
        detector: str,
        signal: str,
        trigger: str,
        mean: float,
        statistic: float | None,
        flag: bool,
        ts: datetime,
        offset: int | None,
    ) -> DriftReport:
        """An ADWIN or Page-Hinkley report: the signal's mean over the window, and what
        the detector compares. ADWIN has no single statistic: it compares the means of
        every split of its window against a bound its delta sets."""
        if detector == "adwin":
            return self._report(
                detector,
                signal,
                trigger,
                None,
                None,
                flag,
                ts,
                offset,
                mean=mean,
                delta=self.config.adwin_delta,
            )
        return self._report(
            detector,
            signal,
            trigger,
            statistic,
            self.config.ph_threshold,
            flag,
            ts,
            offset,
            mean=mean,
        )

    def _report(
        self,
        detector: str,
        signal: str,
        trigger: str,
        statistic: float | None,
        threshold: float | None,
        flag: bool,
        ts: datetime,
        offset: int | None,
        *,
        mean: float | None = None,
        delta: float | None = None,
    ) -> DriftReport:
        start_ts, start_offset = self.start or (ts, offset)
        return DriftReport.model_construct(
            model=self.model,
            model_version=self.version,
            partition=None,
            detector=detector,
            signal=signal,
            trigger=trigger,
            statistic=statistic,
            threshold=threshold,
            mean=mean,
            delta=delta,
            drift=flag,
            window_start=start_ts,
            window_end=ts,
            window_start_offset=start_offset,
            window_end_offset=offset,
            schema_version=2,
        )
