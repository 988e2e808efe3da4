"""`riverrun config --app` lists the app's models: name, task, version, whether this worker
serves it and its parameters (RIVERRUN_MODEL_PARAMS applied)."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import riverrun
from streams.cli.main import main

USER_MODULE = """
import riverrun
from river import linear_model, preprocessing, tree

app = riverrun.App()


@app.model("fraud", task="binary")
def fraud(lr: float = 0.01):
    return preprocessing.StandardScaler() | linear_model.LogisticRegression()


@app.model("basket", task="regression")
def basket(grace_period: int = 200):
    return tree.HoeffdingTreeRegressor(grace_period=grace_period)


@app.model("broken", task="binary")
def broken(depth: int = 3):
    return tree.HoeffdingTreeClassifier(max_depth=depth)
"""


@pytest.fixture
def user_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> riverrun.App:
    package = tmp_path / "teampkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    for variable in ("RIVERRUN_MODELS", "RIVERRUN_MODEL_PARAMS", "RIVERRUN_BROKER"):
        monkeypatch.delenv(variable, raising=False)
    return riverrun.load_app("teampkg.models:app")


def models_listed(output: str) -> dict[str, list[str]]:
    """The rows under 'models of ...:', by model name (the header row under 'name')."""
    section = output.split("\nmodels of teampkg.models:app:\n", 1)[1]
    return {line.split()[0]: line.split(maxsplit=5)[1:] for line in section.splitlines()}


def test_config_with_an_app_lists_its_models(
    user_app: riverrun.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RIVERRUN_MODELS", "fraud,basket")
    monkeypatch.setenv("RIVERRUN_MODEL_PARAMS", '{"fraud": {"lr": 0.05}}')
    monkeypatch.setenv("RIVERRUN_MODEL_SCOPES", '{"basket": "partition"}')
    done = CliRunner().invoke(main, ["config", "--app", "teampkg.models:app"])
    assert done.exit_code == 0, done.output
    rows = models_listed(done.output)
    assert rows["name"] == ["task", "version", "scope", "served", "params"]
    fraud = user_app.models["fraud"].with_params(lr=0.05)  # the version a worker builds
    assert rows["fraud"] == ["binary", fraud.version, "global", "yes", json.dumps({"lr": 0.05})]
    basket = user_app.models["basket"]
    assert rows["basket"] == [
        "regression",
        basket.version,
        "partition",
        "yes",
        '{"grace_period": 200}',
    ]
    assert rows["broken"][3] == "no"  # registered, not served here
    assert len(rows) == 1 + len(user_app.models)


def test_config_says_which_served_model_cannot_be_built(
    user_app: riverrun.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RIVERRUN_MODEL_PARAMS", '{"broken": {"depth": "deep", "nope": 1}}')
    done = CliRunner().invoke(main, ["config", "--app", "teampkg.models:app"])
    assert done.exit_code == 1
    assert "broken" in models_listed(done.output)  # still listed
    assert "error: model 'broken'" in done.output and "Traceback" not in done.output


def test_config_without_an_app_lists_only_the_settings(user_app: riverrun.App) -> None:
    done = CliRunner().invoke(main, ["config"])
    assert done.exit_code == 0, done.output
    assert "models of" not in done.output
