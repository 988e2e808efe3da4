"""Streamed metrics equal offline evaluation; the bounded AUC equals brute force while it
is exact, stays within its bound after, and its state does not grow with the stream."""

import math
import pickle
import random
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from sklearn.metrics import (
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from online_models import Learner
from online_models.models.datasets import DATASETS
from online_models.quality.evaluation import (
    OTHER,
    BoundedAUC,
    EvaluationConfig,
    Evaluator,
    MovingAverageBaseline,
    ranking,
)
from online_models.quality.offline import river_progressive, run_offline
from schemas import ClassPrediction, Prediction
from streams.cli.replay import dataset_events
from tests.builtin import MODELS

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def brute_force_auc(pairs: list[tuple[bool, float]]) -> float | None:
    """Every (positive, negative) pair: 1 if ordered right, 1/2 if tied."""
    pos = [p for y, p in pairs if y]
    neg = [p for y, p in pairs if not y]
    if not pos or not neg:
        return None
    score = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return score / (len(pos) * len(neg))


def exact_auc(pairs: list[tuple[bool, float]]) -> float:
    """sklearn's ROC AUC: the trapezoids of the ROC curve, i.e. ties counting 1/2."""
    return float(roc_auc_score([y for y, _ in pairs], [p for _, p in pairs]))


@pytest.mark.parametrize("seed", range(5))
def test_bounded_auc_is_exact_while_the_distinct_scores_fit_in_its_cells(seed: int) -> None:
    rng = random.Random(seed)
    # Scores rounded to 2 decimals make many ties (at most 101 distinct scores, fewer than
    # the 128 cells); positives are rare, as with clicks.
    pairs = [(rng.random() < 0.1, round(rng.random(), 2)) for _ in range(600)]
    auc = BoundedAUC(cells=128)
    for i, (y, p) in enumerate(pairs, 1):
        auc.update(y, p)
        if i % 50 == 0:
            assert auc.get() == pytest.approx(brute_force_auc(pairs[:i]), abs=1e-12)
            assert auc.bound() == 0.0
    assert auc.get() == pytest.approx(exact_auc(pairs), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_bounded_auc_stays_within_its_bound_on_crowded_scores(seed: int) -> None:
    """Adversarial for cells: 3,000 distinct scores crowded into [0.3, 0.3 + 1e-9], the
    positives a little higher, in 64 cells. The bound is the guarantee at every point."""
    rng = random.Random(seed)
    pairs = [
        (y, 0.3 + 1e-9 * min(1.0, rng.random() + 0.2 * y))
        for y in (rng.random() < 0.3 for _ in range(3000))
    ]
    auc = BoundedAUC(cells=64)
    for i, (y, p) in enumerate(pairs, 1):
        auc.update(y, p)
        assert len(auc.keys) <= 64
        if i % 500 == 0:
            value, bound = auc.get(), auc.bound()
            assert value is not None and bound is not None and 0 < bound < 0.5
            assert abs(value - exact_auc(pairs[:i])) <= bound + 1e-12


def test_bounded_auc_bound_is_attained_when_one_cell_holds_everything() -> None:
    # One cell: every positive is above every negative (exact AUC 1), all counted 1/2.
    auc = BoundedAUC(cells=1)
    for i in range(10):
        auc.update(i % 2 == 1, 0.25 + 0.001 * (i % 2) + 1e-6 * i)
    assert (auc.get(), auc.bound()) == (0.5, 0.5)  # |0.5 - 1| = 0.5 = the bound


def test_streamed_auc_on_the_click_stream_is_within_its_bound() -> None:
    """The `ctr` model on 40,000 synthetic clicks (40,000 distinct scores, more than the
    16,384 default cells): the streamed AUC is within the bound it reports of the exact
    AUC of the same predictions, and that bound is below 1e-4 (docs: Concepts > Model quality)."""
    events = list(dataset_events("clicks", limit=40_000, model=None, seed=42))
    learner = Learner(["ctr"], registry=MODELS)
    outputs = learner.process(events)
    pairs = [
        (bool(e.label), float(o.prediction))
        for e, o in zip(events, outputs, strict=True)
        if isinstance(o, Prediction) and o.prediction is not None
    ]
    assert len(pairs) == len(events)
    values = learner.models["ctr"].evaluator.values()["all"]
    auc, bound = values["auc"], values["auc_bound"]
    assert auc is not None and bound is not None
    assert 0 < bound < 1e-4
    error = abs(auc - exact_auc(pairs))
    assert error <= bound
    assert error < 1e-6  # measured 6.5e-7: the guarantee is the bound, the error far below


def test_evaluator_state_does_not_grow_with_the_stream() -> None:
    """Segments beyond the cap share one bucket; after 10,000 events every segment's
    window is full and its AUC has reached its cells (each has > 256 distinct scores), so
    30,000 more leave the pickled state (what a checkpoint holds) within the room of
    those cells. A restored copy goes on exactly as the original."""
    config = EvaluationConfig(
        window=200, segment_features=("device",), max_segments=3, auc_cells=256, every_events=10**9
    )
    ev = Evaluator("m", "m@1", task="binary", config=config)
    rng = random.Random(7)

    def feed(n: int, target: Evaluator) -> None:
        for _ in range(n):
            p = rng.random()
            target.observe(rng.random() < p, p, {"device": f"d{rng.randrange(5)}"}, "k", T0)

    sizes = []
    for _ in range(4):
        feed(10_000, ev)
        sizes.append(len(pickle.dumps(ev)))
    seen = ev.values_seen["device"]  # the first 3 of 5 devices; 2 share a bucket
    assert len(seen) == 3
    assert set(ev.segments) == {"all", f"device={OTHER}"} | {f"device={v}" for v in seen}
    # What varies is how many of its 256 cells (24 bytes each) each segment's AUC uses.
    assert max(sizes) - min(sizes) <= 5 * 256 * 24, sizes
    assert all(len(q.auc.keys) <= 256 for q in ev.segments.values())  # type: ignore[union-attr]
    copy = pickle.loads(pickle.dumps(ev))
    state = rng.getstate()
    feed(1000, ev)
    rng.setstate(state)
    feed(1000, copy)
    assert copy.values() == ev.values()


@pytest.mark.parametrize("seed", range(5))
def test_window_auc_equals_brute_force_with_ties(seed: int) -> None:
    rng = random.Random(seed)
    pairs = [(rng.random() < 0.3, round(rng.random(), 1)) for _ in range(300)]
    auc, _ = ranking([(p, y) for y, p in pairs])
    assert auc == pytest.approx(brute_force_auc(pairs), abs=1e-12)


def test_window_auc_in_reports_covers_only_the_window() -> None:
    rng = random.Random(3)
    pairs = [(rng.random() < 0.3, round(rng.random(), 2)) for _ in range(700)]
    ev = Evaluator("m", "m@1", task="binary", config=EvaluationConfig(window=250))
    for y, p in pairs:
        ev.observe(y, p, {}, "k", T0)
    values = ev.values()["all"]
    assert values["auc_window"] == pytest.approx(brute_force_auc(pairs[-250:]), abs=1e-12)
    # 700 events, at most 101 distinct scores: the cumulative AUC is still exact.
    assert values["auc"] == pytest.approx(brute_force_auc(pairs), abs=1e-12)
    assert values["auc_bound"] == 0.0


def test_auc_is_undefined_without_both_classes() -> None:
    auc = BoundedAUC(cells=8)
    auc.update(True, 0.3)
    assert auc.get() is None and auc.bound() is None


def test_lift_counts_the_top_fraction() -> None:
    # 20 scored events, 4 positives (rate 0.2); the top 5% is 1 event, a positive: lift 5.
    scored = [(1 - i / 20, i in (0, 5, 10, 15)) for i in range(20)]
    # Top 20% = 4 events (i = 0..3), one positive: rate 0.25 / 0.2 = 1.25.
    assert ranking(scored, 0.05, 0.20)[1] == [pytest.approx(5.0), pytest.approx(1.25)]
    assert ranking([(0.5, False)], 0.05) == (None, [None])


def test_lift_ties_keep_arrival_order() -> None:
    # All scores tie: the top 25% (1 of 4) is the first to arrive, a positive, so lift is
    # 1 / 0.5 = 2; had the tie been broken the other way it would be 0.
    assert ranking([(0.5, True), (0.5, False), (0.5, False), (0.5, True)], 0.25)[1] == [2.0]


def test_normalized_entropy_is_logloss_over_base_rate_entropy() -> None:
    ev = Evaluator("m", "m@1", task="binary")
    data = [(True, 0.8), (False, 0.3), (False, 0.1), (False, 0.4)]
    for y, p in data:
        ev.observe(y, p, {}, "k", T0)
    values = ev.values()["all"]
    logloss = -sum(math.log(p if y else 1 - p) for y, p in data) / 4
    base = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert values["normalized_entropy"] == pytest.approx(logloss / base, rel=1e-12)
    assert values["predicted_positives"] == pytest.approx(1.6)
    assert values["actual_positives"] == 1
    assert values["mean_predicted"] == pytest.approx(0.4)
    assert values["observed_rate"] == 0.25


def test_reports_come_every_n_events_and_at_period_ends() -> None:
    config = EvaluationConfig(every_events=3, period_seconds=10.0)
    ev = Evaluator("m", "m@1", task="regression", config=config)
    triggers = []
    for i in range(8):  # event times 0, 4, 8, 12, ... s: periods [0,10) and [10,20) and [20,30)
        for report in ev.observe(1.0, 1.0, {}, "k", T0 + timedelta(seconds=4 * i)):
            triggers.append((i, report.trigger, report.metrics["n"], report.metrics["period_n"]))
    assert triggers == [
        (2, "events", 3.0, 3.0),  # third event
        (3, "period", 3.0, 3.0),  # t=12 s closes [0, 10): reported before counting event 3
        (5, "period", 5.0, 2.0),  # t=20 s closes [10, 20) (events 3, 4) before counting 5
        (5, "events", 6.0, 1.0),  # then event 5 is the sixth, first of period [20, 30)
    ]


def test_segments_are_capped() -> None:
    config = EvaluationConfig(segment_features=("device",), max_segments=2)
    ev = Evaluator("m", "m@1", task="binary", config=config)
    for device in ["mobile", "desktop", "tablet", "tv", "mobile"]:
        ev.observe(True, 0.9, {"device": device}, "k", T0)
    values = ev.values()
    assert set(values) == {"all", "device=mobile", "device=desktop", f"device={OTHER}"}
    assert values[f"device={OTHER}"]["n"] == 2  # tablet and tv
    assert values["device=mobile"]["n"] == 2


def test_moving_average_baseline_forgets_old_keys() -> None:
    baseline = MovingAverageBaseline(window=2, max_keys=2)
    assert baseline.predict("a") == 0.0
    for key, y in [("a", 1.0), ("a", 3.0), ("a", 5.0), ("b", 10.0)]:
        baseline.learn(key, y)
    assert baseline.predict("a") == 4.0  # mean of the last two: 3 and 5
    baseline.learn("c", 0.0)  # a third key: "a" was least recently seen
    assert "a" not in baseline.history
    assert baseline.predict("a") == pytest.approx(19 / 5)  # new key: the global mean


@pytest.mark.parametrize(
    ("dataset", "limit"),
    [
        ("phishing", None),
        ("bananas", None),
        ("trump", None),
        ("clicks", 5000),
        ("offers", 6000),
        ("segments", None),
    ],
)
def test_streamed_metrics_equal_river_progressive_val_score(
    dataset: str, limit: int | None
) -> None:
    """The stream's learner and River's progressive_val_score, same factory, same events."""
    events = list(dataset_events(dataset, limit=limit, model=None, seed=42))
    model = DATASETS[dataset].model
    streamed = run_offline(events, MODELS[model]).final["all"]
    reference = river_progressive(events, MODELS[model])
    assert reference  # River has metrics for every task
    for name, value in reference.items():
        assert streamed[name] == pytest.approx(value, abs=1e-9), name


def test_offline_reports_are_deterministic_and_batch_size_free() -> None:
    events = list(dataset_events("bananas", limit=None, model=None, seed=42))
    config = EvaluationConfig(every_events=500, segment_features=("1",), max_segments=3)
    a = run_offline(events, MODELS["logreg"], config=config, batch_size=500).reports
    b = run_offline(events, MODELS["logreg"], config=config, batch_size=37).reports
    # 5300 // 500 = 10 count triggers (5,300 s of event time stay in one day: no period
    # trigger), each reporting 5 segments: all, three values of feature "1", __other__.
    assert len(a) == 10 * 5
    assert [r.model_dump_json() for r in a] == [r.model_dump_json() for r in b]


def known(metrics: dict[str, float | None], name: str) -> float:
    """A metric that has a value (None means the run never computed it)."""
    value = metrics[name]
    assert value is not None, name
    return value


def test_clicks_model_beats_the_per_offer_moving_average_after_warm_up() -> None:
    # 120 days of 300 offers; the window metrics cover the last 10,000 events (~33 days),
    # well after the first month of warm-up.
    events = list(dataset_events("offers", limit=300 * 120, model=None, seed=42))
    final = run_offline(events, MODELS["clicks"]).final["all"]
    assert known(final, "mae_window") < 0.8 * known(final, "baseline_mae_window")
    # Calibration of totals: predicted clicks within 10% of actual clicks over the window run.
    assert abs(known(final, "predicted_total") / known(final, "actual_total") - 1) < 0.1


def test_multiclass_per_class_figures_equal_sklearns_on_the_same_predictions() -> None:
    """On ImageSegments (7 classes): per-class precision and recall, the macro figures and
    the confusion matrix are sklearn's over exactly the (label, most probable class) pairs
    River's progressive_val_score scores: every labelled event but the first, when the
    model knows no class yet."""
    events = list(dataset_events("segments", limit=None, model=None, seed=42))
    learner = Learner(["softmax"], registry=MODELS)
    outputs = learner.process(events)
    scored = [
        (e.label, o.prediction)
        for e, o in zip(events, outputs, strict=True)
        if isinstance(o, ClassPrediction) and o.probabilities
    ]
    assert len(scored) == len(events) - 1
    final = learner.models["softmax"].evaluator.values()["all"]
    y_true, y_pred = [y for y, _ in scored], [p for _, p in scored]
    classes = sorted(cast(set[str], set(y_true) | set(y_pred)))  # ImageSegments' classes: text
    precision, recall, _, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    for c, p, r in zip(classes, precision, recall, strict=True):
        assert final[f"precision[{c}]"] == pytest.approx(p, abs=1e-12), c
        assert final[f"recall[{c}]"] == pytest.approx(r, abs=1e-12), c
    assert final["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"), abs=1e-12)
    assert final["micro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="micro"), abs=1e-12)
    assert final["classes"] == 7 and final["n"] == len(scored)
    report = Evaluator("softmax", "v", "multiclass").reports("events")
    assert report == []  # nothing scored yet: nothing to report
    # The second report (every 1,000 scored events) covers the first 2,000 scored pairs.
    (last,) = [r for r in run_offline(events, MODELS["softmax"]).reports if r.metrics["n"] == 2000]
    assert last.schema_version == 2 and last.confusion is not None
    matrix = confusion_matrix(y_true[:2000], y_pred[:2000], labels=classes)
    assert {
        a: {p: int(matrix[i][j]) for j, p in enumerate(classes) if matrix[i][j]}
        for i, a in enumerate(classes)
    } == last.confusion


def test_binary_and_regression_reports_stay_version_1() -> None:
    events = list(dataset_events("phishing", limit=None, model=None, seed=42))
    report = run_offline(events, MODELS["logreg"]).reports[-1]
    assert report.schema_version == 1 and report.confusion is None
    assert "confusion" not in report.model_dump_json()
