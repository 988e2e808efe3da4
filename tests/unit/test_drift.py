"""Drift detectors on streams whose concept switches at a known position (River's seeded
synthetic generators): reported after the switch, within a bound, and not before."""

import itertools
import math
import pickle
from datetime import UTC, datetime, timedelta

import pytest
from river.datasets import synth

from online_models import Learner
from online_models.quality.drift import DriftConfig, DriftMonitor, jensen_shannon, psi
from schemas import InputEvent
from tests.builtin import MODELS

SWITCH = 5_000
#: Documented bound (docs: Operations > Monitoring, Drift): the loss detectors alarm within this many labelled
#: events after an abrupt concept switch on these streams.
WITHIN = 2_000
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def agrawal_events(seed: int, n: int = 9_000, function: int = 2) -> list[InputEvent]:
    """Agrawal loan data whose labelling function changes from 0 to `function` at SWITCH."""
    stream = synth.ConceptDriftStream(
        stream=synth.Agrawal(classification_function=0, seed=seed),
        drift_stream=synth.Agrawal(classification_function=function, seed=seed),
        position=SWITCH,
        width=50,
        seed=seed,
    )
    return [
        InputEvent(
            event_id=f"e{i}",
            ts=T0 + timedelta(seconds=i),
            model="logreg",
            key="k",
            features={str(k): v for k, v in x.items()},
            label=bool(y),
        )
        for i, (x, y) in enumerate(itertools.islice(stream, n))
    ]


def alarms(events: list[InputEvent]) -> dict[tuple[str, str], list[int]]:
    learner = Learner(["logreg"], drift=DriftConfig(), registry=MODELS)
    learner.process(events, offsets=range(len(events)))
    found: dict[tuple[str, str], list[int]] = {}
    for report in learner.drain_drift():
        if report.trigger == "alarm":
            found.setdefault((report.detector, report.signal), []).append(
                report.window_end_offset  # type: ignore[arg-type]
            )
    return found


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_loss_drift_is_reported_after_the_switch_within_the_bound_and_not_before(seed: int) -> None:
    found = alarms(agrawal_events(seed))
    for detector in ("adwin", "page_hinkley"):
        offsets = found.get((detector, "loss"), [])
        assert offsets, f"{detector} never alarmed"
        assert SWITCH <= offsets[0] <= SWITCH + WITHIN, (detector, offsets[:3])


def test_no_alarm_on_a_stream_without_drift() -> None:
    found = alarms(agrawal_events(4, function=0))  # the same concept before and after
    assert ("adwin", "loss") not in found and ("page_hinkley", "loss") not in found


def test_feature_drift_is_measured_against_the_reference_window() -> None:
    monitor = DriftMonitor("m", "m@1", "binary", DriftConfig(reference=1000, window=1000))
    reports = []
    for i in range(4000):
        shifted = i >= 2000  # price doubles and devices change in the third window
        x = {
            "price": (i % 100) * (2.0 if shifted else 1.0),
            "device": ("tablet" if shifted else "mobile") if i % 2 else "desktop",
        }
        reports += monitor.observe(x, i % 10 == 0, 0.1, T0 + timedelta(seconds=i), i)
    windows = [r for r in reports if r.trigger == "window" and r.signal.startswith("feature:")]
    by_end = {(r.signal, r.window_end_offset): r for r in windows}
    assert not by_end[("feature:price", 1999)].drift  # second window: same as reference
    assert (
        by_end[("feature:price", 2999)].drift and by_end[("feature:price", 2999)].detector == "psi"
    )
    device = by_end[("feature:device", 2999)]
    assert device.detector == "jensen_shannon" and device.drift
    assert device.statistic == pytest.approx(
        jensen_shannon({"mobile": 0.5, "desktop": 0.5}, {"__other__": 0.5, "desktop": 0.5})
    )
    assert device.window_start_offset == 2000 and device.window_end_offset == 2999


def test_psi_and_js_are_zero_for_equal_distributions_and_grow_with_the_shift() -> None:
    assert psi([0.25] * 4, [0.25] * 4) == 0
    assert 0 < psi([0.25] * 4, [0.3, 0.2, 0.25, 0.25]) < psi([0.25] * 4, [0.7, 0.1, 0.1, 0.1])
    assert jensen_shannon({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0


def test_multiclass_drift_watches_loss_confidence_and_calibration() -> None:
    """A class is not a number: the multiclass detectors watch the loss, the model's
    confidence (the probability of its class) and confidence minus correctness."""
    monitor = DriftMonitor("m", "m@1", "multiclass", DriftConfig(reference=100, window=100))
    proba = {"a": 0.7, "b": 0.3}  # always "a", with confidence 0.7; right every other time
    reports = []
    for i in range(300):
        label = "a" if i % 2 else "b"
        reports += monitor.observe({"x": float(i % 10)}, label, proba, T0 + timedelta(seconds=i), i)
    windows = [r for r in reports if r.trigger == "window"]
    assert len(windows) >= 2 * 4  # two windows after the reference, 4 detectors each
    last = {(r.detector, r.signal): r.mean for r in windows[-5:]}  # the signal's mean
    assert {signal for _, signal in last if signal != "feature:x"} == {
        "loss",
        "prediction",
        "calibration",
    }
    assert last["adwin", "prediction"] == pytest.approx(0.7)
    assert last["adwin", "calibration"] == pytest.approx(0.7 - 0.5)
    assert last["adwin", "loss"] == pytest.approx(-(math.log(0.7) + math.log(0.3)) / 2)


def test_drift_monitor_pickles_and_a_restored_copy_reports_the_same() -> None:
    """It goes into checkpoints: after events (reference fixed, windows open, ADWIN's
    histograms filled) a pickled copy goes on with the same reports, byte for byte."""
    events = agrawal_events(5, n=6_000)
    monitor = DriftMonitor("m", "m@1", "binary", DriftConfig())

    def feed(target: DriftMonitor, part: list[InputEvent]) -> list[str]:
        return [
            r.model_dump_json()
            for e in part
            for r in target.observe(dict(e.features), e.label, 0.3, e.ts, int(e.event_id[1:]))
        ]

    feed(monitor, events[:3_500])
    copy = pickle.loads(pickle.dumps(monitor))
    assert feed(copy, events[3_500:]) == feed(monitor, events[3_500:])


def test_drift_state_does_not_grow_with_the_stream() -> None:
    """The reference is fixed after `reference` events, windows are counters over fixed
    bins and categories (others fold into one), and ADWIN keeps an exponential
    histogram of at most max_buckets (5) buckets per power of 2 of its width: ten times
    more events add a few buckets (~2 KB pickled), not ten times the state."""
    monitor = DriftMonitor("m", "m@1", "binary", DriftConfig())
    sizes = []
    for i in range(100_000):
        x = {"price": float(i % 97), "device": f"d{i % 300}"}  # 300 devices > 50 kept
        monitor.observe(x, i % 10 == 0, 0.1, T0 + timedelta(seconds=i), i)
        if i + 1 in (10_000, 100_000):
            sizes.append(len(pickle.dumps(monitor)))
    assert len(monitor.expected_categorical["device"]) == 50 + 1  # the top 50 and __other__
    assert sizes[1] - sizes[0] < 4_000, sizes
