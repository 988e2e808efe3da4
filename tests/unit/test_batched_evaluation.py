"""Scoring a batch at once (`Evaluator.observe_many`, `BinaryQuality.update_many`,
`BoundedAUC.update_many`, `DriftMonitor.observe_many`) leaves the same state and makes the
same reports, bit for bit, as scoring its events one by one: the stream's numbers must not
depend on how Kafka happened to batch them."""

import pickle
import random
from array import array
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from river import metrics, utils

from online_models.quality.drift import DriftConfig, DriftMonitor, Watched
from online_models.quality.evaluation import (
    BinaryQuality,
    BoundedAUC,
    EvaluationConfig,
    Evaluator,
    Scored,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def batches(n: int, rng: random.Random) -> list[int]:
    """Random batch sizes adding up to n, from 1 to a few hundred."""
    sizes = []
    while n > 0:
        size = min(n, rng.choice([1, 2, 7, 31, 32, 33, 250, 600]))
        sizes.append(size)
        n -= size
    return sizes


def scores(n: int, rng: random.Random) -> list[tuple[bool, float]]:
    """Labels with scores that repeat, reach 0 and 1 and crowd together."""
    pool = [0.0, 1.0, 0.5, -0.0, 1e-300, 1 - 1e-16]
    out = []
    for _ in range(n):
        y = rng.random() < 0.3
        kind = rng.random()
        if kind < 0.05:
            p = rng.choice(pool)
        elif kind < 0.3:
            p = round(rng.random(), 2)  # ties
        else:
            p = min(1.0, rng.random() * (1.3 if y else 1.0))
        out.append((y, p))
    return out


@pytest.mark.parametrize("cells", [4, 64, 16_384])
@pytest.mark.parametrize("seed", [1, 2])
def test_auc_cells_are_the_same_whatever_the_batches(cells: int, seed: int) -> None:
    rng = random.Random(seed)
    pairs = scores(5_000, rng)
    one, many = BoundedAUC(cells), BoundedAUC(cells)
    for y, p in pairs:
        one.update(y, p)
    start = 0
    for size in batches(len(pairs), rng):
        chunk = pairs[start : start + size]
        many.update_many([y for y, _ in chunk], [p for _, p in chunk])
        start += size
    assert (many.shift, many.keys, many.positives, many.negatives) == (
        one.shift,
        one.keys,
        one.positives,
        one.negatives,
    )
    assert (many.get(), many.bound()) == (one.get(), one.bound())


def test_binary_quality_is_the_same_whatever_the_batches() -> None:
    rng = random.Random(3)
    pairs = scores(25_000, rng)
    one, many = BinaryQuality(1_000, 0.5, 256), BinaryQuality(1_000, 0.5, 256)
    start = 0
    for size in batches(len(pairs), rng):
        chunk = pairs[start : start + size]
        for y, p in chunk:
            one.update(y, p)
        many.update_many([y for y, _ in chunk], [p for _, p in chunk])
        start += size
        assert many.values() == one.values()
    assert pickle.dumps(many) == pickle.dumps(one)


def test_window_logloss_equals_rivers_rolling_logloss() -> None:
    rng = random.Random(4)
    quality = BinaryQuality(500, 0.5, 64)
    rolling: Any = utils.Rolling(metrics.LogLoss, window_size=500)
    assert quality.window_logloss() == rolling.get() == 0.0
    for y, p in scores(3_000, rng):
        quality.update(y, p)
        rolling.update(y, p)
    assert quality.window_logloss() == pytest.approx(rolling.get(), rel=1e-12)


@pytest.mark.parametrize("task", ["binary", "regression", "multiclass"])
def test_evaluator_reports_are_the_same_whatever_the_batches(task: str) -> None:
    rng = random.Random(5)
    config = EvaluationConfig(
        window=300,
        every_events=97,
        period_seconds=3_600.0,
        segment_features=("device",),
        max_segments=3,
        auc_cells=128,
    )
    rows: list[Scored] = []
    for i, (y, p) in enumerate(scores(6_000, rng)):
        device = rng.choice(["mobile", "desktop", "tablet", "tv", "car"])
        ts = T0 + timedelta(seconds=3 * i - (120 if i % 50 == 7 else 0))  # some late
        if task == "regression":
            row: Scored = (10 * p, 8 * p + 1, {"device": device}, f"k{i % 13}", ts)
        elif task == "multiclass":
            label = rng.choice("abc")
            row = (label, {"a": p / 2, "b": 1 - p, "c": p / 2}, {"device": device}, "k", ts)
        else:
            row = (y, p, {"device": device}, "k", ts)
        rows.append(row)
    one, many = Evaluator("m", "v1", task, config), Evaluator("m", "v1", task, config)
    expected = []
    for i, (y, p, features, key, ts) in enumerate(rows):
        expected += [(i, r.model_dump_json()) for r in one.observe(y, p, features, key, ts)]
    made = []
    start = 0
    for size in batches(len(rows), rng):
        made += [
            (start + at, r.model_dump_json())
            for at, r in many.observe_many(rows[start : start + size])
        ]
        start += size
    assert {r for _, r in expected if '"trigger":"period"' in r}  # the stream crossed periods
    assert made == expected
    assert many.values() == one.values()
    assert list(many.segments) == list(one.segments)


def test_auc_sums_in_numpy_equal_them_in_python_integers(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(6)
    auc = BoundedAUC(64)
    for y, p in scores(3_000, rng):
        auc.update(y, p)
    in_numpy = (auc.get(), auc.bound())
    monkeypatch.setattr("online_models.quality.evaluation._INT64_SAFE", 0)
    assert (auc.get(), auc.bound()) == in_numpy
    assert auc.shift and in_numpy[1]  # (coarsened: the bound is not 0)


@pytest.mark.parametrize("task", ["binary", "regression", "multiclass"])
def test_drift_reports_are_the_same_whatever_the_batches(task: str) -> None:
    rng = random.Random(7)
    config = DriftConfig(reference=300, window=250, ph_threshold=5.0, adwin_delta=0.05)
    rows: list[Watched] = []
    for i, (y, p) in enumerate(scores(4_000, rng)):
        shifted = i > 2_000  # the stream changes half-way: detectors fire
        x = {"device": rng.choice("abc" if not shifted else "cde"), "price": p + shifted}
        ts = T0 + timedelta(seconds=i)
        if task == "regression":
            rows.append((x, 10 * p + 5 * shifted, 8 * p + 1, ts, i))
        elif task == "multiclass":
            label = rng.choice("ab" if not shifted else "bc")
            rows.append((x, label, {"a": p / 2, "b": 1 - p, "c": p / 2}, ts, i))
        else:
            rows.append((x, y != shifted, p, ts, i))
    one = DriftMonitor("m", "v1", task, config)
    many = DriftMonitor("m", "v1", task, config)
    expected = [(i, r) for i, row in enumerate(rows) for r in one.observe(*row)]
    made = []
    start = 0
    for size in batches(len(rows), rng):
        made += [(start + at, r) for at, r in many.observe_many(rows[start : start + size])]
        start += size
    assert any(r.trigger == "alarm" for _, r in expected)
    assert any(r.trigger == "window" and r.signal.startswith("feature:") for _, r in expected)
    assert [(i, r.model_dump_json()) for i, r in made] == [
        (i, r.model_dump_json()) for i, r in expected
    ]
    assert pickle.dumps(many) == pickle.dumps(one)


def coarsened(
    keys: list[int], positives: list[int], negatives: list[int], cells: int
) -> tuple[int, list[int], list[int], list[int]]:
    """The rule `BoundedAUC._coarsen` implements, one cell at a time: drop the fewest
    bits that leave at most `cells` cells (neighbours whose keys then agree merge)."""
    differ = sorted((a ^ b).bit_length() for a, b in zip(keys[1:], keys[:-1], strict=True))
    drop = differ[len(differ) - cells]
    out: tuple[list[int], list[int], list[int]] = ([], [], [])
    for key, p, n in zip(keys, positives, negatives, strict=True):
        if out[0] and out[0][-1] == key >> drop:
            out[1][-1] += p
            out[2][-1] += n
        else:
            out[0].append(key >> drop)
            out[1].append(p)
            out[2].append(n)
    return drop, *out


@pytest.mark.parametrize("cells", [1, 2, 3, 17, 256])
def test_auc_cells_coarsen_as_the_rule_says(cells: int) -> None:
    rng = random.Random(cells)
    auc = BoundedAUC(cells)
    for y, p in scores(4_000, rng):
        before = (list(auc.keys), list(auc.positives), list(auc.negatives), auc.shift)
        auc.update(y, p)
        if auc.shift != before[3]:  # it coarsened: from the cells before plus the new one
            one = BoundedAUC(10**6)
            one.keys, one.positives, one.negatives, one.shift = (
                array("q", before[0]),
                array("q", before[1]),
                array("q", before[2]),
                before[3],
            )
            one.update(y, p)  # (no coarsening: room for a million cells)
            drop, keys, positives, negatives = coarsened(
                list(one.keys), list(one.positives), list(one.negatives), cells
            )
            assert (auc.shift - before[3], list(auc.keys)) == (drop, keys)
            assert (list(auc.positives), list(auc.negatives)) == (positives, negatives)


def test_a_quality_pickled_with_a_deque_window_reads_as_a_score_window() -> None:
    """Checkpoints before `ScoreWindow` held the window as a deque of (score, label) and a
    River Rolling log loss beside it."""
    rng = random.Random(8)
    pairs = scores(700, rng)
    quality = BinaryQuality(500, 0.5, 64)
    for y, p in pairs:
        quality.update(y, p)
    state = dict(quality.__dict__)
    state["recent"] = deque(((p, y) for y, p in pairs), maxlen=500)
    state["logloss_window"] = utils.Rolling(metrics.LogLoss, window_size=500)
    old = BinaryQuality.__new__(BinaryQuality)
    old.__setstate__(state)
    assert not hasattr(old, "logloss_window")
    assert old.values() == quality.values()
    assert pickle.loads(pickle.dumps(old)).values() == quality.values()
