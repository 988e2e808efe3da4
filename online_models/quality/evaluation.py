"""Streamed prequential evaluation: each prediction is scored before the model learns.

Metrics River has (LogLoss, Accuracy, Precision, Recall, F1, MAE, RMSE, R2) are River's
own objects, fed exactly what `river.evaluate.progressive_val_score` feeds them, so the
stream's numbers equal an offline evaluation. River's ROCAUC is a thresholded
approximation, so `BoundedAUC` counts concordant pairs instead: exactly while a segment
has seen few distinct scores, then over score cells, within a bound it reports.

Every piece of state is bounded by the configuration, never by the stream's length (see
`EvaluationConfig`).
"""

import itertools
import math
import struct
from array import array
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter, mul
from typing import Any, Literal

import numpy as np
from river import metrics, utils

from schemas import MetricsReport
from schemas.prediction import class_text

OTHER = "__other__"


def most_probable(proba: dict[Any, float]) -> Any:
    """The class River's `predict_one` predicts from class probabilities: the most
    probable, the first of equals in the dict's order.

    >>> most_probable({"path": 0.2, "sky": 0.4, "grass": 0.4})
    'sky'
    """
    return max(proba, key=proba.__getitem__)


_FLOAT = struct.Struct("<d")
_INT = struct.Struct("<q")
_HALF = _INT.unpack(_FLOAT.pack(0.5))[0]  # the bits of 0.5, read as an integer


def score_key(p: float) -> int:
    """An integer key of a probability: keys order as the scores do, distinct scores have
    distinct keys, and low bits resolve min(p, 1 - p) with the same relative precision
    near 0 and near 1.

    It is the IEEE 754 bits of min(p, 1 - p) read as an integer (which orders positive
    floats), mirrored around 0.5 (1 - p is exact for p >= 0.5). Scores outside [0, 1]
    count as 0 or 1.

    >>> keys = [score_key(p) for p in (0.0, 1e-300, 0.25, 0.5, 0.5 + 2**-53, 1 - 1e-16, 1.0)]
    >>> keys == sorted(set(keys))
    True
    >>> score_key(0.75) - score_key(0.5) == score_key(0.5) - score_key(0.25)
    True
    """
    if not p > 0.0:  # also -0.0 and NaN
        return 0
    if p >= 1.0:
        return 2 * _HALF
    if p <= 0.5:
        return int(_INT.unpack(_FLOAT.pack(p))[0])
    return 2 * _HALF - int(_INT.unpack(_FLOAT.pack(1.0 - p))[0])


def score_keys(ps: "np.ndarray[Any, Any]") -> "np.ndarray[Any, Any]":
    """`score_key` of each score, vectorised (the same integers).

    >>> ps = [0.0, -0.0, float("nan"), 1e-300, 0.25, 0.5, 0.75, 1 - 1e-16, 1.0, 2.0]
    >>> score_keys(np.array(ps)).tolist() == [score_key(p) for p in ps]
    True
    """
    low = np.minimum(ps, 1.0 - ps).view(np.int64)
    keys = np.where(ps <= 0.5, ps.view(np.int64), 2 * _HALF - low)
    keys = np.where(ps >= 1.0, 2 * _HALF, keys)
    return np.where(ps > 0.0, keys, 0)


#: Sums of pair counts below this fit in an int64 (numpy's) however they are added.
_INT64_SAFE = 2**62

#: Below this many updates at once, one by one is cheaper than numpy's set-up.
_FEW = 32


def _int_array(values: "np.ndarray[Any, Any]") -> array:  # type: ignore[type-arg]
    """An `array("q")` of int64 values (what checkpoints pickle)."""
    out = array("q")
    out.frombytes(np.ascontiguousarray(values, np.int64).tobytes())
    return out


class BoundedAUC:
    """ROC AUC of every event so far in bounded memory: the share of (positive, negative)
    pairs whose positive has the higher score, ties counting 1/2, over at most `cells`
    score cells.

    A cell is the scores whose `score_key` agrees but for its `shift` lowest bits: cells are
    consecutive ranges of scores, so a pair in two cells is ordered exactly, and a pair
    in one cell counts 1/2. While `shift` is 0 a cell holds one distinct score (its pairs
    are ties, which do count 1/2): the value is exact. When a new score would make
    `cells + 1` cells, neighbouring cells merge, dropping the fewest further low bits
    that leave at most `cells` (`shift` only grows; a segment with at most `cells`
    distinct scores stays exact).

    **Bound.** With P_i positives and N_i negatives in cell i and P, N in all, cell i
    holds P_i·N_i pairs, between 0 and P_i·N_i of them correctly ordered, counted
    P_i·N_i/2. So, for any scores,

        |get() - exact AUC| <= bound() = sum_i P_i·N_i / (2·P·N),   0 while shift is 0.

    How small it is depends on how the scores spread: at shift s <= 52 a cell's scores
    share the exponent and the first 52 - s mantissa bits of min(p, 1 - p), so its
    width is at most 2^(s-52) of its scores (2^(s-51) in log-odds), and with f+, f- the
    densities of the positives' and negatives' log-odds the bound is about
    2^(s-52)·∫f+·f-. The error itself is far smaller: in a narrow cell a positive is
    about as often above a negative as below it.

    Memory: three int64 arrays of at most `cells` + 1 entries (24 bytes a cell, also in a
    checkpoint). `update` costs O(log cells), plus a move of the arrays' tails when a cell
    opens; `get` and `bound` O(cells).

    >>> auc = BoundedAUC(cells=1000)
    >>> for y, p in [(True, 0.9), (False, 0.1), (True, 0.4), (False, 0.4)]:
    ...     auc.update(y, p)
    >>> auc.get(), auc.bound()  # pairs: (0.9>0.1) (0.9>0.4) (0.4>0.1) (0.4=0.4 -> 1/2)
    (0.875, 0.0)
    >>> two = BoundedAUC(cells=2)  # 0.1 and 0.4 now share a cell: (0.4, 0.1) counts 1/2
    >>> for y, p in [(True, 0.9), (False, 0.1), (True, 0.4), (False, 0.4)]:
    ...     two.update(y, p)
    >>> two.get(), two.bound()
    (0.75, 0.25)
    """

    def __init__(self, cells: int) -> None:
        if cells < 1:
            raise ValueError(f"a bounded AUC needs at least one cell, not {cells}")
        self.cells = cells
        self.shift = 0
        self.keys = array("q")  # ascending cell keys: score_key(p) >> shift
        self.positives = array("q")  # per cell
        self.negatives = array("q")
        self.n_positives = self.n_negatives = 0

    def update(self, y: bool, p: float) -> None:
        key = score_key(p) >> self.shift
        keys = self.keys
        i = bisect_left(keys, key)
        if i == len(keys) or keys[i] != key:
            keys.insert(i, key)
            self.positives.insert(i, 0)
            self.negatives.insert(i, 0)
        if y:
            self.positives[i] += 1
            self.n_positives += 1
        else:
            self.negatives[i] += 1
            self.n_negatives += 1
        if len(keys) > self.cells:
            self._coarsen()

    def update_many(self, ys: Sequence[bool], ps: Sequence[float]) -> None:
        """`update` of each (y, p) in order: the same state. The events up to the one
        that opens a cell past `cells` merge into the cells in one pass, that one
        coarsens them as `update` does, and so on."""
        n = len(ps)
        if n < _FEW:
            for y, p in zip(ys, ps, strict=True):
                self.update(y, p)
            return
        keys = score_keys(np.fromiter(ps, np.float64, n))
        labels = np.fromiter(ys, np.bool_, n)
        start = 0
        while start < n:
            start += self._merge(keys[start:] >> self.shift, labels[start:])
            if start < n:  # this one opens a cell past the limit
                self.update(ys[start], ps[start])
                start += 1

    def _merge(self, keys: "np.ndarray[Any, Any]", labels: "np.ndarray[Any, Any]") -> int:
        """Count the longest prefix of (key, label) that opens no cell past `cells`;
        returns its length."""
        held = np.frombuffer(self.keys, np.int64).copy()  # (a view would pin the array)
        new, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        at: Any = np.searchsorted(held, new)
        known = at < len(held)
        known[known] = held[at[known]] == new[known]
        opening = np.sort(first[~known])  # where each new cell would open
        room = self.cells - len(held)
        if len(opening) > room:
            limit = int(opening[room])
            return self._merge(keys[:limit], labels[:limit]) if limit else 0
        # Cells open before the held cell of the same position; `new` is sorted.
        opens = at[~known]
        merged = np.insert(held, opens, new[~known])
        positives = np.insert(np.frombuffer(self.positives, np.int64), opens, 0)
        negatives = np.insert(np.frombuffer(self.negatives, np.int64), opens, 0)
        into: Any = at + np.cumsum(~known) - ~known  # each new key's cell in `merged`
        positives[into] += np.bincount(inverse[labels], minlength=len(new))
        negatives[into] += np.bincount(inverse[~labels], minlength=len(new))
        self.keys, self.positives, self.negatives = (
            _int_array(merged),
            _int_array(positives),
            _int_array(negatives),
        )
        added = int(np.count_nonzero(labels))
        self.n_positives += added
        self.n_negatives += len(keys) - added
        return len(keys)

    def _coarsen(self) -> None:
        """Merge neighbouring cells: drop the fewest further bits that leave `cells`."""
        keys = np.frombuffer(self.keys, np.int64).copy()
        # Neighbours merge once the bits they differ in are dropped: after dropping d bits,
        # 1 + (neighbour pairs whose keys still differ) cells are left; the fewest d that
        # leaves `cells`, by bisection (it only grows with d).
        low, high = 0, 63  # (keys are below 2**63: at 63 bits dropped, one cell is left)
        while low < high:
            drop = (low + high) // 2
            shifted = keys >> drop
            if 1 + int(np.count_nonzero(shifted[1:] != shifted[:-1])) <= self.cells:
                high = drop
            else:
                low = drop + 1
        shifted = keys >> low
        starts = np.flatnonzero(np.concatenate(([True], shifted[1:] != shifted[:-1])))
        self.keys = _int_array(shifted[starts])
        self.positives = _int_array(
            np.add.reduceat(np.frombuffer(self.positives, np.int64), starts)
        )
        self.negatives = _int_array(
            np.add.reduceat(np.frombuffer(self.negatives, np.int64), starts)
        )
        self.shift += low

    def get(self) -> float | None:
        """None until there is at least one positive and one negative."""
        pairs = self.n_positives * self.n_negatives
        if not pairs:
            return None
        # Twice the concordant pairs, in integers: the same value on every machine.
        if 2 * pairs < _INT64_SAFE:  # (no sum below can overflow int64)
            positives = np.frombuffer(self.positives, np.int64)
            negatives = np.frombuffer(self.negatives, np.int64)
            lower = np.cumsum(negatives) - negatives  # negatives in lower cells
            twice = 2 * int(np.dot(positives, lower)) + int(np.dot(positives, negatives))
            return twice / (2 * pairs)
        below = itertools.accumulate(self.negatives, initial=0)
        inside = sum(map(mul, self.positives, self.negatives))
        return (2 * sum(map(mul, self.positives, below)) + inside) / (2 * pairs)

    def bound(self) -> float | None:
        """The largest possible |get() - exact AUC|; None when `get()` is."""
        pairs = self.n_positives * self.n_negatives
        if not pairs:
            return None
        if not self.shift:
            return 0.0
        if 2 * pairs < _INT64_SAFE:
            positives = np.frombuffer(self.positives, np.int64)
            inside = int(np.dot(positives, np.frombuffer(self.negatives, np.int64)))
            return inside / (2 * pairs)
        return sum(map(mul, self.positives, self.negatives)) / (2 * pairs)


def ranking(
    scored: Sequence[tuple[float, bool]], *fractions: float
) -> tuple[float | None, list[float | None]]:
    """Exact AUC and lift at each fraction of a window of (score, label), from one sort.

    Computed when a report is made rather than per event: a window of 10,000 costs one
    sort per report instead of sorted-list updates on every event (in numpy: ~2.9 ms where
    the same in Python took ~4.8, every RIVERRUN_METRICS_EVERY_EVENTS events).

    Lift at k: the positive rate among the top ceil(k * n) after a stable sort by
    descending score (ties keep arrival order), over the positive rate of all; None
    without positives. AUC: exact, the share of (positive, negative) pairs ordered
    right, ties 1/2; None without both classes. Counted in integers and halves, so the
    value is the same whatever the order of summation.

    >>> ranking([(0.9, True), (0.1, False), (0.4, True), (0.4, False)], 0.25)
    (0.875, [2.0])
    """
    return ranked(*columns(scored), *fractions)


Columns = tuple["np.ndarray[Any, Any]", "np.ndarray[Any, Any]"]


def columns(scored: Sequence[tuple[float, bool]]) -> Columns:
    """The scores and the labels of a window of (score, label), as two arrays."""
    n = len(scored)
    # (Not `zip(*scored)`: with strict=True it asks each of n tuples for a third item.)
    scores = np.fromiter(map(itemgetter(0), scored), np.float64, n)
    labels = np.fromiter(map(itemgetter(1), scored), np.bool_, n)
    return scores, labels


def ranked(
    scores: "np.ndarray[Any, Any]", labels: "np.ndarray[Any, Any]", *fractions: float
) -> tuple[float | None, list[float | None]]:
    """`ranking` of a window given as its `columns`."""
    n = len(scores)
    lifts: list[float | None] = [None for _ in fractions]
    if not n:
        return None, lifts
    positives = int(np.count_nonzero(labels))
    negatives = n - positives
    if not positives:
        return None, lifts
    # One stable sort on the negated scores: descending, ties in arrival order.
    order = np.argsort(-scores, kind="stable")
    ranked = labels[order]
    top_labels = np.cumsum(ranked)
    rate = positives / n
    for i, fraction in enumerate(fractions):
        top = math.ceil(fraction * n)
        lifts[i] = int(top_labels[top - 1]) / top / rate
    if not negatives:
        return None, lifts
    # Per run of equal scores (descending): its positives and negatives; each positive
    # beats the negatives of lower scores and half of those of its own.
    ranked_scores = scores[order]
    starts = np.flatnonzero(np.concatenate(([True], ranked_scores[1:] != ranked_scores[:-1])))
    group_positives = np.add.reduceat(ranked.astype(np.int64), starts)
    group_negatives = np.diff(np.append(starts, n)) - group_positives
    negatives_below = negatives - np.cumsum(group_negatives)
    concordant = float(np.sum(group_positives * (negatives_below + 0.5 * group_negatives)))
    return concordant / (positives * negatives), lifts


class ScoreWindow:
    """The last `size` (score, label) pairs in two numpy rings: appended in place, read
    as `columns` oldest first, pickled as two arrays.

    >>> window = ScoreWindow(3)
    >>> window.extend([0.1, 0.2], [True, False]); window.append(0.3, True)
    >>> window.append(0.4, False)  # 0.1 leaves
    >>> [column.tolist() for column in window.columns()], len(window)
    ([[0.2, 0.3, 0.4], [False, True, False]], 3)
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.scores = np.zeros(size, np.float64)
        self.labels = np.zeros(size, np.bool_)
        self.end = 0  # where the next pair goes
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def append(self, score: float, label: bool) -> None:
        if self.size:
            self.scores[self.end], self.labels[self.end] = score, label
            self.end = (self.end + 1) % self.size
            self.count = min(self.size, self.count + 1)

    def extend(self, scores: Sequence[float], labels: Sequence[bool]) -> None:
        k, size = len(scores), self.size
        if not k or not size:
            return
        new_scores = np.fromiter(scores, np.float64, k)[-size:]
        new_labels = np.fromiter(labels, np.bool_, k)[-size:]
        k = len(new_scores)
        first = min(k, size - self.end)  # up to the ring's end, the rest from its start
        self.scores[self.end : self.end + first] = new_scores[:first]
        self.labels[self.end : self.end + first] = new_labels[:first]
        self.scores[: k - first] = new_scores[first:]
        self.labels[: k - first] = new_labels[first:]
        self.end = (self.end + k) % size
        self.count = min(size, self.count + k)

    def columns(self) -> Columns:
        """The scores and the labels, oldest first (copies)."""
        if self.count < self.size:  # (not full yet: from the start, in order)
            return self.scores[: self.count].copy(), self.labels[: self.count].copy()
        end = self.end
        return (
            np.concatenate((self.scores[end:], self.scores[:end])),
            np.concatenate((self.labels[end:], self.labels[:end])),
        )

    @classmethod
    def of(cls, pairs: deque[tuple[float, bool]]) -> "ScoreWindow":
        """The window of a deque of (score, label) (what checkpoints before it held)."""
        window = cls(pairs.maxlen or 0)
        window.extend([p for p, _ in pairs], [y for _, y in pairs])
        return window


def _entropy(rate: float) -> float:
    if rate <= 0.0 or rate >= 1.0:
        return 0.0
    return -(rate * math.log(rate) + (1 - rate) * math.log(1 - rate))


class BinaryQuality:
    """Every metric of one binary model, or of one segment of its traffic."""

    def __init__(self, window: int, threshold: float, auc_cells: int) -> None:
        self.threshold = threshold
        self.logloss = metrics.LogLoss()
        # The window's log loss is computed from `recent` when it is read (`window_logloss`).
        # One confusion matrix, updated once per event, read by all four metrics (River's
        # `cm=` sharing): the same values as four separate ones, at a quarter of the cost.
        self.confusion = metrics.ConfusionMatrix()
        self.accuracy = metrics.Accuracy(cm=self.confusion)
        self.precision = metrics.Precision(cm=self.confusion)
        self.recall = metrics.Recall(cm=self.confusion)
        self.f1 = metrics.F1(cm=self.confusion)
        self.auc = BoundedAUC(auc_cells)
        self.recent = ScoreWindow(window)
        self.n = self.positives = 0
        self.predicted = 0.0
        self.period_n = self.period_positives = 0
        self.period_predicted = 0.0

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled: a checkpoint written before `ScoreWindow` holds a deque of pairs
        and a River Rolling log loss, which the window replaces."""
        state.pop("logloss_window", None)
        if isinstance(state.get("recent"), deque):
            state["recent"] = ScoreWindow.of(state["recent"])
        self.__dict__.update(state)

    def update(self, y: bool, p: float) -> None:
        # River's predict_one for a binary classifier returns the class with the larger
        # probability (False on a tie): that is `p > 0.5`, the default threshold.
        label = p > self.threshold
        self.logloss.update(y, p)
        self.confusion.update(y, label)
        self.auc.update(y, p)
        self.recent.append(p, y)
        self.n += 1
        self.positives += y
        self.predicted += p
        self.period_n += 1
        self.period_positives += y
        self.period_predicted += p

    def update_many(self, ys: Sequence[bool], ps: Sequence[float]) -> None:
        """`update` of each (y, p) in order: the same state, bit for bit, whatever the
        batches (the sums are added in order; the counts and the AUC's cells are
        integers)."""
        if len(ps) < _FEW:  # (one at a time costs less than the set-up below)
            for y, p in zip(ys, ps, strict=True):
                self.update(y, p)
            return
        # River's LogLoss: the clamped loss into its running mean (`stats.Mean.update`
        # with w = 1.0, the same operations in the same order).
        mean = self.logloss._mean
        count, value = mean.n, mean._mean
        predicted, period_predicted = self.predicted, self.period_predicted
        log = math.log
        for y, p in zip(ys, ps, strict=True):
            q = 1e-15 if p < 1e-15 else 1 - 1e-15 if p > 1 - 1e-15 else p
            count += 1.0
            value += (1.0 / count) * (-log(q if y else 1 - q) - value)
            predicted += p
            period_predicted += p
        mean.n, mean._mean = count, value
        self.predicted, self.period_predicted = predicted, period_predicted
        n, positives = len(ps), sum(ys)
        self.n += n
        self.positives += positives
        self.period_n += n
        self.period_positives += positives
        cm, threshold = self.confusion, self.threshold
        for (y, label), times in Counter(
            (bool(y), p > threshold) for y, p in zip(ys, ps, strict=True)
        ).items():
            w = float(times)  # (ConfusionMatrix.update with w = 1.0, `times` times)
            cm.n_samples += times
            cm.data[y][label] += w
            cm.total_weight += w
            cm.sum_row[y] += w
            cm.sum_col[label] += w
            if y == label:
                cm._total_true_positives += w
        self.auc.update_many(ys, ps)
        self.recent.extend(ps, ys)

    def window_logloss(self, window: Columns | None = None) -> float:
        """River's LogLoss over `recent` (0.0 when empty, as River's); `window`: its
        `columns`, when they were taken already."""
        if not self.recent:
            return 0.0
        scores, labels = window or self.recent.columns()
        q = np.clip(scores, 1e-15, 1 - 1e-15)
        return float(np.mean(-np.log(np.where(labels, q, 1 - q))))

    def new_period(self) -> None:
        self.period_n = self.period_positives = 0
        self.period_predicted = 0.0

    def values(self) -> dict[str, float | None]:
        rate = self.positives / self.n if self.n else None
        base_entropy = _entropy(rate) if rate is not None else 0.0
        window = self.recent.columns()
        auc_window, (lift_5, lift_20) = ranked(*window, 0.05, 0.20)
        return {
            "n": float(self.n),
            "logloss": self.logloss.get(),
            "logloss_window": self.window_logloss(window),
            "normalized_entropy": self.logloss.get() / base_entropy if base_entropy else None,
            "auc": self.auc.get(),
            "auc_bound": self.auc.bound(),
            "auc_window": auc_window,
            "accuracy": self.accuracy.get(),
            "precision": self.precision.get(),
            "recall": self.recall.get(),
            "f1": self.f1.get(),
            "lift_5_window": lift_5,
            "lift_20_window": lift_20,
            "mean_predicted": self.predicted / self.n if self.n else None,
            "observed_rate": rate,
            "predicted_positives": self.predicted,
            "actual_positives": float(self.positives),
            "period_n": float(self.period_n),
            "period_predicted_positives": self.period_predicted,
            "period_actual_positives": float(self.period_positives),
        }

    def headline(self) -> tuple[str, float]:
        """The rolling metric for the operators' quality gauge."""
        return "logloss", self.window_logloss()


class RegressionQuality:
    """Every metric of one regression model, or of one segment of its traffic, with the
    per-key moving-average baseline scored on the same events."""

    def __init__(self, window: int) -> None:
        self.mae = metrics.MAE()
        self.rmse = metrics.RMSE()
        self.r2 = metrics.R2()
        self.mae_window: Any = utils.Rolling(metrics.MAE, window_size=window)
        self.baseline_mae = metrics.MAE()
        self.baseline_mae_window: Any = utils.Rolling(metrics.MAE, window_size=window)
        self.n = self.period_n = 0
        self.predicted = self.actual = 0.0
        self.period_predicted = self.period_actual = 0.0

    def update(self, y: float, p: float, baseline: float) -> None:
        for metric in (self.mae, self.rmse, self.r2, self.mae_window):
            metric.update(y, p)
        self.baseline_mae.update(y, baseline)
        self.baseline_mae_window.update(y, baseline)
        self.n += 1
        self.period_n += 1
        self.predicted += p
        self.actual += y
        self.period_predicted += p
        self.period_actual += y

    def new_period(self) -> None:
        self.period_n = 0
        self.period_predicted = self.period_actual = 0.0

    def values(self) -> dict[str, float | None]:
        return {
            "n": float(self.n),
            "mae": self.mae.get(),
            "rmse": self.rmse.get(),
            "r2": self.r2.get(),
            "mae_window": self.mae_window.get(),
            "baseline_mae": self.baseline_mae.get(),
            "baseline_mae_window": self.baseline_mae_window.get(),
            "predicted_total": self.predicted,
            "actual_total": self.actual,
            "period_n": float(self.period_n),
            "period_predicted_total": self.period_predicted,
            "period_actual_total": self.period_actual,
        }

    def headline(self) -> tuple[str, float]:
        return "mae", self.mae_window.get()


class ClassQuality:
    """Every metric of one multiclass model, or of one segment of its traffic.

    River's own objects where River has them, fed what `progressive_val_score` feeds them:
    the class probabilities (log loss) and the most probable class (the rest). Macro and
    per-class figures are computed from River's confusion matrix with River's formulas,
    over the classes in a fixed order, so that every process reports the same bytes.
    """

    def __init__(self, window: int) -> None:
        self.logloss = metrics.CrossEntropy()
        self.logloss_window: Any = utils.Rolling(metrics.CrossEntropy, window_size=window)
        self.confusion = metrics.ConfusionMatrix()  # updated once per event, read by all
        self.accuracy = metrics.Accuracy(cm=self.confusion)
        self.micro_f1 = metrics.MicroF1(cm=self.confusion)
        self.accuracy_window: Any = utils.Rolling(metrics.Accuracy, window_size=window)
        self.texts: dict[Any, str] = {}  # class -> its text, as on the wire
        self.n = self.period_n = 0

    def update(self, y: Any, proba: dict[Any, float]) -> None:
        """Score one prediction (`proba` not empty: River does not score an empty one)."""
        predicted = most_probable(proba)
        self.logloss.update(y, proba)
        self.logloss_window.update(y, proba)
        self.confusion.update(y, predicted)
        self.accuracy_window.update(y, predicted)
        for label in (y, predicted):
            if label not in self.texts:
                self.texts[label] = class_text(label)
        self.n += 1
        self.period_n += 1

    def new_period(self) -> None:
        self.period_n = 0

    def _classes(self) -> list[Any]:
        return sorted(self.confusion.classes, key=lambda c: self.texts[c])

    def values(self) -> dict[str, float | None]:
        cm = self.confusion
        classes = self._classes()
        precision: dict[str, float | None] = {}
        recall: dict[str, float | None] = {}
        macro_p = macro_r = macro_f1 = 0.0
        for c in classes:
            hits = cm.data.get(c, {}).get(c, 0.0)
            predicted, actual = cm.sum_col.get(c, 0.0), cm.sum_row.get(c, 0.0)
            p = hits / predicted if predicted else None
            r = hits / actual if actual else None
            precision[f"precision[{self.texts[c]}]"] = p
            recall[f"recall[{self.texts[c]}]"] = r
            macro_p += p or 0.0
            macro_r += r or 0.0
            if p or r:  # River's MacroF1: 0 for a class with p + r = 0
                macro_f1 += 2 * (p or 0.0) * (r or 0.0) / ((p or 0.0) + (r or 0.0))
        k = len(classes)
        return {
            "n": float(self.n),
            "logloss": self.logloss.get(),
            "logloss_window": self.logloss_window.get(),
            "accuracy": self.accuracy.get(),
            "accuracy_window": self.accuracy_window.get(),
            "macro_precision": macro_p / k if k else 0.0,
            "macro_recall": macro_r / k if k else 0.0,
            "macro_f1": macro_f1 / k if k else 0.0,
            "micro_f1": self.micro_f1.get(),
            "classes": float(k),
            **precision,
            **recall,
            "period_n": float(self.period_n),
        }

    def confusion_counts(self) -> dict[str, dict[str, int]]:
        """Actual class -> predicted class -> count, classes as text, in a fixed order."""
        return {
            self.texts[actual]: {
                self.texts[predicted]: int(count)
                for predicted, count in sorted(
                    self.confusion.data[actual].items(), key=lambda item: self.texts[item[0]]
                )
                if count
            }
            for actual in self._classes()
            if self.confusion.sum_row.get(actual)
        }

    def headline(self) -> tuple[str, float]:
        return "logloss", self.logloss_window.get()


class MovingAverageBaseline:
    """Predicts a key's mean of its last `window` labels (the global mean for a new key).

    What a team forecasting clicks per offer would do without a model. At most `max_keys`
    keys are remembered; the least recently seen is forgotten first.
    """

    def __init__(self, window: int, max_keys: int) -> None:
        self.window = window
        self.max_keys = max_keys
        self.history: dict[str, deque[float]] = {}
        self.total = 0.0
        self.count = 0

    def predict(self, key: str) -> float:
        past = self.history.get(key)
        if past:
            return sum(past) / len(past)
        return self.total / self.count if self.count else 0.0

    def learn(self, key: str, y: float) -> None:
        past = self.history.pop(key, None)  # re-inserted last: dict order is recency
        if past is None:
            past = deque(maxlen=self.window)
            if len(self.history) >= self.max_keys:
                del self.history[next(iter(self.history))]
        past.append(y)
        self.history[key] = past
        self.total += y
        self.count += 1


@dataclass(frozen=True)
class EvaluationConfig:
    """How metrics are computed and when they are reported.

    What bounds the state of one model's `Evaluator`: at most 1 + F·(max_segments + 1)
    segments for F segment features (each feature's first `max_segments` values, then
    one `__other__` bucket); per segment, windows of `window` events, River's running
    metrics and confusion matrix (constant size; classes for a multiclass model), and a
    binary model's `BoundedAUC` of at most `auc_cells` cells (24 bytes each); for a
    regressor, the baseline's `baseline_window` labels for at most `baseline_max_keys`
    keys.
    """

    window: int = 10_000
    threshold: float = 0.5
    every_events: int = 1_000
    period_seconds: float = 86_400.0
    segment_features: tuple[str, ...] = ()
    max_segments: int = 50
    baseline_window: int = 7
    baseline_max_keys: int = 100_000
    #: Score cells of the cumulative AUC per segment: exact up to this many distinct
    #: scores, then within its reported bound (`BoundedAUC`). 384 KB per segment at most.
    auc_cells: int = 16_384


Quality = BinaryQuality | RegressionQuality | ClassQuality

#: One labelled prediction to score: (label, prediction, features, key, event time).
Scored = tuple[Any, Any, dict[str, Any], str, datetime]


@dataclass
class Evaluator:
    """Prequential metrics of one model, overall and per segment, and when to report them.

    `task` is the model's: binary, multiclass or regression.
    """

    model: str
    model_version: str
    task: str
    config: EvaluationConfig = field(default_factory=EvaluationConfig)

    def __post_init__(self) -> None:
        self.segments: dict[str, Quality] = {"all": self._quality()}
        self.values_seen: dict[str, set[str]] = {f: set() for f in self.config.segment_features}
        self.baseline = MovingAverageBaseline(
            self.config.baseline_window, self.config.baseline_max_keys
        )
        self.n = 0
        self.period: int | None = None
        self.last_ts: datetime | None = None

    def _quality(self) -> Quality:
        if self.task == "binary":
            return BinaryQuality(self.config.window, self.config.threshold, self.config.auc_cells)
        if self.task == "multiclass":
            return ClassQuality(self.config.window)
        return RegressionQuality(self.config.window)

    def _segment_names(self, features: dict[str, Any]) -> Iterator[str]:
        yield "all"
        for feature in self.config.segment_features:
            value = str(features.get(feature, "__missing__"))
            seen = self.values_seen[feature]
            if value not in seen:
                if len(seen) >= self.config.max_segments:
                    value = OTHER
                else:
                    seen.add(value)
            yield f"{feature}={value}"

    def observe(
        self, y: Any, p: Any, features: dict[str, Any], key: str, ts: datetime
    ) -> list[MetricsReport]:
        """Score one labelled prediction (a probability or a value; for a multiclass
        model, its class probabilities); return the reports it makes due, in order."""
        return [report for _, report in self.observe_many([(y, p, features, key, ts)])]

    def observe_many(self, scored: Sequence[Scored]) -> list[tuple[int, MetricsReport]]:
        """`observe` of each labelled prediction in order, in runs between the reports
        (each segment's metrics of a run in one `update_many` for a binary model): the
        same state and reports as one by one, each report with the position in `scored`
        of the event that made it due."""
        due: list[tuple[int, MetricsReport]] = []
        every, seconds = self.config.every_events, self.config.period_seconds
        start = 0
        for i, (_, _, _, _, ts) in enumerate(scored):
            period = math.floor(ts.timestamp() / seconds)
            if self.period is None:
                self.period = period
            elif period > self.period:  # a late event stays in the current period
                self._score(scored[start:i])
                start = i
                due += [(i, report) for report in self.reports("period")]
                for quality in self.segments.values():
                    quality.new_period()
                self.period = period
            self.n += 1
            self.last_ts = ts
            if self.n % every == 0:
                self._score(scored[start : i + 1])
                start = i + 1
                due += [(i, report) for report in self.reports("events")]
        self._score(scored[start:])
        return due

    def _score(self, run: Sequence[Scored]) -> None:
        """Update the segments with `run` (already counted in `n`)."""
        if not run:
            return
        if self.task != "binary":  # (one by one: the baseline learns between events)
            for y, p, features, key, _ in run:
                self._update(y, p, features, key)
            return
        members: dict[str, list[int]] = {"all": list(range(len(run)))}
        if self.config.segment_features:
            members = {}
            for i, (_, _, features, _, _) in enumerate(run):
                for name in self._segment_names(features):
                    members.setdefault(name, []).append(i)
        for name, positions in members.items():
            quality = self.segments.get(name)
            if quality is None:
                quality = self.segments[name] = self._quality()
            assert isinstance(quality, BinaryQuality)
            ys = [bool(run[i][0]) for i in positions]
            quality.update_many(ys, [run[i][1] for i in positions])

    def _update(self, y: Any, p: Any, features: dict[str, Any], key: str) -> None:
        """One labelled prediction of a multiclass model or a regressor into every
        segment it belongs to (a binary model's go by runs, `_score`)."""
        regression = self.task == "regression"
        baseline = self.baseline.predict(key) if regression else 0.0
        for name in self._segment_names(features):
            if name not in self.segments:
                self.segments[name] = self._quality()
            quality = self.segments[name]
            if isinstance(quality, ClassQuality):
                quality.update(y, p)
            else:
                assert isinstance(quality, RegressionQuality)
                quality.update(float(y), p, baseline)
        if regression:
            self.baseline.learn(key, float(y))

    def reports(self, trigger: Literal["events", "period"]) -> list[MetricsReport]:
        """One report per segment with the values as they are now."""
        if self.last_ts is None or self.period is None:
            return []
        start = self.period * self.config.period_seconds
        period_start = datetime.fromtimestamp(start, UTC)
        period_end = datetime.fromtimestamp(start + self.config.period_seconds, UTC)
        return [
            MetricsReport(
                schema_version=2 if isinstance(quality, ClassQuality) else 1,
                model=self.model,
                model_version=self.model_version,
                segment=name,
                trigger=trigger,
                ts=self.last_ts,
                period_start=period_start,
                period_end=period_end,
                metrics=quality.values(),
                confusion=(
                    quality.confusion_counts() if isinstance(quality, ClassQuality) else None
                ),
            )
            for name, quality in self.segments.items()
        ]

    def values(self) -> dict[str, dict[str, float | None]]:
        """Every segment's metrics as they are now."""
        return {name: quality.values() for name, quality in self.segments.items()}

    def headline(self) -> tuple[str, float] | None:
        """The overall rolling quality (logloss or MAE), once something was scored."""
        return self.segments["all"].headline() if self.n else None
