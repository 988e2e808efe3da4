"""The commands a user types, run as subprocesses against the real broker."""

import subprocess
from pathlib import Path

from schemas import InputEvent
from tests.integration.conftest import Env, replay_file, riverrun_cli


def riverrun(env: Env, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`riverrun ARGS` as a user runs it, given up to 5 minutes (a demo takes a while)."""
    return riverrun_cli(env, *args, timeout=timeout)


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
    done = replay_file(env, path, "linreg", "--label-column", "clicked", "--quiet")
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
    # 600 phishing, offers and segments events, and one message of each of the 6 bad kinds.
    assert "events in          1806" in done.stdout
    assert "predictions out    1800" in done.stdout
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
        "macro_f1",
        "accuracy [device=__missing__]",
    ):
        assert metric in done.stdout
    # With the demo's defaults (a report every 250 labelled events, segments by device):
    # phishing: 600 // 250 = 2 reports x 2 segments (all, device=__missing__);
    # offers: 2 days -> 2 count triggers + 1 day end, x 4 segments (all + 3 devices);
    # segments: 599 scored (not the first: no class known yet) // 250 = 2 x 2 segments.
    assert (
        "metrics topic      20 reports; 20 of 20 identical to the offline evaluation" in done.stdout
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


def test_an_app_that_cannot_serve_stops_the_worker_with_one_sentence(make_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    (tmp_path / "wrongtask.py").write_text(
        "import riverrun\nfrom river import linear_model\napp = riverrun.App()\n"
        "@app.model('spend', task='binary')\ndef spend():\n"
        "    return linear_model.LinearRegression()\n"
    )
    env.env["PYTHONPATH"] = str(tmp_path)
    cases = {
        ("--app", "nosuch.models:app"): "cannot import 'nosuch.models'",
        ("--app", "wrongtask:app"): "task='binary' but its model ends with LinearRegression",
        ("--app", "wrongtask:missing"): "module 'wrongtask' has no attribute 'missing'",
    }
    for args, message in cases.items():
        done = riverrun(env, "worker", *args, timeout=60)
        assert done.returncode != 0
        assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    env.env["RIVERRUN_APP"] = "wrongtask:app"  # the variable names the app as --app does
    done = riverrun(env, "worker", timeout=60)
    assert done.returncode != 0 and "task='binary'" in done.stderr, done.stderr


def test_a_misspelt_setting_stops_every_command_with_a_suggestion(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    env.env["RIVERRUN_CHECKPOINT_EVERY_EVENT"] = "100"
    for command in (["worker"], ["replay", "--dataset", "phishing"], ["kafka", "status"]):
        done = riverrun(env, *command, timeout=60)
        assert done.returncode != 0
        assert "did you mean RIVERRUN_CHECKPOINT_EVERY_EVENTS?" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
