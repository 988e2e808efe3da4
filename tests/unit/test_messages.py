"""Messages a user acts on say what is true: where a schema is, why a model failed, where
a partition starts, what a CLI option compares with."""

import json
import math
import re
from collections.abc import Hashable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from river import base, compose, linear_model, tree

from online_models import Learner, Rejection
from online_models.models.registry import ModelSpec
from schemas import ErrorType, InputEvent
from schemas.codec import InvalidMessage, decode
from streams.cli.main import main
from tests.builtin import MODELS

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def to_features(x: dict[str, Any]) -> dict[str, Any]:
    """A user's feature function that fails on a string amount."""
    return {"log_amount": math.log(x["amount"])}


def fraud_tree() -> base.Estimator:
    return compose.FuncTransformer(to_features) | tree.HoeffdingTreeClassifier()


class Diverged(base.Regressor):
    """A regressor without a learning rate whose numbers blew up."""

    def learn_one(self, x: dict[Hashable, Any], y: base.typing.RegTarget) -> None:
        pass

    def predict_one(self, x: dict[Hashable, Any]) -> base.typing.RegTarget:
        return math.inf


def diverged_linear() -> base.Estimator:
    model = linear_model.LinearRegression()
    model.predict_one = lambda x: math.nan  # type: ignore[method-assign]
    return model


def reason_of(spec: ModelSpec, **features: Any) -> str:
    learner = Learner([spec.name], registry={spec.name: spec})
    event = InputEvent(
        event_id="e1",
        ts=T0,
        model=spec.name,
        key="k",
        features=features,
        label=1.0 if spec.task == "regression" else True,
    )
    out = learner.process([event])[0]
    assert isinstance(out, Rejection) and out.error_type is ErrorType.LEARNING_ERROR
    return out.reason


def test_an_exception_of_the_feature_function_is_told_as_one_not_as_divergence() -> None:
    # The case: a Hoeffding tree (no learning rate) behind a FuncTransformer whose
    # function gets a string. The reason names the exception, the user's line and what
    # to fix; nothing about diverging or learning rates.
    reason = reason_of(ModelSpec("fraud", "binary", fraud_tree), amount="12")
    line = to_features.__code__.co_firstlineno + 2
    assert reason.startswith("model fraud@")
    assert "'s code raised TypeError('must be real number, not str') at " in reason
    assert f"test_messages.py:{line} (in to_features) while predicting" in reason
    assert reason.endswith("fix the feature function, or the features sent")
    assert "diverge" not in reason and "learning rate" not in reason


def test_divergence_names_a_learning_rate_only_when_the_model_has_one() -> None:
    plain = reason_of(ModelSpec("plain", "regression", Diverged), x=1.0)
    assert "predicted inf: it has diverged" in plain and "learning rate" not in plain
    linear = reason_of(ModelSpec("linear", "regression", diverged_linear), x=1.0)
    assert "predicted nan: it has diverged; lower its learning rate" in linear


def test_an_invalid_event_points_to_a_schema_file_an_installed_wheel_can_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A wheel user has no checkout, hence no schemas/json/: the reason names the file and
    # the command that writes it, and that command, run anywhere, does write it.
    with pytest.raises(InvalidMessage) as caught:
        decode(InputEvent, b'{"event_id": "e1", "ts": 0, "model": "m"}', max_bytes=1000)
    reason = caught.value.reason
    assert caught.value.error_type is ErrorType.INVALID_EVENT
    assert "schemas/json/" not in reason
    found = re.search(r"JSON Schema (\S+) \(`riverrun (schemas export) --dir DIR`", reason)
    assert found is not None, reason
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(main, ["schemas", "export", "--dir", "out"])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "out" / found.group(1)).is_file()


def test_backfill_help_and_docs_say_record_timestamps_as_the_code_seeks() -> None:
    # The partition is sought with offsets_for_times: Kafka record timestamps, which
    # `riverrun replay` and most producers leave at the time of producing.
    shown = CliRunner().invoke(main, ["models", "deploy", "--help"], terminal_width=400)
    help_text = " ".join(shown.output.split())
    assert "record timestamps" in help_text and "event time" not in help_text
    guide = Path(__file__).resolve().parents[2] / "docs" / "guides" / "managing-models.md"
    deploy = next(line for line in guide.read_text().splitlines() if "--backfill-from`:" in line)
    assert "record timestamps" in deploy and "event time" not in deploy


def test_a_fresh_partition_starts_at_the_beginning_and_a_resume_says_what_is_replayed() -> None:
    from aiokafka import TopicPartition

    from streams.runtime.partitioned import where_it_starts

    tp = TopicPartition("events", 3)
    assert where_it_starts(tp, 0, None, 0) == (
        "events[3]: starting at the beginning (nothing committed yet)"
    )
    # Retention deleted offsets 0-119: nothing committed, the log starts later.
    assert where_it_starts(tp, 120, None, 0) == (
        "events[3]: starting at offset 120, the first offset still in the log (nothing "
        "committed yet)"
    )
    resumed = where_it_starts(tp, 500, 800, 500)
    assert "None" not in resumed and "offset 500" in resumed and "offset 800" in resumed
    assert "events 500 to 799" in resumed and "not sent again" in resumed


def test_a_classifier_that_knows_no_class_predicts_null_not_a_confident_no() -> None:
    # A Hoeffding tree's predict_proba_one is {} before its first label: no prediction,
    # published as null (a valid v1 message, as the /v1 answer), then numbers once it knows.
    import jsonschema

    from online_models.learning.request_time import predict_now
    from schemas import Prediction
    from schemas.serving import RequestPrediction
    from streams.http.server import answer_json

    learner = Learner(["ctr_tree"], registry={"ctr_tree": MODELS["ctr_tree"]})
    asked = answer_json(predict_now(learner, "ctr_tree", "k", {"x": 1.0}), "k", 0, 0)
    assert RequestPrediction.model_validate(asked).prediction is None
    first, second = learner.process(
        [
            InputEvent(
                event_id=f"e{i}", ts=T0, model="ctr_tree", key="k", features={"x": 1.0}, label=True
            )
            for i in range(2)
        ]
    )
    assert isinstance(first, Prediction) and first.model_updates == 0
    assert first.prediction is None and '"prediction":null' in first.model_dump_json()
    schema_dir = Path(__file__).resolve().parents[2] / "schemas" / "json"
    schema = (schema_dir / "prediction.v1.json").read_text()
    jsonschema.validate(first.model_dump(mode="json"), json.loads(schema))
    assert isinstance(second, Prediction) and second.prediction == 1.0  # it learnt "true"


def test_evaluate_of_a_tree_equals_river_on_every_metric_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # River's progressive_val_score skips empty probabilities (a tree's first event); the
    # stream scored them as 0.0, so its logloss and accuracy differed from River's in the
    # 4th to 6th decimal (one event in n). Same quantity now: equal to 1e-9, and the
    # per-segment lines no longer carry River's whole-stream figures.
    monkeypatch.setenv("RIVERRUN_SEGMENT_FEATURES", '["device"]')
    done = CliRunner().invoke(
        main, ["evaluate", "--dataset", "clicks", "--model", "ctr_tree", "--limit", "1500"]
    )
    assert done.exit_code == 0, done.output
    pairs = re.findall(r"^  (\w+) +([\d.]+)   river ([\d.]+)$", done.output, re.M)
    assert {name for name, _, _ in pairs} == {"logloss", "accuracy", "precision", "recall", "f1"}
    for name, ours, river in pairs:
        assert ours == river, name
    assert "equal River's progressive_val_score to 1e-9 (1499 labelled events scored" in (
        done.output
    )


def test_a_drift_report_shows_the_quantities_its_detector_compares() -> None:
    # The report: "statistic": 0.46, "threshold": 50.0, "drift": true (Page-
    # Hinkley's window mean beside its lambda). Now: statistic > threshold exactly when
    # drift is true, for every detector that has a threshold; ADWIN gives its delta.
    import random

    from river import drift as river_drift

    from online_models.quality.drift import DriftConfig, page_hinkley_statistic
    from tests.unit.test_drift import agrawal_events

    learner = Learner(["logreg"], drift=DriftConfig(), registry=MODELS)
    events = agrawal_events(1, n=8_000)
    learner.process(events, offsets=range(len(events)))
    reports = learner.drain_drift()
    assert any(r.detector == "page_hinkley" and r.trigger == "alarm" for r in reports)
    for r in reports:
        assert r.schema_version == 2
        if r.detector == "adwin":
            assert r.statistic is None and r.threshold is None and r.delta == 0.002
            assert r.mean is not None
            continue
        assert r.statistic is not None and r.threshold is not None, r
        assert r.drift == (r.statistic > r.threshold), r
        assert (r.mean is not None) == (r.detector == "page_hinkley")
    # The one private read (River has no accessor): an alarm exactly when the statistic
    # is above the threshold, on every update River tests.
    rng = random.Random(7)
    ph = river_drift.PageHinkley(mode="up", threshold=5.0)
    fired = seen = 0
    for i in range(3_000):
        seen = 1 if ph.drift_detected else seen + 1  # it restarts after an alarm
        ph.update(rng.gauss(0.0, 1.0) + (2.0 if (i // 500) % 2 else 0.0))
        fired += ph.drift_detected
        if seen >= ph.min_instances:
            assert ph.drift_detected == (page_hinkley_statistic(ph) > ph.threshold)
        else:
            assert not ph.drift_detected
    assert fired >= 2


def test_version_1_drift_reports_are_still_read_and_version_2_fails_their_schema() -> None:
    import jsonschema

    from schemas.drift import DriftReport

    old = {
        "schema_version": 1,
        "model": "m",
        "model_version": "m@1",
        "partition": 0,
        "detector": "page_hinkley",
        "signal": "loss",
        "trigger": "alarm",
        "statistic": 0.46,
        "threshold": 50.0,
        "drift": True,
        "window_start": "2026-01-01T00:00:00Z",
        "window_end": "2026-01-01T00:00:00Z",
        "window_start_offset": 0,
        "window_end_offset": 9,
    }
    schema_dir = Path(__file__).resolve().parents[2] / "schemas" / "json"
    frozen = json.loads((schema_dir / "drift_report.v1.json").read_text())
    jsonschema.validate(old, frozen)
    read = DriftReport.model_validate_json(json.dumps(old))
    assert json.loads(read.model_dump_json()) == old  # byte for byte, no new fields
    new = read.model_copy(update={"schema_version": 2, "statistic": 51.0, "mean": 0.46})
    assert not jsonschema.Draft202012Validator(frozen).is_valid(json.loads(new.model_dump_json()))
