"""What a crashed owner delivered: commit metadata and source headers round-trip, and the
skip list drops each delivered output once (the broker test is test_durability's)."""

from streams.kafka.delivered import (
    HEADER,
    MAX_METADATA_CHARS,
    Delivered,
    encode_written,
    parse_written,
    source_of,
)


def test_written_positions_round_trip_through_commit_metadata() -> None:
    written = {("predictions", p): 1_000_000 + p for p in range(12)}
    written |= {("dead-letters", 0): 0, ("my.metrics-v2", 3): 42}
    metadata = encode_written(written)
    assert metadata is not None and parse_written(metadata) == written


def test_metadata_too_long_for_kafka_is_none_and_foreign_metadata_is_ignored() -> None:
    many = {(f"predictions-topic-{t}", p): 10**12 for t in range(10) for p in range(32)}
    assert encode_written(many) is None
    assert len(encode_written(dict(list(many.items())[:50])) or "") <= MAX_METADATA_CHARS
    for foreign in (None, "", "checkpoint at 12", "rr1|x=zero:1", "rr2|x=0:1"):
        assert parse_written(foreign) is None


def test_the_source_header_names_topic_partition_and_offset() -> None:
    headers = [("trace", b"abc"), (HEADER, b"riverrun.events:3:120")]
    assert source_of(headers) == ("riverrun.events", 3, 120)
    assert source_of([("trace", b"abc")]) is None


def test_each_delivered_output_is_skipped_once_per_partition_and_offset() -> None:
    delivered = Delivered()
    for where, offset in [(("p", 0), 10), (("m", 0), 10), (("m", 0), 10), (("p", 1), 11)]:
        delivered.found(where, offset)
    assert delivered.last_offset == 11 and delivered.left() == 4
    assert not delivered.take(("p", 1), 10)  # another partition's output of offset 10
    assert [delivered.take(("m", 0), 10) for _ in range(3)] == [True, True, False]
    assert delivered.take(("p", 0), 10) and not delivered.take(("p", 0), 10)
    assert delivered.left() == 1 and bool(delivered)
    assert delivered.take(("p", 1), 11) and not delivered
