"""The Grafana dashboard queries only metrics a worker exports."""

import json
import re
from pathlib import Path

from streams.runtime.metrics import WorkerMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\briverrun_[a-z_]+\b")


def exported() -> set[str]:
    """Every sample name the worker's registry can expose (histogram and counter suffixes)."""
    names = set()
    for family in WorkerMetrics().registry.collect():
        names.add(family.name)
        for suffix in ("_total", "_bucket", "_count", "_sum", "_created"):
            names.add(family.name + suffix)
    return names


def test_every_dashboard_query_names_an_exported_metric() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "riverrun.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 10
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used and used <= exported(), sorted(used - exported())
    # Throughput, lag, latency, quality, drift and dead letters all have a panel.
    for metric in (
        "riverrun_predictions_total",
        "riverrun_consumer_lag_messages",
        "riverrun_predict_latency_seconds_bucket",
        "riverrun_model_quality",
        "riverrun_drift_detected_total",
        "riverrun_dead_letters_total",
    ):
        assert metric in used


def test_every_alert_rule_names_an_exported_metric() -> None:
    rules = (DEPLOY / "prometheus" / "rules.yml").read_text()
    used = set(METRIC.findall(rules))
    assert used and used <= exported(), sorted(used - exported())
