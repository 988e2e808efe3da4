"""Delayed feedback: predict at impression time, learn when the label is known.

An impression is scored at once (click model, and one propensity model per configured
product) with its features plus the visitor's activity features as of the impression's
event time. It stays pending. A click inside the click window makes it a positive for
the click model, learnt at once; when the event-time watermark passes the end of the
window without one, it is learnt as a negative. Conversions label the propensity models
the same way over the conversion window. Windows close on event time, never wall-clock
time: the watermark is the latest event time seen in the partition minus an allowed
lateness, so replaying the same events gives the same labels.

Policies (the docs, Guides > Delayed feedback: docs/guides/delayed-feedback.md):
- a click for an impression that is unknown, already expired, or outside its window is a
  *late positive*: counted, not learnt (the negative already learnt stays);
- a second click on the same impression is counted and ignored;
- a conversion labels every pending impression of the visitor whose conversion window
  contains it;
- negatives may be down-sampled at rate r (kept when a hash of impression id and model
  falls below r, so the choice is the same on every replay); predictions are then
  recalibrated: q = p / (p + (1 - p) / r).

State is bounded by the configuration, not by the stream's length: at most `max_pending`
pending impressions (beyond it the oldest one's open windows close at once, as
negatives: counted `evicted_impressions`), the activity of at most `max_visitors`
visitors (the least recently active is forgotten first: `forgotten_visitors`), each
visitor's activity within the longest activity window, labels held before their
impression within the lateness, and `CLOSED_KEPT` closed impression ids.
"""

import bisect
import heapq
import math
import zlib
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from online_models.learning.learner import LearningError, Rejection, ServedModel
from online_models.models.registry import ModelSpec
from online_models.quality.evaluation import EvaluationConfig
from schemas import ActivityEvent, ErrorType, MetricsReport, Prediction
from schemas.feedback import Click, Conversion, Impression, Outcome

HOUR = 3600.0
LABEL_TYPES = ("click", "conversion")
#: Closed impressions remembered, so that their late clicks are not held as early ones.
CLOSED_KEPT = 100_000
#: Join delays kept per label type for the report's quantiles.
DELAY_SAMPLE = 10_000


def _quantile(values: deque[float], q: float) -> float | None:
    """The q-quantile (nearest rank) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


#: What each input of the join may be.
FeedbackInput = Impression | Click | Conversion | ActivityEvent


@dataclass(frozen=True)
class JoinConfig:
    """How the join labels impressions and which models it serves."""

    click_window_seconds: float = 30 * 60.0
    conversion_window_seconds: float = 7 * 24 * HOUR
    lateness_seconds: float = 60.0
    ctr_model: str = "ctr"
    products: tuple[str, ...] = ()
    propensity_model: str = "ctr"
    negative_rate: float = 1.0
    activity_types: tuple[str, ...] = ("page_view", "search", "add_to_cart", "purchase")
    activity_hours: tuple[int, ...] = (1, 24, 168)
    report_every: int = 1000
    #: Pending impressions kept at most (~2.5 KB each with 18 features: ~1.2 GB at the
    #: cap): beyond it, the oldest one's open windows close at once, as negatives.
    max_pending: int = 500_000
    #: Visitors whose activity is kept at most (~0.4 KB each, plus ~0.1 KB an event);
    #: the least recently active is forgotten first (its next impression gets the
    #: features of a visitor without activity).
    max_visitors: int = 1_000_000

    @property
    def horizon_seconds(self) -> float:
        return max(self.activity_hours) * HOUR


def recalibrate(p: float, rate: float) -> float:
    """A probability learnt with negatives kept at `rate`, mapped back to the population.

    >>> recalibrate(0.5, 0.1)  # odds 1 with 1 negative in 10 kept: true odds 0.1
    0.09090909090909091
    """
    if rate >= 1.0:
        return p
    return p / (p + (1.0 - p) / rate)


def keeps_negative(impression_id: str, model: str, rate: float) -> bool:
    """Whether a negative is learnt under down-sampling at `rate` (same answer every time)."""
    if rate >= 1.0:
        return True
    return zlib.crc32(f"{model}|{impression_id}".encode()) / 2**32 < rate


class VisitorActivity:
    """One visitor's recent activity, sorted by event time."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.events: list[tuple[str, str | None]] = []  # (type, category), as `times`

    def add(self, ts: float, type_: str, category: str | None) -> None:
        i = bisect.bisect_right(self.times, ts)
        self.times.insert(i, ts)
        self.events.insert(i, (type_, category))

    def prune(self, before: float) -> None:
        i = bisect.bisect_left(self.times, before)
        if i:
            del self.times[:i], self.events[:i]

    def features(self, t: float, config: JoinConfig) -> tuple[dict[str, float], str]:
        """Aggregates over activity with event time <= t (nothing later: no leakage), and
        whether they are 'fresh', 'stale' (nothing in the longest window) or 'missing'."""
        end = bisect.bisect_right(self.times, t)
        out: dict[str, float] = {}
        for hours in config.activity_hours:
            start = bisect.bisect_right(self.times, t - hours * HOUR, 0, end)
            counts = dict.fromkeys(config.activity_types, 0)
            for type_, _ in self.events[start:end]:
                if type_ in counts:
                    counts[type_] += 1
            for type_, count in counts.items():
                out[f"activity_{type_}_{hours}h"] = float(count)
        horizon = max(config.activity_hours)
        start = bisect.bisect_right(self.times, t - horizon * HOUR, 0, end)
        out["activity_categories"] = float(
            len({category for _, category in self.events[start:end] if category is not None})
        )
        if end == 0:
            out["activity_recency_hours"] = float(horizon)
            return out, "missing"
        recency = (t - self.times[end - 1]) / HOUR
        out["activity_recency_hours"] = min(recency, float(horizon))
        return out, "stale" if recency > horizon else "fresh"


def default_activity_features(config: JoinConfig) -> dict[str, float]:
    """The features of a visitor without any activity: zero counts, the longest window as
    recency."""
    return VisitorActivity().features(0.0, config)[0]


@dataclass
class Pending:
    """An impression waiting for its labels."""

    impression_id: str
    visitor: str
    ts: float
    when: datetime
    features: dict[str, Any]
    predictions: dict[str, tuple[float | None, str]]  # model -> (prediction as published, version)
    clicked: bool = False
    converted: set[str] = field(default_factory=set)
    #: Sequence numbers of its windows' entries in the expiry heap (an entry of an
    #: evicted impression, or of an earlier one with the same id, is none of these).
    windows: tuple[int, ...] = ()


@dataclass
class JoinStats:
    """Counters of the join since the start (restored with it)."""

    impressions: int = 0
    resolved: int = 0  # impressions whose click label is known
    click_positives: int = 0
    late_clicks: int = 0
    duplicate_clicks: int = 0
    conversions: int = 0
    conversions_joined: int = 0
    features_missing: int = 0
    features_stale: int = 0
    negatives_learnt: int = 0
    negatives_skipped: int = 0
    evicted_impressions: int = 0  # pending impressions closed early by `max_pending`
    forgotten_visitors: int = 0  # visitors' activity dropped by `max_visitors`
    predicted_sum: float = 0.0  # click model predictions of resolved impressions
    delays: list[tuple[str, float]] = field(default_factory=list)  # (label type, s) to drain
    #: The latest join delays per label type, for the quantiles in the join report.
    recent_delays: dict[str, deque[float]] = field(
        default_factory=lambda: {kind: deque(maxlen=DELAY_SAMPLE) for kind in LABEL_TYPES}
    )

    def values(self, pending: int) -> dict[str, float | None]:
        clicks = self.click_positives + self.late_clicks
        return {
            "impressions": float(self.impressions),
            "label_coverage": self.resolved / self.impressions if self.impressions else None,
            "click_positives": float(self.click_positives),
            "late_positives": float(self.late_clicks),
            "late_positive_rate": self.late_clicks / clicks if clicks else None,
            "observed_ctr": self.click_positives / self.resolved if self.resolved else None,
            "predicted_ctr": self.predicted_sum / self.resolved if self.resolved else None,
            "conversions": float(self.conversions),
            "conversion_join_rate": (
                self.conversions_joined / self.conversions if self.conversions else None
            ),
            "pending": float(pending),
            "evicted_impressions": float(self.evicted_impressions),
            "forgotten_visitors": float(self.forgotten_visitors),
            "features_missing_rate": (
                self.features_missing / self.impressions if self.impressions else None
            ),
            "features_stale_rate": (
                self.features_stale / self.impressions if self.impressions else None
            ),
            **{
                f"{kind}_delay_p{q}_seconds": _quantile(self.recent_delays[kind], q / 100)
                for kind in LABEL_TYPES
                for q in (50, 90)
            },
        }


def _seconds(when: datetime) -> float:
    return when.timestamp()


class FeedbackJoiner:
    """The join state of one partition: models, pending impressions, visitor activity."""

    def __init__(
        self,
        config: JoinConfig,
        evaluation: EvaluationConfig | None = None,
        *,
        registry: Mapping[str, ModelSpec],
        params: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        params = params or {}
        evaluation = evaluation or EvaluationConfig()
        self.config = config
        ctr = registry[config.ctr_model].with_params(**params.get(config.ctr_model, {}))
        self.models: dict[str, ServedModel] = {config.ctr_model: ServedModel(ctr, evaluation)}
        base = registry[config.propensity_model]
        for product in config.products:
            name = f"propensity_{product}"
            spec = base.renamed(name).with_params(**params.get(name, {}))
            self.models[name] = ServedModel(spec, evaluation)
        self.pending: dict[str, Pending] = {}
        self.by_visitor: dict[str, list[str]] = {}
        self.expiries: list[tuple[float, int, str, str]] = []  # (deadline, seq, kind, id)
        self.stale_expiries = 0  # entries of evicted impressions still in the heap
        self.sequence = 0
        self.activity: dict[str, VisitorActivity] = {}
        # Labels that arrived before their impression, held until the watermark passes
        # their event time (the impression, earlier in event time, may still arrive).
        self.early_clicks: dict[str, tuple[Click, float]] = {}
        self.early_conversions: dict[str, list[list[Any]]] = {}  # visitor -> [ts, product, joined]
        self.max_ts = -math.inf
        self.stats = JoinStats()
        #: Impressions whose click window closed lately (oldest first): a click for one
        #: is late at once.
        self.closed: dict[str, None] = {}
        self.reports: list[MetricsReport] = []
        self.since_report = 0

    # --- the public path ---------------------------------------------------------------
    @property
    def watermark(self) -> float:
        """Event time up to which every window is closed."""
        return self.max_ts - self.config.lateness_seconds

    def process(
        self, items: Sequence[FeedbackInput]
    ) -> list[list[Prediction | Outcome | Rejection]]:
        """The outputs each input caused, position for position: predictions for an
        impression, outcomes for a click or conversion, and for any input the negatives
        of windows its event time closed."""
        return [self.handle(item) for item in items]

    def handle(self, item: FeedbackInput) -> list[Prediction | Outcome | Rejection]:
        ts = _seconds(item.ts)
        self.max_ts = max(self.max_ts, ts)
        outputs: list[Prediction | Outcome | Rejection] = list(self.expire())
        if isinstance(item, Impression):
            outputs += self.impression(item, ts)
        elif isinstance(item, Click):
            outputs += self.click(item, ts)
        elif isinstance(item, Conversion):
            outputs += self.conversion(item, ts)
        else:
            self.add_activity(item, ts)
        return outputs

    def drain_reports(self) -> list[MetricsReport]:
        """Model and join reports that came due, in order."""
        reports, self.reports = self.reports, []
        return reports

    def drain_delays(self) -> list[tuple[str, float]]:
        delays, self.stats.delays = self.stats.delays, []
        return delays

    # --- inputs ------------------------------------------------------------------------
    def add_activity(self, event: ActivityEvent, ts: float) -> None:
        # Re-inserted last: the dict's order is the order of the visitors' latest activity.
        history = self.activity.pop(event.visitor, None)
        if history is None:
            history = VisitorActivity()
            if len(self.activity) >= self.config.max_visitors:
                del self.activity[next(iter(self.activity))]
                self.stats.forgotten_visitors += 1
        self.activity[event.visitor] = history
        history.add(ts, event.type, event.category)
        history.prune(self.max_ts - self.config.horizon_seconds - self.config.lateness_seconds)

    def impression(self, imp: Impression, ts: float) -> list[Prediction | Outcome | Rejection]:
        if imp.impression_id in self.pending:
            reason = (
                f"impression {imp.impression_id!r} is already pending: impression ids must "
                "be unique; fix the producer"
            )
            return [Rejection(ErrorType.INVALID_EVENT, reason)]
        history = self.activity.get(imp.visitor)
        if history is None:
            activity, status = default_activity_features(self.config), "missing"
        else:
            activity, status = history.features(ts, self.config)
        self.stats.features_missing += status == "missing"
        self.stats.features_stale += status == "stale"
        features: dict[str, Any] = {**imp.features, "item": imp.item, **activity}
        outputs: list[Prediction | Outcome | Rejection] = []
        predictions: dict[str, tuple[float | None, str]] = {}
        for name, model in self.models.items():
            try:
                p = model.predict(features)  # None: the model knows no class yet
                q = None if p is None else recalibrate(p, self.config.negative_rate)
            except LearningError as err:
                return [Rejection(err.error_type, err.reason)]
            predictions[name] = (q, model.version)
            prediction = Prediction.model_construct(
                event_id=imp.impression_id,
                key=imp.visitor,
                model=name,
                model_version=model.version,
                model_updates=model.updates,
                ts=imp.ts,
                prediction=q,
                label=None,
                learned=False,
                latency_seconds=0.0,
            )
            outputs.append(prediction)
        self.stats.impressions += 1
        while self.pending and len(self.pending) >= self.config.max_pending:
            outputs += self._evict()
        pending = Pending(imp.impression_id, imp.visitor, ts, imp.ts, features, predictions)
        self.pending[imp.impression_id] = pending
        windows = [
            self._expire_at(ts + self.config.click_window_seconds, "click", imp.impression_id)
        ]
        if self.config.products:
            self.by_visitor.setdefault(imp.visitor, []).append(imp.impression_id)
            windows.append(
                self._expire_at(
                    ts + self.config.conversion_window_seconds, "conversion", imp.impression_id
                )
            )
        pending.windows = tuple(windows)
        early = self.early_clicks.pop(imp.impression_id, None)
        if early is not None:
            outputs += self.click(*early)
        outputs += self._early_conversions(self.pending[imp.impression_id])
        return outputs

    def _early_conversions(self, pending: Pending) -> list[Prediction | Outcome | Rejection]:
        """Labels from held conversions of the visitor that fall in this impression's window."""
        outputs: list[Prediction | Outcome | Rejection] = []
        for held in self.early_conversions.get(pending.visitor, []):
            ts, product, joined = held
            delay = ts - pending.ts
            if product in pending.converted or not (
                0 <= delay <= self.config.conversion_window_seconds
            ):
                continue
            pending.converted.add(product)
            when = datetime.fromtimestamp(ts, UTC)
            name = f"propensity_{product}"
            outputs.append(self._label(pending, name, "conversion", True, when, delay))
            if not joined:
                held[2] = True
                self.stats.conversions_joined += 1
        return outputs

    def click(self, click: Click, ts: float) -> list[Prediction | Outcome | Rejection]:
        pending = self.pending.get(click.impression_id)
        if pending is not None and pending.clicked:
            self.stats.duplicate_clicks += 1
            return []
        if pending is None and ts >= self.watermark and click.impression_id not in self.closed:
            self.early_clicks[click.impression_id] = (click, ts)  # its impression may follow
            self._expire_at(ts, "early_click", click.impression_id)
            return []
        delay = ts - pending.ts if pending is not None else math.inf
        if pending is None or delay > self.config.click_window_seconds:
            self.stats.late_clicks += 1  # unknown, expired or outside its window
            return []
        pending.clicked = True
        self.stats.click_positives += 1
        return [self._label(pending, self.config.ctr_model, "click", True, click.ts, delay)]

    def conversion(self, conv: Conversion, ts: float) -> list[Prediction | Outcome | Rejection]:
        if conv.product not in self.config.products:
            return []
        self.stats.conversions += 1
        name = f"propensity_{conv.product}"
        outputs: list[Prediction | Outcome | Rejection] = []
        for impression_id in self.by_visitor.get(conv.visitor, []):
            pending = self.pending[impression_id]
            delay = ts - pending.ts
            if conv.product in pending.converted or not (
                0 <= delay <= self.config.conversion_window_seconds
            ):
                continue
            pending.converted.add(conv.product)
            outputs.append(self._label(pending, name, "conversion", True, conv.ts, delay))
        self.stats.conversions_joined += bool(outputs)
        if ts >= self.watermark:  # impressions before it may still arrive
            held = [ts, conv.product, bool(outputs)]
            self.early_conversions.setdefault(conv.visitor, []).append(held)
            self._expire_at(ts, "early_conversion", conv.visitor)
        return outputs

    # --- windows -------------------------------------------------------------------------
    def _expire_at(self, deadline: float, kind: str, impression_id: str) -> int:
        """Schedule an expiry; returns its sequence number."""
        self.sequence += 1
        heapq.heappush(self.expiries, (deadline, self.sequence, kind, impression_id))
        return self.sequence

    def _evict(self) -> list[Outcome]:
        """Close the open windows of the oldest pending impression now, as negatives
        resolved at the latest event time (the `max_pending` cap). A click for it later
        is a late positive; a conversion no longer finds it."""
        impression_id, pending = next(iter(self.pending.items()))
        del self.pending[impression_id]
        self.stats.evicted_impressions += 1
        end = datetime.fromtimestamp(self.max_ts, UTC)
        outputs: list[Outcome] = []
        if pending.ts + self.config.click_window_seconds >= self.watermark:  # still open
            self.stale_expiries += 1
            if not pending.clicked:
                outputs.append(self._label(pending, self.config.ctr_model, "click", False, end))
            self._close(impression_id)
        if self.config.products:
            self.stale_expiries += 1
            for product in self.config.products:
                if product not in pending.converted:
                    name = f"propensity_{product}"
                    outputs.append(self._label(pending, name, "conversion", False, end))
            self._unlink(pending)
        if self.stale_expiries > len(self.expiries) // 2:  # the heap is mostly dead entries
            self.expiries = [e for e in self.expiries if self._live(e)]
            heapq.heapify(self.expiries)
            self.stale_expiries = 0
        return outputs

    def _live(self, entry: tuple[float, int, str, str]) -> bool:
        """Whether an expiry entry belongs to a pending impression (or a held label)."""
        _, sequence, kind, key = entry
        if kind in ("early_click", "early_conversion"):
            return True
        pending = self.pending.get(key)
        return pending is not None and sequence in pending.windows

    def _close(self, impression_id: str) -> None:
        """Remember that its click window closed: a click for it is late at once."""
        self.closed[impression_id] = None
        if len(self.closed) > CLOSED_KEPT:
            del self.closed[next(iter(self.closed))]

    def _unlink(self, pending: Pending) -> None:
        ids = self.by_visitor[pending.visitor]
        ids.remove(pending.impression_id)
        if not ids:
            del self.by_visitor[pending.visitor]

    def expire(self) -> list[Outcome]:
        """Negatives of every window the watermark has passed, in deadline order."""
        outputs: list[Outcome] = []
        watermark = self.watermark
        while self.expiries and self.expiries[0][0] < watermark:
            deadline, sequence, kind, impression_id = heapq.heappop(self.expiries)
            if kind == "early_click":
                if self.early_clicks.pop(impression_id, None) is not None:
                    self.stats.late_clicks += 1  # its impression never came
                continue
            if kind == "early_conversion":  # `impression_id` is the visitor here
                held = self.early_conversions[impression_id]
                held.pop(next(i for i, h in enumerate(held) if h[0] == deadline))
                if not held:
                    del self.early_conversions[impression_id]
                continue
            if not self._live((deadline, sequence, kind, impression_id)):
                self.stale_expiries -= 1  # its impression was evicted: windows closed then
                continue
            pending = self.pending[impression_id]
            end = datetime.fromtimestamp(deadline, UTC)
            if kind == "click":
                if not pending.clicked:
                    outputs.append(self._label(pending, self.config.ctr_model, "click", False, end))
                self._close(impression_id)
                if not self.config.products:
                    del self.pending[impression_id]
                continue
            for product in self.config.products:
                if product not in pending.converted:
                    name = f"propensity_{product}"
                    outputs.append(self._label(pending, name, "conversion", False, end))
            del self.pending[impression_id]
            self._unlink(pending)
        return outputs

    def _label(
        self,
        pending: Pending,
        name: str,
        label_type: str,
        label: bool,
        resolved: datetime,
        delay: float | None = None,
    ) -> Outcome:
        model = self.models[name]
        q, version = pending.predictions[name]
        learn = label or keeps_negative(pending.impression_id, name, self.config.negative_rate)
        if learn:
            try:
                model.learn(pending.features, label)
            except LearningError:
                learn = False
        if not label:
            self.stats.negatives_learnt += learn
            self.stats.negatives_skipped += not learn
        if q is not None:  # a prediction of a model that knew nothing is not scored
            self.reports += model.evaluator.observe(
                label, q, pending.features, pending.visitor, resolved
            )
            if label_type == "click":
                self._resolved(q, resolved)
        if delay is not None:
            self.stats.delays.append((label_type, max(delay, 0.0)))
            self.stats.recent_delays[label_type].append(max(delay, 0.0))
        return Outcome(
            impression_id=pending.impression_id,
            visitor=pending.visitor,
            model=name,
            model_version=version,
            label_type=label_type,  # type: ignore[arg-type]
            label=label,  # type: ignore[arg-type]
            prediction=q,
            ts=pending.when,
            resolved_ts=resolved,
            delay_seconds=None if delay is None else max(delay, 0.0),
            learned=learn,
        )

    def _resolved(self, q: float, when: datetime) -> None:
        self.stats.resolved += 1
        self.stats.predicted_sum += q
        self.since_report += 1
        if self.since_report >= self.config.report_every:
            self.since_report = 0
            self.reports.append(self.report(when))

    def report(self, when: datetime) -> MetricsReport:
        """The join's own figures, as a report of the pseudo-model 'join'."""
        return MetricsReport(
            model="join",
            model_version="join@1",
            segment="all",
            trigger="events",
            ts=when,
            period_start=when,
            period_end=when,
            metrics=self.stats.values(len(self.pending)),
        )
