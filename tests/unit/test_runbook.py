"""The operations pages keep up with the code: every alert of deploy/prometheus/rules.yml
has its runbook section on docs/operations/alerts.md, and every metric a worker exports
has its row on docs/operations/metrics.md. An alert or a metric added without its
documentation fails here."""

import re
from pathlib import Path

import yaml

from streams.runtime.metrics import WorkerMetrics

PROJECT = Path(__file__).resolve().parents[2]
RULES = PROJECT / "deploy" / "prometheus" / "rules.yml"
ALERTS_PAGE = PROJECT / "docs" / "operations" / "alerts.md"
METRICS_PAGE = PROJECT / "docs" / "operations" / "metrics.md"


def alert_names() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    return [
        rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule
    ]


def page_sections(page: Path) -> list[str]:
    return re.findall(r"^## (\S+)\s*$", page.read_text(), flags=re.MULTILINE)


def test_every_alert_has_a_runbook_section() -> None:
    alerts = alert_names()
    # The shipped rules: drift, breaker, rollback, quality, dead letters, lag, input,
    # checkpoints, snapshots, broker (twelve when this test was written).
    assert len(alerts) >= 12
    sections = page_sections(ALERTS_PAGE)
    missing = [name for name in alerts if name not in sections]
    assert not missing, f"alerts without a section on {ALERTS_PAGE.name}: {missing}"


def test_no_runbook_section_for_an_alert_that_does_not_exist() -> None:
    stale = [name for name in page_sections(ALERTS_PAGE) if name.startswith("Riverrun")]
    assert set(stale) <= set(alert_names()), sorted(set(stale) - set(alert_names()))


def test_each_runbook_section_says_what_it_means_how_to_confirm_and_what_to_do() -> None:
    text = ALERTS_PAGE.read_text()
    for name in alert_names():
        section = text.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
        for part in ("**What it means.**", "**Confirm.**", "**What to do.**"):
            assert part in section, f"{name}: no {part}"


def test_every_exported_metric_has_a_row_on_the_metrics_page() -> None:
    exported = set()
    for family in WorkerMetrics().registry.collect():
        # prometheus_client names a counter's family without its `_total` sample suffix.
        exported.add(family.name + "_total" if family.type == "counter" else family.name)
    rows = set(re.findall(r"^\| `(riverrun_[a-z_]+)` \|", METRICS_PAGE.read_text(), re.MULTILINE))
    assert len(exported) > 40
    assert not exported - rows, f"undocumented metrics: {sorted(exported - rows)}"
    assert not rows - exported, f"documented metrics no worker exports: {sorted(rows - exported)}"
