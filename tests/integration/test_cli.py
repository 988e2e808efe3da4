"""The commands a user types, run as subprocesses against the real broker."""

import subprocess
import sys
from pathlib import Path

from schemas import InputEvent


def riverrun(env, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=env.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_replay_is_deterministic_and_tail_prints_it(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    for _ in range(2):
        done = riverrun(env, "replay", "--dataset", "clicks", "--limit", "100", "--quiet")
        assert done.returncode == 0, done.stderr
        assert "replayed 100 events" in done.stdout
    messages = env.read(env.settings.events_topic, 200)
    first = [m.value for m in messages[:100]]
    assert first == [m.value for m in messages[100:]]  # same ids, features, labels, times
    events = [InputEvent.model_validate_json(v) for v in first]
    assert [e.event_id for e in events] == [f"clicks-{i:08d}" for i in range(100)]

    tailed = riverrun(env, "tail", env.settings.events_topic, "--from-beginning", "--limit", "3")
    assert tailed.returncode == 0, tailed.stderr
    lines = tailed.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == [f"clicks-{i:08d}" for i in range(3)]


def test_replay_of_a_file_uses_its_label_column(make_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    path = tmp_path / "offers.csv"
    path.write_text("device,price,clicked\nmobile,0.5,1\ndesktop,2,0\n")
    done = riverrun(env, "replay", "--file", str(path), "--model", "linreg",
                    "--label-column", "clicked", "--quiet")  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = [
        InputEvent.model_validate_json(m.value) for m in env.read(env.settings.events_topic, 2)
    ]
    assert [(e.features, e.label) for e in events] == [
        ({"device": "mobile", "price": 0.5}, 1),
        ({"device": "desktop", "price": 2}, 0),
    ]


def test_demo_accounts_for_every_event_and_metric(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    done = riverrun(env, "demo", "--limit", "600", "--timeout", "60")
    assert done.returncode == 0, done.stdout + done.stderr
    # 600 phishing + 600 offers events, and one message of each of the 6 bad kinds.
    assert "events in          1206" in done.stdout
    assert "predictions out    1200" in done.stdout
    assert "dead letters       6" in done.stdout
    for metric in (
        "normalized_entropy",
        "auc_window",
        "lift_5_window",
        "f1",
        "baseline_mae_window",
        "period_predicted_total",
        "auc [device=__missing__]",
        "mae [device=mobile]",
    ):
        assert metric in done.stdout
    # With the demo's defaults (a report every 250 labelled events, segments by device):
    # phishing: 600 // 250 = 2 reports x 2 segments (all, device=__missing__);
    # offers: 2 days -> 2 count triggers + 1 day end, x 4 segments (all + 3 devices).
    assert (
        "metrics topic      16 reports; 16 of 16 identical to the offline evaluation" in done.stdout
    )
    assert (
        "OK: events in = predictions out + dead letters; streamed metrics = offline" in done.stdout
    )
    # The delayed-feedback scenario and the report (self-contained: charts inline).
    assert "OK: labels identical to the offline join" in done.stdout
    report = Path(done.stdout.split("throughput): ")[1].split()[0])
    page = report.read_text()
    assert page.count("data:image/png;base64,") >= 6 and "src='http" not in page


def test_worker_without_a_broker_says_what_to_do(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    env.env["RIVERRUN_BROKER"] = "127.0.0.1:1"
    done = riverrun(env, "worker", timeout=60)
    assert done.returncode != 0
    assert "check RIVERRUN_BROKER" in done.stderr
    assert "Traceback" not in done.stderr
