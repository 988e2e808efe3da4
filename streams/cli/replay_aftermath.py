"""What a replay caused, printed after `riverrun replay`: where its messages were written,
how many of them the worker handled within the wait, and the dead letters they became,
by type, with what to do about them."""

import bisect
import time
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from schemas import DeadLetter, ErrorType
from streams.kafka.security import kafka_options
from streams.settings import Settings


class Produced:
    """Where each replayed message was written (partition and offset on `topic`), as the
    producer's acknowledgements tell: the replay's summary finds its dead letters by it."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.offsets: dict[int, array[int]] = {}

    def written(self, metadata: Any) -> None:
        """The producer's callback of one acknowledged message (a RecordMetadata)."""
        self.offsets.setdefault(metadata.partition, array("q")).append(metadata.offset)

    def count(self) -> int:
        return sum(len(offsets) for offsets in self.offsets.values())

    def ends(self) -> dict[int, int]:
        """Per partition, the offset after the last message written there."""
        return {partition: max(offsets) + 1 for partition, offsets in self.offsets.items()}

    def below(self, committed: Mapping[int, int]) -> int:
        """How many messages lie below the committed offsets (handled by the worker)."""
        return sum(
            sum(1 for offset in offsets if offset < committed.get(partition, 0))
            for partition, offsets in self.offsets.items()
        )

    def __contains__(self, where: tuple[int, int]) -> bool:
        offsets = self.offsets.get(where[0])
        if offsets is None:
            return False
        if not isinstance(offsets, list):  # sorted once, searched in O(log n) after
            self.offsets[where[0]] = offsets = sorted(offsets)  # type: ignore[assignment]
        i = bisect.bisect_left(offsets, where[1])
        return i < len(offsets) and offsets[i] == where[1]


#: What a dead letter's reason suggests to the person who replayed (duplicates above all).
HINTS = {
    ErrorType.DUPLICATE_EVENT: "these event ids were replayed before: pass a new --id-prefix "
    "(e.g. --id-prefix run2-) to send the records as new events",
    ErrorType.INVALID_LABEL: "check --label-column and that the labels suit the model's task",
    ErrorType.UNKNOWN_MODEL: "pass --model with a model the worker serves",
}


@dataclass
class Aftermath:
    """What a replay caused: how many of its events the worker handled within the wait,
    and the dead letters of those, by type (count and the first reason)."""

    sent: int
    handled: int
    waited: float
    dead_letters: dict[ErrorType, tuple[int, str]] = field(default_factory=dict)
    dead_letters_topic: str = "dead-letters"

    def count(self, letter: DeadLetter) -> None:
        """Count a dead letter of the replay (its reason kept when it is the first)."""
        count, reason = self.dead_letters.get(letter.error_type, (0, letter.reason))
        self.dead_letters[letter.error_type] = (count + 1, reason)

    def lines(self) -> list[str]:
        """The summary printed after `replayed N events`.

        >>> Aftermath(3, 3, 0.4).lines()
        ['the worker handled all 3 events within 0.4 s: no dead letters']
        >>> Aftermath(200, 0, 5.0).lines()[0].split(":")[0]
        'no worker handled any of the 200 events within 5 s'
        """
        letters = sum(count for count, _ in self.dead_letters.values())
        if self.handled == 0 and not letters:
            return [
                f"no worker handled any of the {self.sent} events within {self.waited:g} s: "
                "is one running (`riverrun worker`, with the same RIVERRUN_GROUP_ID)? Or wait "
                "longer with --wait-seconds"
            ]
        if self.handled >= self.sent:
            head = f"the worker handled all {self.sent} events within {self.waited:.1f} s"
        else:
            head = (
                f"the worker had handled {self.handled} of the {self.sent} events after "
                f"{self.waited:g} s (wait longer with --wait-seconds)"
            )
        if not letters:
            return [f"{head}: no dead letters"]
        lines = [
            f"{head}: {letters} became dead letters (`riverrun tail "
            f"{self.dead_letters_topic} --from-beginning` shows them)"
        ]
        by_count = sorted(self.dead_letters.items(), key=lambda item: -item[1][0])
        for error_type, (count, reason) in by_count:
            lines.append(f"  {count} {error_type.value}, e.g. {reason}")
            if error_type in HINTS:
                lines.append(f"    {HINTS[error_type]}")
        return lines


def dead_letter_ends(settings: Settings) -> dict[int, int]:
    """The end offset of each partition of the dead-letters topic (before a replay)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        **kafka_options(settings),
        client_id="riverrun-replay",
        group_id=None,
        enable_auto_commit=False,
    )
    try:
        topic = settings.dead_letters_topic
        partitions = consumer.partitions_for_topic(topic) or set()
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        consumer.close()


def aftermath(
    settings: Settings, produced: Produced, dead_letters_from: Mapping[int, int], wait: float
) -> Aftermath:
    """What the replay caused, once the worker's group committed every replayed offset or
    after `wait` seconds: the dead letters (written before those commits) whose source is a
    replayed message, read from `dead_letters_from` (the ends before the replay) on."""
    handled, waited = _wait_for_commits(settings, produced, wait)
    result = Aftermath(
        produced.count(), handled, waited, dead_letters_topic=settings.dead_letters_topic
    )
    _count_dead_letters(settings, produced, dead_letters_from, result)
    return result


def _wait_for_commits(settings: Settings, produced: Produced, wait: float) -> tuple[int, float]:
    """Wait until the worker's group committed every replayed offset, at most `wait`
    seconds: how many replayed messages it handled, and how long that took."""
    started = time.monotonic()
    ends = produced.ends()
    group = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        **kafka_options(settings),
        client_id="riverrun-replay",
        group_id=settings.group_id,
        enable_auto_commit=False,
    )
    try:
        while True:  # committed() asks the group's coordinator; it does not join the group
            committed = {p: group.committed(TopicPartition(produced.topic, p)) or 0 for p in ends}
            done = all(committed[p] >= end for p, end in ends.items())
            if done or time.monotonic() - started >= wait:
                break
            time.sleep(0.2)
    finally:
        group.close()
    waited = time.monotonic() - started if done else wait  # (the bound, when it was reached)
    return produced.below(committed), waited


def _count_dead_letters(
    settings: Settings, produced: Produced, dead_letters_from: Mapping[int, int], result: Aftermath
) -> None:
    """Count into `result` the dead letters whose source is a replayed message, read from
    `dead_letters_from` (the ends before the replay) to the topic's end."""
    reader = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        **kafka_options(settings),
        client_id="riverrun-replay",
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    try:
        topic = settings.dead_letters_topic
        tps = [TopicPartition(topic, p) for p in reader.partitions_for_topic(topic) or ()]
        reader.assign(tps)
        last = reader.end_offsets(tps)
        for tp in tps:
            reader.seek(tp, dead_letters_from.get(tp.partition, 0))
        remaining = {tp for tp in tps if reader.position(tp) < last[tp]}
        deadline = time.monotonic() + READ_SECONDS
        while remaining and time.monotonic() < deadline:
            for records in reader.poll(timeout_ms=200).values():
                for record in records:
                    letter = DeadLetter.model_validate_json(record.value)
                    where = (letter.source_partition, letter.source_offset)
                    if letter.source_topic == produced.topic and where in produced:
                        result.count(letter)
            remaining = {tp for tp in remaining if reader.position(tp) < last[tp]}
    finally:
        reader.close()


#: Longest the summary reads the dead-letters topic (it holds what others caused too).
READ_SECONDS = 10.0
