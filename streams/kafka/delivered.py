"""Outputs a crashed owner delivered after its last commit: found again, never sent twice.

Every output carries its source in a Kafka header, `riverrun-source` = `topic:partition:
offset` of the input message it comes from (reports and drift alarms: the labelled event
that made them due). Every offset commit records in its metadata how far the worker's
acknowledged outputs reached on each output partition when the committed batch was
delivered: all outputs of later input offsets lie beyond, since a producer keeps each
partition's batches in order. A worker that acquires a partition reads every output
partition from there to its end and counts, per source offset, the outputs of that input
partition already present. Re-running the events from the committed offset, it skips
exactly those: the restored replicas equal the dead owner's, so the re-run makes the same
outputs for the same offsets.

What this cannot see (docs: Concepts > Guarantees): a worker that stalled past its session
timeout and resumes writing after its partitions moved, and a broker that loses writes
it acknowledged.
"""

import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping

from confluent_kafka import KafkaException

from streams.kafka.reader import read_to_end
from streams.kafka.records import TopicPartition
from streams.settings import Settings

log = logging.getLogger(__name__)

#: The header naming an output's source message.
HEADER = "riverrun-source"
#: Commit metadata this code writes and reads: `rr1|topic=partition:offset,...|...`.
METADATA_VERSION = "rr1"
#: Kafka refuses commits whose metadata is over `offset.metadata.max.bytes` (4096 by
#: default): beyond this, commits carry none and a crash may duplicate outputs again.
MAX_METADATA_CHARS = 4000
#: Longest a new owner reads output partitions before giving up (and may duplicate).
READ_TIMEOUT_SECONDS = 30.0

#: An output topic partition.
Where = tuple[str, int]


def encode_written(written: Mapping[Where, int]) -> str | None:
    """Commit metadata for `written` (output partition -> offset after the worker's last
    acknowledged output there); None when it would be too long for Kafka.

    >>> encode_written({("predictions", 0): 120, ("predictions", 1): 7, ("metrics", 0): 3})
    'rr1|metrics=0:3|predictions=0:120,1:7'
    """
    topics: dict[str, list[str]] = {}
    for (topic, partition), offset in sorted(written.items()):
        topics.setdefault(topic, []).append(f"{partition}:{offset}")
    text = "|".join([METADATA_VERSION, *(f"{t}={','.join(p)}" for t, p in topics.items())])
    return text if len(text) <= MAX_METADATA_CHARS else None


def parse_written(metadata: str | None) -> dict[Where, int] | None:
    """The positions in commit metadata written by `encode_written`; None for any other
    metadata (none, another tool's, a format this code does not know).

    >>> parse_written('rr1|metrics=0:3|predictions=0:120,1:7')
    {('metrics', 0): 3, ('predictions', 0): 120, ('predictions', 1): 7}
    >>> parse_written('') is None, parse_written('rr9|x=0:1') is None
    (True, True)
    """
    if not metadata or not metadata.startswith(METADATA_VERSION + "|"):
        return None
    written: dict[Where, int] = {}
    try:
        for part in metadata.split("|")[1:]:
            topic, _, positions = part.rpartition("=")
            for position in positions.split(","):
                partition, _, offset = position.partition(":")
                written[topic, int(partition)] = int(offset)
    except ValueError:
        return None
    return written


def source_of(headers: Iterable[tuple[str, bytes]]) -> tuple[str, int, int] | None:
    """(topic, partition, offset) of an output's source, from its headers."""
    for key, value in headers:
        if key == HEADER:
            topic, partition, offset = value.decode().rsplit(":", 2)
            return topic, int(partition), int(offset)
    return None


class Delivered:
    """The outputs of one input partition found on the output topics, by output partition
    and source offset: each is skipped once when the re-run makes it again."""

    def __init__(self) -> None:
        self.counts: dict[Where, Counter[int]] = {}
        self.last_offset = -1  # the highest source offset found

    def __bool__(self) -> bool:
        return bool(self.counts)

    def found(self, where: Where, offset: int) -> None:
        self.counts.setdefault(where, Counter())[offset] += 1
        self.last_offset = max(self.last_offset, offset)

    def take(self, where: Where, offset: int) -> bool:
        """Whether an output of `offset` to `where` was delivered already (then counted
        off: the next one of that offset and partition is new unless found twice)."""
        counts = self.counts.get(where)
        if not counts or not counts[offset]:
            return False
        counts[offset] -= 1
        if not counts[offset]:
            del counts[offset]
            if not counts:
                del self.counts[where]
        return True

    def left(self) -> int:
        """Outputs found that the re-run did not make again (0 when it was exact)."""
        return sum(sum(counts.values()) for counts in self.counts.values())


async def find_delivered(
    settings: Settings,
    sources: Mapping[TopicPartition, tuple[int, Mapping[Where, int]]],
    output_topics: Iterable[str],
) -> dict[TopicPartition, Delivered]:
    """For each input partition (committed offset, positions from its commit metadata),
    the outputs of its offsets from the committed one on that are on `output_topics`."""
    topics = set(output_topics)
    starts: dict[TopicPartition, int] = {}
    for _, written in sources.values():
        for (topic, partition), offset in written.items():
            if topic in topics:
                tp = TopicPartition(topic, partition)
                starts[tp] = min(offset, starts.get(tp, offset))
    if not starts:
        return {tp: Delivered() for tp in sources}
    try:
        return await _find(settings, sources, starts)
    except (TimeoutError, KafkaException, OSError) as err:
        log.warning(
            "could not read the outputs the last owner delivered (%s): outputs of the "
            "batches it had in flight may be sent again; check the broker",
            err,
        )
        return {tp: Delivered() for tp in sources}


async def _find(
    settings: Settings,
    sources: Mapping[TopicPartition, tuple[int, Mapping[Where, int]]],
    starts: Mapping[TopicPartition, int],
) -> dict[TopicPartition, Delivered]:
    found = {tp: Delivered() for tp in sources}
    wanted = {(tp.topic, tp.partition): (tp, committed) for tp, (committed, _) in sources.items()}
    started = time.monotonic()
    read = 0
    for output in await read_to_end(
        settings,
        starts,
        client_id=f"{settings.group_id}-delivered-reader",
        timeout=READ_TIMEOUT_SECONDS,
    ):
        read += 1
        source = source_of(output.headers)
        if source is None:
            continue
        origin = wanted.get(source[:2])
        if origin is not None and source[2] >= origin[1]:
            found[origin[0]].found((output.topic, output.partition), source[2])
    log.info(
        "read %d outputs of %d partitions in %.2f s: %d already delivered for %s",
        read,
        len(starts),
        time.monotonic() - started,
        sum(d.left() for d in found.values()),
        sorted(f"{tp.topic}[{tp.partition}]" for tp, d in found.items() if d),
    )
    return found
