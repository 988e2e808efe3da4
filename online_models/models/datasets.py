"""Event sources for replay, demo, tests and benchmarks: River's bundled datasets and a
seeded synthetic click stream. Pure iterators of (features, label); no I/O beyond River's
own bundled files."""

import itertools
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from river import datasets

Sample = tuple[dict[str, Any], bool | float | str | None]

DEVICES = ("mobile", "desktop", "tablet")
DEVICE_EFFECT = {"mobile": 0.3, "desktop": 0.0, "tablet": -0.4}
N_CATEGORIES = 20
N_MERCHANTS = 200


def synthetic_clicks(seed: int = 42, base_rate: float = 0.04) -> Iterator[Sample]:
    """An endless, seeded stream of ad impressions with a click label.

    The click probability is logistic in known effects of device, category, merchant,
    hour of day, ad position and price, centred so that the mean click rate is close to
    `base_rate`. Same seed, same stream.
    """
    rng = random.Random(seed)
    category_effect = [rng.gauss(0, 0.6) for _ in range(N_CATEGORIES)]
    merchant_effect = [rng.gauss(0, 0.8) for _ in range(N_MERCHANTS)]
    intercept = math.log(base_rate / (1 - base_rate)) - 0.45
    while True:
        device = rng.choices(DEVICES, weights=(0.6, 0.3, 0.1))[0]
        category = rng.randrange(N_CATEGORIES)
        merchant = rng.randrange(N_MERCHANTS)
        hour = rng.randrange(24)
        position = rng.randint(1, 10)
        price = round(rng.lognormvariate(3.0, 1.0), 2)
        logit = (
            intercept
            + DEVICE_EFFECT[device]
            + category_effect[category]
            + merchant_effect[merchant]
            + 0.4 * math.sin(2 * math.pi * hour / 24)
            - 0.15 * (position - 1)
            - 0.2 * math.log1p(price)
            + 0.8
        )
        clicked = rng.random() < 1 / (1 + math.exp(-logit))
        features = {
            "device": device,
            "category": f"c{category}",
            "merchant": f"m{merchant}",
            "hour": hour,
            "position": position,
            "price": price,
        }
        yield features, clicked


@dataclass(frozen=True)
class Dataset:
    """A named source of samples and the model it is meant for."""

    name: str
    model: str
    load: Callable[[int], Iterator[Sample]]  # seed -> samples
    size: int | None  # None: endless
    description: str
    seconds_per_event: float = 1.0  # event time between two consecutive samples
    key_feature: str | None = None  # the feature naming the entity (else each event is one)

    def samples(self, limit: int | None = None, seed: int = 42) -> Iterator[Sample]:
        """The first `limit` samples (all of a finite dataset when None)."""
        if limit is None and self.size is None:
            raise ValueError(f"dataset {self.name!r} is endless: give a limit")
        return itertools.islice(self.load(seed), limit)


def _river(dataset_cls: type) -> Callable[[int], Iterator[Sample]]:
    def load(seed: int) -> Iterator[Sample]:
        return iter(dataset_cls())

    return load


OFFERS = 300
OFFER_DEVICES = ("desktop", "mobile", "tablet")
OFFER_DEVICE_EFFECT = {"desktop": 0.0, "mobile": 0.35, "tablet": -0.6}
#: Multiplicative day-of-week effect on clicks (Monday first): busy weekends.
WEEKLY_SEASON = (0.8, 0.75, 0.8, 0.9, 1.1, 1.4, 1.5)


@dataclass(frozen=True)
class _Offer:
    offer: str
    device: str
    category: int
    merchant: int
    base_price: float


def synthetic_offers(
    seed: int = 42, n_offers: int = OFFERS, start: date = date(2026, 1, 1)
) -> Iterator[Sample]:
    """An endless, seeded stream of daily click counts per offer, day after day.

    Each offer has a category, a merchant, a device and a base price. Its expected clicks
    on a day are `exp(2.5 + category + merchant + device - log(price / base price))
    * weekly_season[weekday]`, and the observed count is Poisson around that with
    gamma noise (overdispersion). The price moves a few percent from day to day. Each
    sample's features are those known before the day: date parts, ids, device, price.
    """
    rng = random.Random(seed)
    category_effect = [rng.gauss(0, 0.5) for _ in range(N_CATEGORIES)]
    merchant_effect = [rng.gauss(0, 0.5) for _ in range(N_MERCHANTS)]
    offers = [
        _Offer(
            offer=f"o{offer}",
            device=rng.choices(OFFER_DEVICES, weights=(0.45, 0.45, 0.10))[0],
            category=rng.randrange(N_CATEGORIES),
            merchant=rng.randrange(N_MERCHANTS),
            base_price=rng.lognormvariate(3.0, 0.8),
        )
        for offer in range(n_offers)
    ]
    for day in itertools.count():
        today = start + timedelta(days=day)
        season = WEEKLY_SEASON[today.weekday()]
        for o in offers:
            price = o.base_price * math.exp(rng.gauss(0, 0.25))
            log_rate = (
                2.5
                + category_effect[o.category]
                + merchant_effect[o.merchant]
                + OFFER_DEVICE_EFFECT[o.device]
                - 1.0 * math.log(price / o.base_price)
            )
            rate = math.exp(log_rate) * season * rng.gammavariate(20.0, 1 / 20.0)
            features = {
                "offer": o.offer,
                "category": f"c{o.category}",
                "merchant": f"m{o.merchant}",
                "device": o.device,
                "price": round(price, 2),
                "day_of_week": today.strftime("%a"),
                "day_of_month": today.day,
                "month": today.month,
                "date": today.isoformat(),
            }
            yield features, float(_poisson(rng, rate))


def _poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method for small rates, a rounded normal approximation above 30."""
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    threshold, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= threshold:
            return k
        k += 1


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset(
            "phishing",
            "logreg",
            _river(datasets.Phishing),
            1250,
            "River's Phishing: 1,250 web pages, 9 numeric features, phishing or not",
        ),
        Dataset(
            "bananas",
            "logreg",
            _river(datasets.Bananas),
            5300,
            "River's Bananas: 5,300 2-D points in two banana-shaped classes",
        ),
        Dataset(
            "segments",
            "softmax",
            _river(datasets.ImageSegments),
            2310,
            "River's ImageSegments: 2,310 image regions, 18 numeric features, 7 classes "
            "(brickface, sky, foliage, cement, window, path, grass)",
        ),
        Dataset(
            "trump",
            "linreg",
            _river(datasets.TrumpApproval),
            1001,
            "River's TrumpApproval: 1,001 daily approval ratings to regress",
        ),
        Dataset(
            "clicks",
            "ctr",
            synthetic_clicks,
            None,
            "Seeded synthetic ad impressions (device, category, merchant, hour, position, "
            "price) with a ~4% click rate",
        ),
        Dataset(
            "offers",
            "clicks",
            synthetic_offers,
            None,
            "Seeded synthetic daily clicks of 300 offers (category, merchant, device, "
            "price, date parts) with weekly seasonality and a price effect",
            seconds_per_event=86_400 / OFFERS,
            key_feature="offer",
        ),
    ]
}
