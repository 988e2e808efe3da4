"""A seeded stream of impressions, clicks, conversions and activity with known truths:
the click probability of every impression and a known delay distribution.

Conversion delays are a mixture of exponentials: 35 % fast (mean 10 minutes), 15 %
medium (mean 6 hours), 50 % slow (mean 15 days): ~37 % of conversions arrive within an
hour and ~53 % within a day (`conversion_delay_cdf`).
"""

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from schemas import ActivityEvent
from schemas.feedback import Click, Conversion, Impression

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ACTIVITY_TYPES = ("page_view", "search", "add_to_cart", "purchase")
CATEGORIES = tuple(f"cat{i}" for i in range(8))
#: (weight, mean delay in seconds) of the conversion delay mixture.
CONVERSION_DELAYS = ((0.35, 600.0), (0.15, 6 * 3600.0), (0.50, 15 * 86400.0))
CLICK_DELAY_MEAN = 60.0


def conversion_delay_cdf(seconds: float) -> float:
    """P(conversion delay <= seconds)."""
    return sum(w * (1 - math.exp(-seconds / mean)) for w, mean in CONVERSION_DELAYS)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@dataclass
class FeedbackStream:
    """Events in event-time order, and what is true about them."""

    events: list[Impression | Click | Conversion | ActivityEvent]
    click_probability: dict[str, float] = field(default_factory=dict)  # by impression id
    clicked: set[str] = field(default_factory=set)
    conversions: list[tuple[str, str, float]] = field(default_factory=list)  # id, product, delay


def delayed_feedback(
    impressions: int,
    *,
    seed: int = 7,
    visitors: int = 500,
    seconds_between: float = 20.0,
    products: tuple[str, ...] = ("shoes", "bags"),
    conversion_rate: float = 0.08,
    activity: bool = True,
) -> FeedbackStream:
    """`impressions` impressions (one every `seconds_between` s of event time on average),
    their clicks (true probability ~4 %, higher for engaged visitors, lower further down
    the page, exponential delay with mean 1 minute), conversions of `products` (rate
    `conversion_rate` per impression and product, delays as `CONVERSION_DELAYS`) and the
    visitors' activity (engaged visitors are more active)."""
    rng = random.Random(seed)
    engaged = {f"v{i}": rng.random() < 0.3 for i in range(visitors)}
    items = [f"item{i}" for i in range(40)]
    item_effect = {item: rng.gauss(0, 0.4) for item in items}
    span = impressions * seconds_between
    stream = FeedbackStream([])
    timed: list[tuple[float, int, object]] = []
    order = 0

    def add(ts: float, event: object) -> None:
        nonlocal order
        order += 1
        timed.append((ts, order, event))

    for visitor, active in engaged.items() if activity else ():  # the span and a week before
        rate = (12 if active else 1) / 86400.0
        t = -7 * 86400.0
        while True:
            t += rng.expovariate(rate)
            if t > span:
                break
            type_ = rng.choices(ACTIVITY_TYPES, weights=(6, 3, 1, 0.3))[0]
            add(
                t,
                ActivityEvent(
                    visitor=visitor,
                    ts=T0 + timedelta(seconds=t),
                    type=type_,
                    category=rng.choice(CATEGORIES),
                ),
            )
    t = 0.0
    for n in range(impressions):
        t += rng.expovariate(1 / seconds_between)
        visitor = f"v{rng.randrange(visitors)}"
        item, position = rng.choice(items), rng.randint(1, 5)
        device = rng.choice(("mobile", "desktop", "tablet"))
        logit = -3.4 + item_effect[item] - 0.25 * (position - 1) + (1.2 if engaged[visitor] else 0)
        logit += 0.3 if device == "desktop" else 0.0
        p = _sigmoid(logit)
        impression_id = f"imp-{n:07d}"
        stream.click_probability[impression_id] = p
        add(
            t,
            Impression(
                impression_id=impression_id,
                ts=T0 + timedelta(seconds=t),
                visitor=visitor,
                item=item,
                features={"position": position, "device": device},
            ),
        )
        if rng.random() < p:
            stream.clicked.add(impression_id)
            delay = rng.expovariate(1 / CLICK_DELAY_MEAN)
            add(
                t + delay,
                Click(
                    click_id=f"click-{n:07d}",
                    impression_id=impression_id,
                    ts=T0 + timedelta(seconds=t + delay),
                ),
            )
        for product in products:
            boost = 1.5 if engaged[visitor] else 0.6
            if rng.random() < conversion_rate * boost:
                ((_, mean),) = rng.choices(
                    CONVERSION_DELAYS, weights=[w for w, _ in CONVERSION_DELAYS]
                )
                delay = rng.expovariate(1 / mean)
                stream.conversions.append((impression_id, product, delay))
                add(
                    t + delay,
                    Conversion(
                        visitor=visitor, product=product, ts=T0 + timedelta(seconds=t + delay)
                    ),
                )
    timed.sort(key=lambda x: (x[0], x[1]))
    stream.events = [event for ts, _, event in timed if ts <= span]  # type: ignore[misc]
    return stream
