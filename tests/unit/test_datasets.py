"""Event sources are deterministic and what they claim to be."""

import itertools
from typing import cast

from online_models.models.datasets import DATASETS, synthetic_clicks


def test_synthetic_clicks_are_seeded() -> None:
    a = list(itertools.islice(synthetic_clicks(seed=7), 500))
    b = list(itertools.islice(synthetic_clicks(seed=7), 500))
    c = list(itertools.islice(synthetic_clicks(seed=8), 500))
    assert a == b
    assert a != c


def test_synthetic_click_rate_is_rare_like_ads() -> None:
    labels = [y for _, y in itertools.islice(synthetic_clicks(seed=1), 50_000)]
    rate = sum(cast(bool, y) for y in labels) / len(labels)  # click labels are booleans
    # The generator is centred on a 4% base rate; with 50k draws the standard error is
    # ~0.1%, so anything outside 2-6% means the generator changed, not noise.
    assert 0.02 < rate < 0.06


def test_finite_datasets_have_their_documented_size() -> None:
    for dataset in DATASETS.values():
        if dataset.size is not None:
            assert sum(1 for _ in dataset.samples()) == dataset.size, dataset.name
