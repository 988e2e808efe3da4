"""The numpy `ranking` (window AUC and lifts of every binary report) gives exactly,
to the last bit, what riverrun 0.1's pure-Python one gave: streamed reports keep
equalling the offline evaluation's and earlier releases' figures."""

import itertools
import math
import random
from operator import itemgetter

import pytest

from online_models.quality.evaluation import ranking


def python_ranking(
    scored: list[tuple[float, bool]], *fractions: float
) -> tuple[float | None, list[float | None]]:
    """The pure-Python ranking of riverrun 0.1, the reference for the numpy one."""
    n = len(scored)
    positives = sum(map(itemgetter(1), scored))
    ranked = sorted(scored, key=itemgetter(0), reverse=True)  # stable: ties keep order
    lifts: list[float | None] = [None for _ in fractions]
    if positives:
        labels = [y for _, y in ranked]
        rate = positives / n
        for i, fraction in enumerate(fractions):
            top = math.ceil(fraction * n)
            lifts[i] = sum(labels[:top]) / top / rate
    negatives = n - positives
    if not positives or not negatives:
        return None, lifts
    concordant = 0.0
    negatives_below = 0
    for _, group in itertools.groupby(reversed(ranked), key=itemgetter(0)):  # ascending
        group_positives = group_negatives = 0
        for _, y in group:
            if y:
                group_positives += 1
            else:
                group_negatives += 1
        concordant += group_positives * (negatives_below + 0.5 * group_negatives)
        negatives_below += group_negatives
    return concordant / (positives * negatives), lifts


def windows() -> list[list[tuple[float, bool]]]:
    rng = random.Random(11)
    found: list[list[tuple[float, bool]]] = [
        [],
        [(0.5, True)],
        [(0.5, False)],
        [(0.5, True), (0.5, False), (0.5, False), (0.5, True)],
        [(0.0, True), (-0.0, False), (1.0, False)],  # -0.0 ties with 0.0
    ]
    for size in (2, 3, 10, 97, 1_000, 10_000):
        for digits in (1, 2, 17):  # many ties, some, hardly any
            rate = rng.choice((0.01, 0.04, 0.3, 0.9))
            found.append([(round(rng.random(), digits), rng.random() < rate) for _ in range(size)])
    return found


@pytest.mark.parametrize("window", windows(), ids=lambda w: f"n{len(w)}")
def test_the_same_auc_and_lifts_as_the_python_ranking_bit_for_bit(
    window: list[tuple[float, bool]],
) -> None:
    fractions = (0.05, 0.20, 1.0)
    assert ranking(window, *fractions) == python_ranking(window, *fractions)
