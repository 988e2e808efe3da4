"""(b) The loop a user writes in an afternoon: aiokafka getmany batches, River, send
without awaiting each delivery."""

import asyncio
import json

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.contenders.common import arguments, model


async def main() -> None:
    args = arguments(__doc__ or "")
    river_model = model()
    consumer = AIOKafkaConsumer(
        args.input, bootstrap_servers=args.bootstrap, group_id=args.group,
        auto_offset_reset="earliest", fetch_max_wait_ms=10,
    )  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=5)
    await consumer.start()
    await producer.start()
    done = 0
    try:
        while done < args.events:
            batches = await consumer.getmany(timeout_ms=100, max_records=1000)
            for messages in batches.values():
                for message in messages:
                    event = json.loads(message.value)
                    x = event["features"]
                    p = river_model.predict_proba_one(x).get(True, 0.0)
                    if event.get("label") is not None:
                        river_model.learn_one(x, bool(event["label"]))
                    out = json.dumps({"event_id": event["event_id"], "prediction": p})
                    await producer.send(args.output, out.encode(), key=message.key)
                    done += 1
        await producer.flush()
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(main())
