"""(i) The same afternoon loop as (b) on librdkafka: confluent-kafka `Consumer.consume`
batches, River, `Producer.produce` with one `poll(0)` per batch, a commit per batch, one
`flush` at the end."""

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from bench.contenders.common import arguments, decode, done, encode, model, step


def produce(producer: Producer, topic: str, key: bytes | None, value: bytes) -> None:
    """Queue one message; when librdkafka's queue is full, serve deliveries and retry."""
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:
            producer.poll(0.1)


def main() -> None:
    args = arguments(__doc__ or "")
    river_model = model()
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    failures: list[KafkaError] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failures.append(error)

    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            # Keys land on the partitions Java clients and kafka-python choose.
            "partitioner": "murmur2_random",
            "on_delivery": delivered,  # checked once at the end, as (b) checks its futures
        }
    )

    consumer.subscribe([args.input])
    count = 0
    started = None
    try:
        while count < args.events:
            messages = consumer.consume(1000, timeout=0.01)
            if started is None and messages:
                started = time.perf_counter()
            for message in messages[: args.events - count]:
                if message.error() is not None:
                    raise KafkaException(message.error())
                output = step(river_model, decode(message.value() or b""))
                produce(producer, args.output, message.key(), encode(output))
                count += 1
            producer.poll(0)  # serves delivery callbacks; never waits
            if messages:
                consumer.commit(asynchronous=True)
        producer.flush()
        seconds = time.perf_counter() - (started or time.perf_counter())
    finally:
        consumer.close()
    if failures:
        raise KafkaException(failures[0])
    done(count, seconds)


if __name__ == "__main__":
    main()
