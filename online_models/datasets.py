"""Event sources for replay, demo, tests and benchmarks: River's bundled datasets and a
seeded synthetic click stream. Pure iterators of (features, label); no I/O beyond River's
own bundled files."""

import itertools
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from river import datasets

Sample = tuple[dict[str, Any], bool | float | None]

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

    def samples(self, limit: int | None = None, seed: int = 42) -> Iterator[Sample]:
        """The first `limit` samples (all of a finite dataset when None)."""
        if limit is None and self.size is None:
            raise ValueError(f"dataset {self.name!r} is endless: give a limit")
        return itertools.islice(self.load(seed), limit)


def _river(dataset_cls: type) -> Callable[[int], Iterator[Sample]]:
    def load(seed: int) -> Iterator[Sample]:
        return iter(dataset_cls())

    return load


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset("phishing", "logreg", _river(datasets.Phishing), 1250,
                "River's Phishing: 1,250 web pages, 9 numeric features, phishing or not"),
        Dataset("bananas", "logreg", _river(datasets.Bananas), 5300,
                "River's Bananas: 5,300 2-D points in two banana-shaped classes"),
        Dataset("trump", "linreg", _river(datasets.TrumpApproval), 1001,
                "River's TrumpApproval: 1,001 daily approval ratings to regress"),
        Dataset("clicks", "logreg", synthetic_clicks, None,
                "Seeded synthetic ad impressions (device, category, merchant, hour, position, "
                "price) with a ~4% click rate"),
    ]
}  # fmt: skip
