"""Global models without a broker: scopes, a follower's predictions from snapshots, and
snapshots that refuse tampering."""

import asyncio
import struct
from datetime import UTC, datetime

import pytest
from river import linear_model

import riverrun
from online_models import Learner, ModelError
from online_models.learning.checkpoint import CheckpointRefused, Refusal, gather, parse_chunk
from online_models.learning.snapshot import decode_snapshot, encode_snapshot
from online_models.quality.evaluation import EvaluationConfig
from schemas import InputEvent
from schemas.checkpoint import MAGIC
from streams.settings import Settings
from tests.builtin import MODELS


def event(i: int, label: bool | None = True) -> InputEvent:
    return InputEvent(
        event_id=f"e{i}",
        ts=datetime(2026, 1, 1, tzinfo=UTC),
        model="logreg",
        key=f"k{i % 3}",
        features={"device": "mobile" if i % 2 else "desktop", "price": float(i % 7)},
        label=label,
    )


def test_a_model_is_global_unless_registered_or_set_otherwise() -> None:
    app = riverrun.App()

    @app.model("ctr", task="binary")
    def ctr() -> linear_model.LogisticRegression:
        return linear_model.LogisticRegression()

    @app.model("shard", task="binary", scope="partition")
    def shard() -> linear_model.LogisticRegression:
        return linear_model.LogisticRegression()

    assert app.models["ctr"].scope == "global" and app.models["shard"].scope == "partition"
    assert Settings().global_models(app.models) == ["ctr"]
    assert Settings(model_scopes={"*": "partition"}).global_models(app.models) == []
    flipped = Settings(model_scopes={"*": "partition", "shard": "global"})
    assert flipped.global_models(app.models) == ["shard"]
    # The scope is not part of the version: checkpoints and plans stay the model's.
    assert app.models["ctr"].scoped("partition").version == app.models["ctr"].version


def test_versions_of_one_model_share_one_scope() -> None:
    app = riverrun.App()

    @app.model("ctr", task="binary", version="1")
    def one() -> linear_model.LogisticRegression:
        return linear_model.LogisticRegression()

    def two() -> linear_model.LogisticRegression:
        return linear_model.LogisticRegression()

    with pytest.raises(ModelError, match="scope 'global' and 'partition'"):
        app.model("ctr", task="binary", version="2", scope="partition")(two)
    with pytest.raises(ModelError, match="choose one of global, partition"):
        app.model("other", task="binary", scope="everywhere")(two)  # type: ignore[arg-type]


def test_a_follower_predicts_with_the_snapshot_learns_nothing_and_queues_its_examples() -> None:
    learner = Learner(["logreg"], registry=MODELS)  # the learner of the global model
    follower = Learner(
        ["logreg"],
        registry=MODELS,
        followers=["logreg"],
        evaluation=EvaluationConfig(every_events=50),  # (reports would be due 4 times)
    )
    first = learner.process([event(i) for i in range(200)])
    served = follower.process([event(i) for i in range(200)], offsets=list(range(200)))
    assert {o.model_updates for o in served} == {0}  # type: ignore[union-attr]
    assert not any(o.learned for o in served)  # type: ignore[union-attr]
    assert follower.models["logreg"].updates == 0
    assert follower.drain_examples() == [(i, "logreg") for i in range(200)]
    assert follower.drain_reports() == []  # (served quality: a gauge, not reports)
    assert follower.quality()["logreg"][0] == "logloss"

    records = encode_snapshot(
        learner.models["logreg"], "logreg", group_id="g", key=b"k", learnt_until=200, sequence=0
    )
    [checkpoint], _ = gather(value for _, value in records)
    snapshot = decode_snapshot(checkpoint, MODELS["logreg"], group_id="g", key=b"k")
    assert follower.install("logreg", snapshot) and not follower.install("logreg", snapshot)
    after = follower.process([event(200, label=None)])
    again = learner.process([event(200, label=None)])
    assert after[0].prediction == again[0].prediction  # type: ignore[union-attr]
    assert after[0].model_updates == 200  # type: ignore[union-attr]
    assert follower.drain_examples() == []  # unlabelled: not an example
    assert first  # (the learner learnt its 200)


def test_a_snapshot_signed_with_another_key_or_altered_is_refused() -> None:
    served = Learner(["logreg"], registry=MODELS).models["logreg"]
    records = encode_snapshot(served, "logreg", group_id="g", key=b"k", learnt_until=1, sequence=0)
    [checkpoint], _ = gather(value for _, value in records)
    with pytest.raises(CheckpointRefused) as refused:
        decode_snapshot(checkpoint, MODELS["logreg"], group_id="g", key=b"other")
    assert refused.value.reason is Refusal.UNAUTHENTICATED
    with pytest.raises(CheckpointRefused) as foreign:
        decode_snapshot(checkpoint, MODELS["logreg"], group_id="another", key=b"k")
    assert foreign.value.reason is Refusal.FOREIGN
    with pytest.raises(CheckpointRefused) as incompatible:
        decode_snapshot(checkpoint, MODELS["clicks"], group_id="g", key=b"k")
    assert incompatible.value.reason is Refusal.INCOMPATIBLE


def test_a_worker_installs_only_newer_complete_authentic_snapshots() -> None:
    """The snapshots topic as a worker reads it: chunks of a snapshot assembled, a newer
    one installed, an older or tampered one not (the tampered one counted)."""
    from streams.runtime.metrics import WorkerMetrics
    from streams.runtime.snapshots import SnapshotFollower

    learner = Learner(["logreg"], registry=MODELS)
    learner.process([event(i) for i in range(50)])
    served = learner.models["logreg"]
    metrics = WorkerMetrics()
    settings = Settings(group_id="g")

    def snapshot(sequence: int, chunk_bytes: int = 512) -> list[bytes]:
        records = encode_snapshot(
            served,
            "logreg",
            group_id="g",
            key=b"k",
            learnt_until=served.updates,
            sequence=sequence,
            chunk_bytes=chunk_bytes,
        )
        return [value for _, value in records]

    async def follow() -> None:
        follower = SnapshotFollower(settings, metrics, MODELS, ["logreg"], b"k")
        first = snapshot(0)
        assert len(first) > 1  # chunked
        for value in first[:-1]:
            await follower._take(value)
        assert follower.snapshot("logreg") is None  # not before its last chunk
        await follower._take(first[-1])
        held = follower.snapshot("logreg")
        assert held is not None and held.updates == 50
        await follower._take(snapshot(1, chunk_bytes=1 << 20)[0])  # the same updates
        assert follower.snapshot("logreg") is held
        learner.process([event(i) for i in range(50, 60)])
        header, payload = parse_chunk(snapshot(2, chunk_bytes=1 << 20)[0])
        forged = header.model_copy(update={"updates": 10_000}).model_dump_json().encode()
        await follower._take(MAGIC + struct.pack(">I", len(forged)) + forged + payload)
        assert follower.snapshot("logreg") is held  # refused: its signature fails
        refused = 'riverrun_snapshots_refused_total{model="logreg",reason="unauthenticated"}'
        assert f"{refused} 1.0" in metrics.exposition().decode()
        await follower._take(snapshot(3, chunk_bytes=1 << 20)[0])
        newer = follower.snapshot("logreg")
        assert newer is not None and newer.updates == 60

    asyncio.run(follow())
