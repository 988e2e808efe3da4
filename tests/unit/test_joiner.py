"""Delayed feedback join: labels by event time, no leakage from the future, coverage as
the known delay distribution says, calibrated with and without negative down-sampling."""

import math
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from online_models.feedback.data import conversion_delay_cdf, delayed_feedback
from online_models.feedback.joiner import (
    FeedbackJoiner,
    JoinConfig,
    keeps_negative,
    recalibrate,
)
from schemas import ActivityEvent, Prediction
from schemas.feedback import Click, Conversion, Impression, Outcome
from tests.builtin import MODELS

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def impression(n: int, seconds: float, visitor: str = "v1") -> Impression:
    return Impression(
        impression_id=f"i{n}",
        ts=at(seconds),
        visitor=visitor,
        item="shoe",
        features={"position": 1},
    )


def outcomes(outputs: Sequence[Sequence[object]]) -> list[Outcome]:
    return [o for out in outputs for o in out if isinstance(o, Outcome)]


def scored(outcome: Outcome) -> float:
    """The outcome's prediction; every outcome of these tests was scored."""
    assert outcome.prediction is not None
    return outcome.prediction


CONFIG = JoinConfig(click_window_seconds=600, lateness_seconds=60, ctr_model="logreg")


def test_a_click_inside_the_window_is_learnt_at_once_and_silence_only_after_the_watermark() -> None:
    joiner = FeedbackJoiner(CONFIG, registry=MODELS)
    (predicted,) = joiner.handle(impression(1, 0))
    assert isinstance(predicted, Prediction) and predicted.event_id == "i1"
    joiner.handle(impression(2, 10))
    (positive,) = joiner.handle(Click(click_id="c1", impression_id="i1", ts=at(30)))
    assert positive.label and positive.learned and positive.delay_seconds == 30  # type: ignore[union-attr]
    assert joiner.models["logreg"].updates == 1
    # i2's window ends at 610; the watermark is the latest event time minus 60 s.
    assert outcomes([joiner.handle(impression(3, 669))]) == []  # watermark 609
    (negative,) = outcomes([joiner.handle(impression(4, 671))])  # watermark 611
    assert negative.impression_id == "i2" and not negative.label
    assert negative.resolved_ts == at(610)
    assert joiner.models["logreg"].updates == 2


def test_late_unknown_and_duplicate_clicks_are_counted_and_not_learnt() -> None:
    joiner = FeedbackJoiner(CONFIG, registry=MODELS)
    joiner.handle(impression(1, 0))
    joiner.handle(Click(click_id="c1", impression_id="i1", ts=at(20)))
    assert joiner.handle(Click(click_id="c2", impression_id="i1", ts=at(25))) == []
    assert joiner.handle(Click(click_id="c3", impression_id="nope", ts=at(30))) == []
    joiner.handle(impression(2, 40))
    joiner.handle(Click(click_id="c4", impression_id="i2", ts=at(40 + 601)))  # outside
    joiner.handle(impression(3, 2000))  # closes both windows
    joiner.handle(Click(click_id="c5", impression_id="i2", ts=at(2001)))  # expired
    s = joiner.stats
    assert (s.click_positives, s.duplicate_clicks, s.late_clicks) == (1, 1, 3)
    assert joiner.models["logreg"].updates == 2  # i1 positive, i2 negative
    assert joiner.stats.values(0)["late_positive_rate"] == 3 / 4


def test_activity_features_see_nothing_after_the_impression_even_if_it_arrived_first() -> None:
    joiner = FeedbackJoiner(CONFIG, registry=MODELS)
    for seconds, kind in [(-7200, "search"), (-1800, "page_view"), (30, "purchase")]:
        joiner.handle(ActivityEvent(visitor="v1", ts=at(seconds), type=kind, category="c"))
    joiner.handle(impression(1, 0))
    features = joiner.pending["i1"].features
    assert features["activity_page_view_1h"] == 1 and features["activity_search_1h"] == 0
    assert features["activity_search_24h"] == 1
    assert features["activity_purchase_1h"] == 0 and features["activity_purchase_168h"] == 0
    assert features["activity_recency_hours"] == 0.5
    joiner.handle(impression(2, 0, visitor="stranger"))
    defaults = joiner.pending["i2"].features
    assert defaults["activity_recency_hours"] == 168 and defaults["activity_page_view_168h"] == 0
    assert joiner.stats.features_missing == 1


def test_labels_depend_on_event_times_only_not_on_arrival_order_within_the_lateness() -> None:
    stream = delayed_feedback(3_000, seed=5, products=("shoes",))
    config = JoinConfig(
        lateness_seconds=120,
        products=("shoes",),
        ctr_model="logreg",
        conversion_window_seconds=3 * 3600,
    )
    rng = random.Random(1)
    shuffled = sorted(
        stream.events,
        key=lambda e: e.ts + timedelta(seconds=rng.uniform(0, 50)),  # disorder < lateness
    )
    # An impression's own click must follow it (a click cannot be handled before it).
    assert shuffled != stream.events
    labels = []
    for events in (stream.events, shuffled):
        joiner = FeedbackJoiner(config, registry=MODELS)
        result = outcomes(joiner.process(fix_causality(events)))
        labels.append(sorted((o.impression_id, o.model, o.label) for o in result))
    assert labels[0] == labels[1]


def fix_causality(events: list) -> list:  # type: ignore[type-arg]
    """Move each click after its impression (a shuffle may swap them)."""
    seen: set[str] = set()
    held: dict[str, list] = {}  # type: ignore[type-arg]
    out: list = []  # type: ignore[type-arg]
    for event in events:
        if isinstance(event, Click) and event.impression_id not in seen:
            held.setdefault(event.impression_id, []).append(event)
            continue
        out.append(event)
        if isinstance(event, Impression):
            seen.add(event.impression_id)
            out += held.pop(event.impression_id, [])
    return out


@pytest.mark.parametrize("window_hours", [1, 24])
def test_conversion_coverage_follows_the_known_delay_distribution(window_hours: int) -> None:
    # One impression per visitor, so each conversion can only join its own impression.
    n = 12_000
    stream = delayed_feedback(
        n,
        seed=11,
        visitors=n * 50,
        activity=False,
        products=("shoes",),
        conversion_rate=0.15,
        seconds_between=30,
    )
    window = window_hours * 3600.0
    config = JoinConfig(conversion_window_seconds=window, products=("shoes",), ctr_model="logreg")
    joiner = FeedbackJoiner(config, registry=MODELS)
    joined = {
        o.impression_id
        for o in outcomes(joiner.process(stream.events))
        if o.label and o.label_type == "conversion"
    }
    closed = {
        e.impression_id
        for e in stream.events
        if isinstance(e, Impression) and (e.ts - T0).total_seconds() + window < joiner.watermark
    }
    generated = [i for i, _, _ in stream.conversions if i in closed]
    share = sum(i in joined for i in generated) / len(generated)
    expected = conversion_delay_cdf(window)
    sigma = math.sqrt(expected * (1 - expected) / len(generated))
    assert abs(share - expected) < 4 * sigma, (share, expected, len(generated))


@pytest.mark.parametrize("rate", [1.0, 0.2])
def test_learned_ctr_converges_to_the_true_one_with_and_without_down_sampling(rate: float) -> None:
    stream = delayed_feedback(30_000, seed=3)
    joiner = FeedbackJoiner(JoinConfig(negative_rate=rate), registry=MODELS)
    resolved = [o for o in outcomes(joiner.process(stream.events)) if o.label_type == "click"]
    late = resolved[len(resolved) // 2 :]
    predicted = sum(scored(o) for o in late)
    true = sum(stream.click_probability[o.impression_id] for o in late)
    actual = sum(o.label for o in late)
    assert abs(predicted - true) / true < 0.05  # calibrated: Σ predicted ≈ Σ true p
    assert abs(predicted - actual) < 4 * math.sqrt(true)  # ≈ actual clicks (Poisson noise)
    if rate < 1:
        skipped = joiner.stats.negatives_skipped
        assert abs(skipped / (skipped + joiner.stats.negatives_learnt) - (1 - rate)) < 0.01
        # Without the recalibration, the model's raw output would overstate the CTR.
        raw = sum(q / (rate + q * (1 - rate)) for q in (scored(o) for o in late))
        assert raw > 2.5 * true


def test_recalibration_inverts_down_sampling_and_sampling_is_deterministic() -> None:
    for p in (0.01, 0.3, 0.9):
        odds = p / (1 - p)
        sampled = odds / 0.1 / (1 + odds / 0.1)  # what a model sees with 10 % negatives
        assert recalibrate(sampled, 0.1) == pytest.approx(p)
    kept = [keeps_negative(f"i{n}", "ctr", 0.3) for n in range(20_000)]
    assert kept == [keeps_negative(f"i{n}", "ctr", 0.3) for n in range(20_000)]
    assert abs(sum(kept) / len(kept) - 0.3) < 0.02


def test_a_conversion_labels_the_product_model_of_every_impression_in_its_window() -> None:
    config = JoinConfig(
        products=("shoes", "bags"), conversion_window_seconds=3600, ctr_model="logreg"
    )
    joiner = FeedbackJoiner(config, registry=MODELS)
    joiner.handle(impression(1, 0))
    joiner.handle(impression(2, 1000))
    result = joiner.handle(Conversion(visitor="v1", product="shoes", ts=at(3000)))
    # Its event time also closed both click windows (watermark 2,940): two negatives.
    assert sorted((o.impression_id, o.model, o.label) for o in outcomes([result])) == [
        ("i1", "logreg", False),
        ("i1", "propensity_shoes", True),
        ("i2", "logreg", False),
        ("i2", "propensity_shoes", True),
    ]
    closing = outcomes([joiner.handle(impression(3, 4500))])  # watermark 4,440: i1 closes
    assert [(o.impression_id, o.model, o.label) for o in closing] == [
        ("i1", "propensity_bags", False)
    ]
    assert "i1" not in joiner.pending and "i2" in joiner.pending


def test_labels_that_arrive_before_their_impression_wait_for_it_within_the_lateness() -> None:
    config = JoinConfig(
        products=("shoes",), conversion_window_seconds=3600, ctr_model="logreg", lateness_seconds=60
    )
    joiner = FeedbackJoiner(config, registry=MODELS)
    joiner.handle(ActivityEvent(visitor="v1", ts=at(100), type="search"))  # watermark 40
    assert joiner.handle(Click(click_id="c1", impression_id="i1", ts=at(90))) == []
    assert joiner.handle(Conversion(visitor="v1", product="shoes", ts=at(95))) == []
    result = outcomes([joiner.handle(impression(1, 80))])  # arrives late, within lateness
    assert sorted((o.model, o.label) for o in result) == [
        ("logreg", True),
        ("propensity_shoes", True),
    ]
    # A click whose impression never comes is a late positive once the watermark passes it.
    joiner.handle(Click(click_id="c2", impression_id="ghost", ts=at(110)))
    assert joiner.stats.late_clicks == 0
    joiner.handle(ActivityEvent(visitor="v2", ts=at(171), type="search"))  # watermark 111
    assert joiner.stats.late_clicks == 1 and not joiner.early_clicks


def test_beyond_max_pending_the_oldest_impression_closes_at_once_as_a_negative() -> None:
    joiner = FeedbackJoiner(
        JoinConfig(
            click_window_seconds=600, lateness_seconds=60, ctr_model="logreg", max_pending=2
        ),
        registry=MODELS,
    )
    joiner.handle(impression(1, 0))
    joiner.handle(impression(2, 10))
    result = joiner.handle(impression(3, 20))  # a third pending: i1 closes now, at t=20
    assert isinstance(result[0], Prediction) and result[0].event_id == "i3"
    (evicted,) = outcomes([result])
    assert (evicted.impression_id, evicted.label, evicted.resolved_ts) == ("i1", False, at(20))
    assert list(joiner.pending) == ["i2", "i3"] and joiner.stats.evicted_impressions == 1
    assert joiner.handle(Click(click_id="c1", impression_id="i1", ts=at(30))) == []
    assert joiner.stats.late_clicks == 1  # its window closed: a late positive, not learnt
    # Past every deadline: i2 and i3 close as usual; i1's stale entry labels nothing again.
    closing = outcomes([joiner.handle(impression(4, 2000))])
    assert [(o.impression_id, o.label) for o in closing] == [("i2", False), ("i3", False)]
    assert joiner.models["logreg"].updates == 3 and len(joiner.expiries) == 1


def test_join_state_stays_within_its_caps_and_labels_every_impression_once() -> None:
    """4,000 impressions of 1,000 visitors with a week-long conversion window and
    activity: without caps every impression would stay pending. With max_pending 50 and
    max_visitors 20 the state stays within them (the expiry heap within twice its live
    entries), and every impression still gets exactly one label per model."""
    products = ("shoes",)
    config = JoinConfig(products=products, ctr_model="logreg", max_pending=50, max_visitors=20)
    joiner = FeedbackJoiner(config, registry=MODELS)
    rng = random.Random(5)
    labels: dict[tuple[str, str], int] = {}
    for n in range(4000):
        visitor = f"v{rng.randrange(1000)}"
        events: list[Any] = [
            ActivityEvent(visitor=visitor, ts=at(10 * n), type="search"),
            impression(n, 10 * n + 1, visitor),
        ]
        if rng.random() < 0.2:
            events.append(Click(click_id=f"c{n}", impression_id=f"i{n}", ts=at(10 * n + 5)))
        if rng.random() < 0.05:
            events.append(Conversion(visitor=visitor, product="shoes", ts=at(10 * n + 8)))
        for outcome in outcomes(joiner.process(events)):
            key = (outcome.impression_id, outcome.model)
            labels[key] = labels.get(key, 0) + 1
        assert len(joiner.pending) <= 50 and len(joiner.activity) <= 20
        assert sum(map(len, joiner.by_visitor.values())) == len(joiner.pending)
        assert len(joiner.expiries) <= 2 * (2 * len(joiner.pending) + 2)
    assert joiner.stats.evicted_impressions > 3000 and joiner.stats.forgotten_visitors > 0
    assert set(labels.values()) == {1}  # never two labels for one impression and model
    # The 50 still pending are the last 50 impressions (500 s, inside the 30-minute click
    # window): the unclicked ones are the only impressions without a click label yet.
    resolved = {i for i, model in labels if model == "logreg"}
    assert len(resolved) == 4000 - sum(1 for p in joiner.pending.values() if not p.clicked)


def test_beyond_max_visitors_the_least_recently_active_visitor_is_forgotten() -> None:
    joiner = FeedbackJoiner(JoinConfig(ctr_model="logreg", max_visitors=2), registry=MODELS)
    for visitor, seconds in [("v1", 0), ("v2", 10), ("v1", 20), ("v3", 30)]:
        joiner.handle(ActivityEvent(visitor=visitor, ts=at(seconds), type="search"))
    assert list(joiner.activity) == ["v1", "v3"] and joiner.stats.forgotten_visitors == 1
    joiner.handle(impression(1, 40, visitor="v2"))  # forgotten: as a visitor without activity
    joiner.handle(impression(2, 40, visitor="v1"))
    assert joiner.stats.features_missing == 1
    assert joiner.pending["i2"].features["activity_search_1h"] == 2
