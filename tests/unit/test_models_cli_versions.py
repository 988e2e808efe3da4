"""`riverrun models deploy --version` (a second pipeline of a model) and `riverrun models
retire --force` (the way out of a plan the code can no longer build), without a broker:
the control topic in memory, as in test_models_cli."""

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from online_models.models.registry import model_spec
from online_models.versions.plans import initial_plan
from schemas.control import VersionStatus
from streams.cli.main import main
from tests.builtin import MODELS
from tests.unit import test_models_cli as base
from tests.unit.test_unbuildable import other_code

topic = base.topic  # the fixture: the control topic in memory
CHAMPION = base.CHAMPION
TWO_PIPELINES = """
from river import linear_model, tree

import riverrun
from online_models.models.features import mixed_features

app = riverrun.App()


@app.model("logreg", task="binary")
def linear(lr: float = 0.05):
    return mixed_features() | linear_model.LogisticRegression()


@app.model("logreg", task="binary", version="2")
def hoeffding(grace_period: int = 50):
    return tree.HoeffdingTreeClassifier(grace_period=grace_period)
"""


@pytest.fixture
def two_pipelines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    (tmp_path / "h1_two_pipelines.py").write_text(textwrap.dedent(TWO_PIPELINES))
    monkeypatch.chdir(tmp_path)
    yield ["--app", "h1_two_pipelines:app"]
    sys.modules.pop("h1_two_pipelines", None)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_deploy_version_deploys_the_second_pipeline(
    topic: base.Topic, two_pipelines: list[str]
) -> None:
    done = invoke("models", "deploy", "logreg", "--version", "2", *two_pipelines)
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[-1] == "logreg: deployed logreg@2 as shadow (revision 2)"
    second = base.lifecycle_cli.control.version_of(topic.plan(), "logreg@2")
    assert (second.role, second.params) == ("shadow", {"grace_period": 50})
    done = invoke(
        "models",
        "deploy",
        "logreg",
        "--version",
        "2",
        "--params",
        '{"grace_period": 20}',
        *two_pipelines,
    )
    assert done.exit_code == 0, done.output
    assert "deployed logreg@2+" in done.output  # a pinned version with other parameters
    done = invoke("models", "deploy", "logreg", "--version", "3", *two_pipelines)
    assert done.exit_code == 2
    assert "the app registers no factory of 'logreg' with version '3' (it registers '2')" in (
        done.output
    )
    done = invoke("models", "deploy", "logreg", *two_pipelines)
    assert done.exit_code == 2 and "pass --params JSON" in done.output
    assert "Traceback" not in done.output


def test_list_says_cannot_build_and_retire_force_recovers(topic: base.Topic) -> None:
    former = model_spec("logreg", "binary", other_code, dict(MODELS["logreg"].params))
    topic.write(None, [initial_plan(former, changed_by="worker (partition 0)")])
    reason = "this worker's code builds ..."
    topic.report(
        0,
        VersionStatus(
            version=CHAMPION,
            role="champion",
            learning=True,
            updates=5,
            labelled=0,
            loss=None,
            champion_loss=None,
            served=5,
        ),
        unbuildable={former.version: reason},
        serving=CHAMPION,
    )
    listed = base.ok("models", "list", "logreg").output
    assert f"  cannot build {former.version}: the app's code builds {CHAMPION}" in listed
    assert f"`riverrun models retire --force {former.version}`" in listed
    assert f"  cannot build {former.version} on partition(s) 0: {reason}" in listed
    assert f"  serving in its place there: {CHAMPION}" in listed

    done = base.refused("models", "retire", former.version)
    assert "retire it with --force" in done.output
    done = base.ok("models", "retire", "--force", former.version)
    assert done.output == (
        f"logreg: retired {former.version} by force ({CHAMPION} is the champion now) (revision 2)\n"
    )
    plan = topic.plan()
    assert [(v.version, v.role) for v in plan.versions] == [(CHAMPION, "champion")]
    assert plan.signature  # signed like every plan change
