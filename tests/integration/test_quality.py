"""Metrics streamed through the real broker equal the offline evaluation of the same events."""

import urllib.request

import pytest

from online_models.quality.offline import river_progressive, run_offline
from schemas import ClassPrediction, MetricsReport, decode_prediction
from schemas.drift import DriftReport
from streams.cli.replay import dataset_events, encode
from tests.builtin import MODELS


def test_streamed_metrics_reports_equal_the_offline_run(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(metrics_every_events=250, segment_features=["device"])
    phishing = list(dataset_events("phishing", limit=None, model=None, seed=42))
    offers = list(dataset_events("offers", limit=300 * 10, model=None, seed=42))
    config = env.settings.evaluation()
    expected = {
        "logreg": run_offline(phishing, MODELS["logreg"], config=config).reports,
        "clicks": run_offline(offers, MODELS["clicks"], config=config).reports,
    }
    # Phishing: 1250 / 250 = 5 count triggers; segments "all" and "device=__missing__"
    # (its events have no device feature).
    assert len(expected["logreg"]) == 5 * 2
    # Offers: 3000 / 250 = 12 count triggers and 9 day ends, 4 segments (all + 3 devices).
    assert len(expected["clicks"]) == (12 + 9) * 4

    env.start_worker()
    env.produce([encode(e) for e in phishing + offers])
    total = sum(len(r) for r in expected.values())
    messages = env.read(env.settings.metrics_topic, total, timeout=120)
    streamed = [MetricsReport.model_validate_json(m.value) for m in messages]

    assert len(messages) == total
    # One partition: one replica of each model, so the stream's reports are the offline
    # run's, with the partition named.
    assert {r.partition for r in streamed} == {0}
    for model, reports in expected.items():
        # Byte for byte: same triggers, same event times, same metric values.
        assert [r.model_dump_json(exclude={"partition"}) for r in streamed if r.model == model] == [
            r.model_dump_json(exclude={"partition"}) for r in reports
        ]
    # The River metrics in the last Phishing report (after all 1250 events) equal River's
    # own progressive_val_score on the same events.
    last = expected["logreg"][-1].metrics
    for name, value in river_progressive(phishing, MODELS["logreg"]).items():
        assert abs(last[name] - value) <= 1e-9, name  # type: ignore[operator]

    # Offers' 3,000 labelled events: a reference window of 1,000, then two windows of
    # 1,000, each with one report per detector signal and per feature.
    drift = [
        DriftReport.model_validate_json(m.value) for m in env.read(env.settings.drift_topic, 10)
    ]
    assert {r.model for r in drift if r.trigger == "window"} == {"clicks"}
    assert {"adwin", "page_hinkley", "psi", "jensen_shannon"} <= {r.detector for r in drift}

    text = (
        urllib.request.urlopen(f"http://127.0.0.1:{env.settings.metrics_port}/metrics", timeout=5)
        .read()
        .decode()
    )
    gauge = 'riverrun_model_metric{metric="auc",model="logreg",partition="0",segment="all"}'
    line = next(line for line in text.splitlines() if line.startswith(gauge))
    assert float(line.split(" ")[1]) == last["auc"]


def test_multiclass_metrics_through_the_broker_equal_the_offline_run_and_river(make_env) -> None:  # type: ignore[no-untyped-def]
    """ImageSegments (7 classes) through a worker: every report on the topic equals the
    offline run's (the same confusion matrix, metrics to 1e-9), and the last one River's
    progressive_val_score; predictions are version 2, with every class's probability."""
    env = make_env(models=["softmax"], metrics_every_events=500)
    segments = list(dataset_events("segments", limit=None, model=None, seed=42))
    expected = run_offline(segments, MODELS["softmax"], config=env.settings.evaluation()).reports
    # 2,309 scored events (River does not score the first: no class known yet) -> 4 reports.
    assert len(expected) == 4

    env.start_worker()
    env.produce([encode(e) for e in segments])
    messages = env.read(env.settings.metrics_topic, len(expected), timeout=120)
    streamed = [MetricsReport.model_validate_json(m.value) for m in messages]
    assert len(streamed) == len(expected)
    for got, want in zip(streamed, expected, strict=True):
        assert (got.schema_version, got.ts, got.confusion) == (2, want.ts, want.confusion)
        assert set(got.metrics) == set(want.metrics)
        for name, value in want.metrics.items():
            assert got.metrics[name] == pytest.approx(value, abs=1e-9), name
    # The last report counts 2,000 scored events: the first 2,001.
    assert expected[-1].metrics["n"] == 2000
    for name, value in river_progressive(segments[:2001], MODELS["softmax"]).items():
        assert streamed[-1].metrics[name] == pytest.approx(value, abs=1e-9), name

    predictions = [
        decode_prediction(m.value)
        for m in env.read(env.settings.predictions_topic, len(segments), timeout=60)
    ]
    assert all(isinstance(p, ClassPrediction) for p in predictions)
    assert {p.prediction for p in predictions[1:]} <= {e.label for e in segments}
    assert len(predictions[-1].probabilities) == 7  # type: ignore[union-attr]
