"""Serialise a large state without stopping the event loop: in a forked child.

A checkpoint or a snapshot pickles, compresses and signs a model's whole state. That
holds the GIL throughout (tens of milliseconds for the built-in models with their
evaluation windows and de-duplication ids, seconds for a model of tens of megabytes),
and the event loop, with the web server, the group's heartbeats and the other services
on it, waits. As Redis persists, the worker forks instead: the child has a
copy-on-write image of the state as it was at the fork, serialises it and hands the
records back through a pipe; the parent goes on with its loop and only reads the pipe.
What the loop pays is the fork itself (copying the page tables: a few milliseconds per
100 MB of the worker's memory).

A fork costs more than serialising a small state, so `Serializer` serialises inline
until one replica's serialisation takes over INLINE_SECONDS, and in a child from then on
(while the child says it still takes that long). A child that fails or outlives its
deadline is killed, and the state serialised inline with a warning.
"""

import asyncio
import contextlib
import gc
import logging
import os
import signal
import struct
import time
import traceback
import warnings
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["ChildFailed", "Serialized", "Serializer", "in_child"]

log = logging.getLogger(__name__)

Records = list[tuple[bytes, bytes]]

#: Longer inline than this (seconds), a replica's serialisation moves to a child. Below
#: it a child costs more than it saves: the fork stalls a worker of a few hundred MB
#: 10-25 ms itself, and its copy-on-write faults make the serialisation ~3x slower in
#: wall time, which the service's batch path waits out (measured with the built-in
#: models' ~30 ms checkpoints: ~85 ms each through a child, same throughput).
INLINE_SECONDS = 0.1
#: A child that has not answered within this many seconds is killed.
CHILD_SECONDS = 300.0

#: The pipe's framing: b"R", then each record as its key's length, its value's length,
#: key, value; then _END and the child's serialising seconds. (Or b"E" and a traceback.)
_LENGTH = struct.Struct(">I")
_SECONDS = struct.Struct(">d")
_END = 0xFFFFFFFF


class Serialized(NamedTuple):
    records: Records
    #: How long the child took to serialise.
    seconds: float
    #: How long the fork paused the parent (its loop's stall).
    fork_seconds: float


class ChildFailed(Exception):
    """The child could not serialise the state (its error, or its deadline)."""


def _child(encode: Callable[[], Records], fd: int) -> None:  # pragma: no cover - a child
    """In the forked child: serialise, write the records to `fd`, exit at once."""
    status = 1
    try:
        gc.disable()  # nothing of the parent's is collected (or finalised) here
        # A stop sent to the whole process group is the parent's to handle: it waits for
        # these records to write its last checkpoint. (Killed, the parent leaves the pipe
        # without a reader, and the child's write fails: it exits.)
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(number, signal.SIG_IGN)
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(-1)  # the parent's loop's: never written from here
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            try:
                started = time.perf_counter()
                records = encode()
                seconds = time.perf_counter() - started
            except BaseException:
                out.write(b"E" + traceback.format_exc().encode())
            else:
                out.write(b"R")
                for key, value in records:
                    out.write(_LENGTH.pack(len(key)) + _LENGTH.pack(len(value)))
                    out.write(key)
                    out.write(value)
                out.write(_LENGTH.pack(_END) + _SECONDS.pack(seconds))
                status = 0
    finally:
        os._exit(status)


async def in_child(encode: Callable[[], Records], *, timeout: float = CHILD_SECONDS) -> Serialized:
    """`encode()` run in a forked child: its records, and what it cost.

    The records are read as they come, a few at a time, so that the loop goes on
    between them. Raises `ChildFailed` when the child raised, died or did not finish
    within `timeout` seconds (then it is killed)."""
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns of forking a threaded process: the child only serialises
        # objects of the loop's thread and exits, never touching a lock of another one.
        warnings.simplefilter("ignore", DeprecationWarning)
        started = time.perf_counter()
        pid = os.fork()
        fork_seconds = time.perf_counter() - started
    if pid == 0:  # pragma: no cover - the child
        os.close(read_fd)
        _child(encode, write_fd)
    os.close(write_fd)
    reader = asyncio.StreamReader(limit=1 << 20, loop=loop)
    pipe = os.fdopen(read_fd, "rb", 0)
    transport: asyncio.BaseTransport | None = None
    try:
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe
        )
        records, seconds = await asyncio.wait_for(_read(reader), timeout)
        return Serialized(records, seconds, fork_seconds)
    except TimeoutError:
        raise ChildFailed(f"no answer within {timeout:.0f} s") from None
    finally:
        if transport is not None:
            transport.close()
        else:
            pipe.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # (a child that answered has exited already)
        with contextlib.suppress(ChildProcessError):  # (reaped by someone else's watcher)
            await asyncio.to_thread(os.waitpid, pid, 0)


async def _read(reader: asyncio.StreamReader) -> tuple[Records, float]:
    try:
        kind = await reader.readexactly(1)
        if kind == b"E":
            raise ChildFailed((await reader.read()).decode(errors="replace").strip())
        records: Records = []
        while True:
            (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
            if length == _END:
                (seconds,) = _SECONDS.unpack(await reader.readexactly(_SECONDS.size))
                return records, seconds
            (value_length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
            key = await reader.readexactly(length)
            records.append((key, await reader.readexactly(value_length)))
    except asyncio.IncompleteReadError:
        raise ChildFailed("the child died before it answered") from None


class Serializer:
    """Serialises each replica inline while that is short, in a forked child once it
    is not (`enabled`: RIVERRUN_SERIALIZE_IN_CHILD, and where the system can fork)."""

    def __init__(self, enabled: bool, inline_seconds: float = INLINE_SECONDS) -> None:
        self.enabled = enabled and hasattr(os, "fork")
        self.inline_seconds = inline_seconds
        #: How long each replica's last serialisation took (inline or in its child).
        self.seconds: dict[str, float] = {}
        #: The loop's longest pause for a fork so far (seconds).
        self.longest_fork = 0.0

    async def records(self, replica: str, encode: Callable[[], Records]) -> Records:
        """`encode()`'s records, serialised where it stalls the loop least."""
        if self.enabled and self.seconds.get(replica, 0.0) > self.inline_seconds:
            try:
                done = await in_child(encode)
            except (ChildFailed, OSError) as err:  # (OSError: no fork, e.g. no memory)
                log.warning(
                    "serialising %s in a forked child failed (%s): serialised on the event "
                    "loop instead",
                    replica,
                    str(err).splitlines()[-1] if str(err) else "no reason given",
                )
            else:
                self.seconds[replica] = done.seconds
                self.longest_fork = max(self.longest_fork, done.fork_seconds)
                return done.records
        started = time.perf_counter()
        records = encode()
        self.seconds[replica] = time.perf_counter() - started
        return records
