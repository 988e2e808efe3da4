"""(b) The loop a user writes in an afternoon: aiokafka `getmany` batches, River, `send`
without awaiting each delivery, one `flush` at the end."""

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.contenders.common import arguments, decode, done, encode, model, step


async def main() -> None:
    args = arguments(__doc__ or "")
    river_model = model()
    consumer = AIOKafkaConsumer(
        args.input,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
    )
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=5)
    await consumer.start()
    await producer.start()
    count = 0
    deliveries = []  # checked once at the end, not awaited per message
    started = None
    try:
        while count < args.events:
            batches = await consumer.getmany(timeout_ms=10, max_records=1000)
            for messages in batches.values():
                if started is None and messages:
                    started = time.perf_counter()
                for message in messages[: args.events - count]:
                    output = step(river_model, decode(message.value))
                    # `send` returns once the message is in the producer's buffer.
                    deliveries.append(
                        await producer.send(args.output, encode(output), key=message.key)
                    )
                    count += 1
        await producer.flush()
        seconds = time.perf_counter() - (started or time.perf_counter())
        for delivery in deliveries:
            delivery.result()  # raises if a send failed
    finally:
        await producer.stop()
        await consumer.stop()
    done(count, seconds)


if __name__ == "__main__":
    asyncio.run(main())
