"""riverrun as a user gets it: the wheel, installed into a fresh virtual environment, run
from the user's own directory with the user's own models, against the test broker.

Nothing may be written into the installed package: every file of it is hashed before and
after the commands ran.
"""

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from schemas import ClassPrediction, MetricsReport, decode_prediction
from tests.paths import PROJECT_DIR
from tests.ports import free_port

#: The user's own module: a multiclass pipeline riverrun does not ship, with its feature
#: engineering inside the pipeline.
TEAM_MODELS = """
import riverrun
from river import compose, preprocessing, tree

app = riverrun.App()


def with_brightness(x):
    colours = ("rawred-mean", "rawgreen-mean", "rawblue-mean")
    return {**x, "brightness": sum(x[c] for c in colours) / 3}


@app.model("regions", task="multiclass")
def regions(grace_period: int = 50):
    return (
        compose.FuncTransformer(with_brightness)
        | preprocessing.StandardScaler()
        | tree.HoeffdingTreeClassifier(grace_period=grace_period)
    )
"""


@dataclass
class Installed:
    """riverrun installed from its wheel into a venv of its own."""

    venv: Path
    packages: list[Path]  # the installed package directories

    @property
    def riverrun(self) -> str:
        return str(self.venv / "bin" / "riverrun")

    def fingerprint(self) -> dict[str, str]:
        """Every file of the installed packages and its hash."""
        return {
            str(path): hashlib.sha256(path.read_bytes()).hexdigest()
            for package in self.packages
            for path in sorted(package.rglob("*"))
            if path.is_file()
        }


def run(*args: str, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)  # type: ignore[call-overload]
    if check and done.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}",
            pytrace=False,
        )
    return done  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "-w",
        str(root / "dist"),
        str(PROJECT_DIR),
    )
    (wheel,) = (root / "dist").glob("riverrun-*.whl")
    venv = root / "venv"
    run(sys.executable, "-m", "venv", str(venv))
    run(
        str(venv / "bin" / "pip"),
        "install",
        "--quiet",
        "-c",
        str(PROJECT_DIR / "constraints.txt"),
        str(wheel),
    )
    code = "import riverrun, pathlib; print(pathlib.Path(riverrun.__file__).parent.parent)"
    site = run(str(venv / "bin" / "python"), "-c", code, cwd=root).stdout.strip()
    packages = [Path(site) / name for name in ("riverrun", "streams", "online_models", "schemas")]
    assert all(p.is_dir() for p in packages) and str(PROJECT_DIR) not in site
    return Installed(venv, packages)


@pytest.fixture
def team(tmp_path: Path) -> Path:
    """The user's project directory, with their models."""
    directory = tmp_path / "team"
    directory.mkdir()
    (directory / "teammodels.py").write_text(textwrap.dedent(TEAM_MODELS))
    return directory


def user_env(env: object, **changes: str) -> dict[str, str]:
    """The test's settings as a user's environment: nothing of the checkout, state in the
    default places (the working directory's .riverrun)."""
    chosen = {k: v for k, v in env.env.items() if k.startswith("RIVERRUN_")}  # type: ignore[attr-defined]
    chosen.pop("RIVERRUN_DATA_DIR", None)
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    return {**base, **chosen, **changes}


@pytest.fixture
def worker(installed: Installed, team: Path, make_env) -> Iterator[tuple[object, dict[str, str]]]:  # type: ignore[no-untyped-def]
    env = make_env(metrics_every_events=500)
    environment = user_env(env)
    log = (team / "worker.log").open("wb")
    process = subprocess.Popen(
        [installed.riverrun, "worker", "--app", "teammodels:app"],
        cwd=team,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    yield env, environment
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
        log.close()
        assert code == 0, (team / "worker.log").read_text()[-3000:]


def test_a_user_app_is_served_from_the_wheel_and_equals_its_offline_evaluation(
    installed: Installed, team: Path, worker
) -> None:  # type: ignore[no-untyped-def]
    env, environment = worker
    before = installed.fingerprint()
    riverrun = installed.riverrun

    # The same model of the user's app on the same dataset, streamed then evaluated offline.
    regions = ("--app", "teammodels:app", "--dataset", "segments", "--model", "regions")
    replayed = run(riverrun, "replay", *regions, "--quiet", cwd=team, env=environment)
    assert "replayed 2310 events" in replayed.stdout
    predictions = [
        decode_prediction(m.value) for m in env.read(env.settings.predictions_topic, 2310, 120)
    ]
    assert all(isinstance(p, ClassPrediction) for p in predictions) and len(predictions) == 2310
    assert {p.model_version for p in predictions} == {predictions[0].model_version}
    assert predictions[0].model_version.startswith("regions@")

    offline = run(
        riverrun, "evaluate", *regions, "--reports", "offline.jsonl", cwd=team, env=environment
    )
    expected = [
        MetricsReport.model_validate_json(line)
        for line in (team / "offline.jsonl").read_text().splitlines()
    ]
    assert len(expected) == 4  # 2,309 scored events, a report every 500
    streamed = [
        MetricsReport.model_validate_json(m.value)
        for m in env.read(env.settings.metrics_topic, len(expected), 60)
    ]
    for got, want in zip(streamed, expected, strict=True):
        assert (got.model_version, got.ts, got.confusion) == (
            want.model_version,
            want.ts,
            want.confusion,
        )
        for name, value in want.metrics.items():
            assert got.metrics[name] == pytest.approx(value, abs=1e-9), name
    assert "river" in offline.stdout  # River's progressive_val_score printed beside

    tailed = run(
        riverrun,
        "tail",
        env.settings.predictions_topic,
        "--from-beginning",
        "--limit",
        "2",
        cwd=team,
        env=environment,
    )
    assert [line.split("\t")[0] for line in tailed.stdout.splitlines()] == [
        "segments-00000000",
        "segments-00000001",
    ]
    report = run(riverrun, "report", "--app", "teammodels:app", cwd=team, env=environment)
    assert "2310 predictions" in report.stdout and (team / "riverrun-report.html").is_file()

    # State went to the working directory; the installed package is as pip left it.
    assert (team / ".riverrun" / "v1").is_dir()  # the Faust app's state directory
    assert installed.fingerprint() == before


def test_the_local_broker_starts_and_stops_from_the_wheel(installed: Installed, team: Path) -> None:
    """Its pom, server properties and log config ship in the package."""
    port = free_port()
    while port + 1 >= 65535:  # pragma: no cover - the controller listens on port + 1
        port = free_port()
    environment = {
        **{k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ},
        "RIVERRUN_KAFKA_PORT": str(port),
        "RIVERRUN_KAFKA_CACHE_DIR": str(team / "kafka"),
    }
    before = installed.fingerprint()
    try:
        up = run(installed.riverrun, "kafka", "up", cwd=team, env=environment)
        assert str(port) in up.stdout
        status = run(installed.riverrun, "kafka", "status", cwd=team, env=environment)
        assert status.returncode == 0, status.stdout
    finally:
        down = run(installed.riverrun, "kafka", "down", cwd=team, env=environment, check=False)
    assert down.returncode == 0, down.stdout + down.stderr
    stopped = run(installed.riverrun, "kafka", "status", cwd=team, env=environment, check=False)
    assert stopped.returncode == 1
    assert (team / "kafka" / "server.properties").is_file()
    assert installed.fingerprint() == before


def test_the_demo_runs_from_the_wheel(installed: Installed, team: Path, make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    environment = user_env(env)
    done = run(
        installed.riverrun,
        "demo",
        "--limit",
        "300",
        "--timeout",
        "60",
        cwd=team,
        env=environment,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: events in = predictions out + dead letters" in done.stdout, done.stdout
    assert (team / ".riverrun" / "demo" / "riverrun-report.html").is_file()


def test_the_wheel_carries_the_api_contracts_as_committed(installed: Installed) -> None:
    # The docs say a team finds the OpenAPI and AsyncAPI documents in the installed
    # package (and `riverrun schemas export` writes the same text): no checkout needed.
    schemas = next(p for p in installed.packages if p.name == "schemas")
    for name in ("openapi.json", "asyncapi.json"):
        shipped = schemas / name
        assert shipped.is_file(), f"the wheel has no schemas/{name}"
        assert shipped.read_bytes() == (PROJECT_DIR / "schemas" / name).read_bytes()
