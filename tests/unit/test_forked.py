"""Serialising in a forked child: the same records as inline, the loop going on
meanwhile, a child's failure or silence said and answered inline."""

import asyncio
import logging
import os
import time

import pytest

from online_models.learning.checkpoint import Replica, encode_checkpoint
from online_models.learning.learner import Learner
from streams.runtime.forked import ChildFailed, Serializer, in_child
from tests.builtin import MODELS


def checkpoint_of(learner: Learner) -> list[tuple[bytes, bytes]]:
    return encode_checkpoint(
        learner.models["logreg"],
        Replica("group", "events", 0, "logreg"),
        key=b"secret",
        next_offset=10,
        sequence=3,
    )


def test_a_child_serialises_what_the_loop_would_have() -> None:
    learner = Learner(["logreg"], registry=MODELS)
    inline = checkpoint_of(learner)
    done = asyncio.run(in_child(lambda: checkpoint_of(learner)))
    # A checkpoint carries its time and a random id: all else is the same bytes.
    assert [key for key, _ in done.records] == [key for key, _ in inline]
    assert len(done.records[0][1]) == len(inline[0][1])
    assert done.seconds > 0 and done.fork_seconds > 0


def test_the_child_sees_the_state_as_it_was_at_the_fork() -> None:
    state = {"n": 1}

    async def run() -> list[tuple[bytes, bytes]]:
        def later() -> list[tuple[bytes, bytes]]:
            time.sleep(0.2)
            return [(b"n", str(state["n"]).encode())]

        child = asyncio.create_task(in_child(later))
        await asyncio.sleep(0.05)  # forked by now
        state["n"] = 2  # the parent goes on changing it
        return (await child).records

    assert asyncio.run(run()) == [(b"n", b"1")]


def test_the_loop_goes_on_while_a_child_serialises() -> None:
    def slow() -> list[tuple[bytes, bytes]]:
        deadline = time.perf_counter() + 0.6
        while time.perf_counter() < deadline:  # holds the GIL, as pickling does
            pass
        return [(b"k", b"v" * 3_000_000)]  # several pipe-fulls

    async def run() -> float:
        gaps: list[float] = []

        async def tick() -> None:
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        ticker = asyncio.create_task(tick())
        done = await in_child(slow)
        ticker.cancel()
        assert done.records == [(b"k", b"v" * 3_000_000)]
        return max(gaps)

    assert asyncio.run(run()) < 0.3  # inline, the loop would have waited 0.6 s


def test_an_error_in_the_child_is_its_traceback() -> None:
    def broken() -> list[tuple[bytes, bytes]]:
        raise ValueError("cannot pickle this")

    with pytest.raises(ChildFailed, match="ValueError: cannot pickle this"):
        asyncio.run(in_child(broken))


def test_a_silent_child_is_killed_at_its_deadline() -> None:
    def never() -> list[tuple[bytes, bytes]]:
        time.sleep(30)
        return []

    with pytest.raises(ChildFailed, match="no answer within"):
        asyncio.run(in_child(never, timeout=0.3))


def test_serialised_inline_until_slow_then_in_a_child_then_inline_again() -> None:
    serializer = Serializer(enabled=True, inline_seconds=0.05)
    pause = [0.1]

    def where() -> list[tuple[bytes, bytes]]:
        time.sleep(pause[0])
        return [(b"pid", str(os.getpid()).encode())]

    async def run() -> list[int]:
        return [int((await serializer.records("logreg", where))[0][1]) for _ in range(3)]

    first, second, _ = asyncio.run(run())
    assert first == os.getpid() and second != os.getpid()  # slow inline: then a child
    assert serializer.longest_fork > 0
    pause[0] = 0.0
    asyncio.run(run())  # fast in the child: inline again
    assert int(asyncio.run(serializer.records("logreg", where))[0][1]) == os.getpid()


def test_a_failed_child_is_said_and_the_state_serialised_inline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    serializer = Serializer(enabled=True, inline_seconds=0.0)
    serializer.seconds["logreg"] = 1.0  # known slow: a child is tried
    calls = []

    def fails_in_the_child() -> list[tuple[bytes, bytes]]:
        calls.append(os.getpid())  # (the parent sees only its own call)
        if os.getpid() != parent:
            raise MemoryError("no room for the copy")
        return [(b"k", b"v")]

    parent = os.getpid()
    with caplog.at_level(logging.WARNING, logger="streams.runtime.forked"):
        assert asyncio.run(serializer.records("logreg", fails_in_the_child)) == [(b"k", b"v")]
    assert calls == [parent]
    assert caplog.messages == [
        "serialising logreg in a forked child failed (MemoryError: no room for the copy): "
        "serialised on the event loop instead"
    ]


def test_disabled_it_never_forks() -> None:
    serializer = Serializer(enabled=False, inline_seconds=0.0)
    serializer.seconds["logreg"] = 1.0
    records = asyncio.run(
        serializer.records("logreg", lambda: [(b"pid", str(os.getpid()).encode())])
    )
    assert records == [(b"pid", str(os.getpid()).encode())]


def test_a_fork_refused_by_the_system_is_said_and_the_state_serialised_inline(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_memory() -> int:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(os, "fork", no_memory)
    serializer = Serializer(enabled=True, inline_seconds=0.0)
    serializer.seconds["logreg"] = 1.0
    with caplog.at_level(logging.WARNING, logger="streams.runtime.forked"):
        assert asyncio.run(serializer.records("logreg", lambda: [(b"k", b"v")])) == [(b"k", b"v")]
    assert caplog.messages == [
        "serialising logreg in a forked child failed ([Errno 12] Cannot allocate memory): "
        "serialised on the event loop instead"
    ]
