"""The Prometheus assets, checked by Debian's promtool, and a real Prometheus server
scraping a running worker (both installed by `make test`: deploy/prometheus/install.sh)."""

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.cli.replay import dataset_events, encode
from tests.paths import PROJECT_DIR
from tests.ports import free_port

DEPLOY = PROJECT_DIR / "deploy" / "prometheus"
BIN = PROJECT_DIR / ".cache" / "prometheus" / "usr" / "bin"


@pytest.fixture(scope="module")
def tools() -> Path:
    if not (BIN / "promtool").exists():
        pytest.fail(
            f"{BIN}/promtool is missing: run `make test` (it installs Debian's prometheus "
            "package there) or deploy/prometheus/install.sh",
            pytrace=False,
        )
    return BIN


def promtool(tools: Path, *args: str, stdin: bytes | None = None) -> str:
    done = subprocess.run(
        [str(tools / "promtool"), *args],
        cwd=DEPLOY,
        input=stdin,
        capture_output=True,
        timeout=60,
    )
    output = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, output
    return output


def test_rules_and_config_pass_promtool(tools: Path) -> None:
    # promtool finds every alert the file declares (none dropped as malformed).
    groups = yaml.safe_load((DEPLOY / "rules.yml").read_text())["groups"]
    declared = sum(len(group["rules"]) for group in groups)
    assert declared >= 11  # ten before the broker-outage alert
    assert f"SUCCESS: {declared} rules found" in promtool(tools, "check", "rules", "rules.yml")
    assert "SUCCESS" in promtool(tools, "test", "rules", "rules_test.yml")
    assert "SUCCESS" in promtool(tools, "check", "config", "prometheus.yml")


def test_prometheus_scrapes_a_worker(tools: Path, make_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = make_env(metrics_every_events=100)
    worker = env.start_worker()
    events = list(dataset_events("phishing", limit=400, model=None, seed=1))
    env.produce([encode(e) for e in events])
    env.read(env.settings.predictions_topic, len(events))
    scrape = urllib.request.urlopen(
        f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=5
    ).read()
    promtool(tools, "check", "metrics", stdin=scrape)  # exposition format and naming lint

    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{DEPLOY / 'rules.yml'}']\n"
        "scrape_configs:\n"
        "  - job_name: riverrun\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{worker.metrics_port}']}}]\n"
    )
    server = subprocess.Popen(
        [
            str(tools / "prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=(tmp_path / "prometheus.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        query = urllib.parse.quote('riverrun_predictions_total{job="riverrun", model="logreg"}')
        deadline = time.monotonic() + 60
        result: list[dict[str, Any]] = []  # Prometheus' instant vector: one dict per series
        while time.monotonic() < deadline and not result:
            time.sleep(1)
            assert server.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                url = f"http://127.0.0.1:{port}/api/v1/query?query={query}"
                result = json.loads(urllib.request.urlopen(url, timeout=5).read())["data"]["result"]
            except OSError:
                continue  # not listening yet
        assert result, "Prometheus never returned the worker's series"
        assert float(result[0]["value"][1]) == len(events)
        rules = json.loads(
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=5).read()
        )
        loaded = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
        assert "RiverrunConceptDrift" in loaded and "RiverrunNoInput" in loaded
    finally:
        server.terminate()
        server.wait(timeout=30)
