"""The public API: an App of the user's own factories, their versions and their mistakes."""

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from river import linear_model, preprocessing, tree

import riverrun
from online_models import Learner
from online_models.learning.checkpoint import (
    CheckpointRefused,
    Refusal,
    Replica,
    encode_checkpoint,
    gather,
    restore,
)
from online_models.models.registry import ModelError, resolve

FACTORY = """
from river import compose, linear_model, preprocessing

import riverrun

app = riverrun.App()


def with_ratio(x):
    return {**x, "ratio": x["a"] / (1 + abs(x["b"]))}


@app.model("mine", task="binary")
def mine(lr: float = 0.1):
    from river import optim

    features = compose.FuncTransformer(with_ratio)
    return features | preprocessing.StandardScaler() | linear_model.LogisticRegression(optim.SGD(lr))
"""


def user_module(tmp_path: Path, name: str, source: str) -> Any:
    """Import `source` as the user's module `name` (a fresh import each time)."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    sys.path.insert(0, str(tmp_path))
    try:
        sys.modules.pop(name, None)
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(tmp_path))


def test_a_factory_is_registered_with_its_signature_defaults() -> None:
    app = riverrun.App()

    @app.model("ctr_adam", task="binary", beta=0.5)
    def ctr_adam(lr: float = 0.01, beta: float = 0.9) -> Any:
        return preprocessing.StandardScaler() | linear_model.LogisticRegression()

    spec = app.models["ctr_adam"]
    assert (spec.name, spec.task, dict(spec.params)) == (
        "ctr_adam",
        "binary",
        {"lr": 0.01, "beta": 0.5},
    )
    assert spec.with_params(lr=0.2).params == {"lr": 0.2, "beta": 0.5}
    assert ctr_adam() is not None  # the decorator returns the factory itself


def test_the_version_follows_the_code_of_the_factory(tmp_path: Path) -> None:
    first = user_module(tmp_path, "team_models_a", FACTORY).app.models["mine"]
    same = user_module(tmp_path, "team_models_a", FACTORY).app.models["mine"]
    assert first.version == same.version  # the same code, the same version
    edited = FACTORY.replace("optim.SGD(lr)", "optim.Adam(lr)")
    changed = user_module(tmp_path, "team_models_a", edited).app.models["mine"]
    assert changed.version != first.version
    assert first.with_params(lr=0.2).version != first.version


def test_the_version_follows_the_feature_functions_in_the_pipeline(tmp_path: Path) -> None:
    """Feature engineering lives in a FuncTransformer: editing its function is a new model."""
    first = user_module(tmp_path, "team_models_b", FACTORY).app.models["mine"].version
    edited = FACTORY.replace('x["a"] / (1 + abs(x["b"]))', 'x["a"] * x["b"]')
    changed = user_module(tmp_path, "team_models_b", edited).app.models["mine"]
    assert changed.version != first


def test_versions_are_the_same_in_every_process() -> None:
    """Sets and dicts in parameters are hashed in a fixed order, whatever the hash seed."""
    code = "from riverrun.builtin import app; print([s.version for s in app.models.values()])"
    printed = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(printed) == 1 and "clicks@" in printed.pop()


def test_a_pinned_version_is_the_users_and_says_when_parameters_differ() -> None:
    app = riverrun.App()

    @app.model("tree", task="binary", version="2026-11")
    def tree_model(grace_period: int = 200) -> Any:
        return tree.HoeffdingTreeClassifier(grace_period=grace_period)

    spec = app.models["tree"]
    assert spec.version == "tree@2026-11"
    assert spec.with_params(grace_period=200).version == "tree@2026-11"
    assert spec.with_params(grace_period=50).version.startswith("tree@2026-11+")


def test_a_checkpoint_of_changed_code_is_refused_as_incompatible(tmp_path: Path) -> None:
    old = user_module(tmp_path, "team_models_c", FACTORY).app.models["mine"]
    learner = Learner(["mine"], registry={"mine": old})
    replica = Replica("g", "events", 0, "mine")
    records = encode_checkpoint(
        learner.models["mine"], replica, key=b"k", next_offset=0, sequence=0
    )
    checkpoint = gather(value for _, value in records)[0][0]
    assert restore(checkpoint, replica, old, key=b"k").version == old.version
    new = user_module(tmp_path, "team_models_c", FACTORY.replace("0.1", "0.2")).app.models["mine"]
    with pytest.raises(CheckpointRefused) as refused:
        restore(checkpoint, replica, new, key=b"k")
    assert refused.value.reason is Refusal.INCOMPATIBLE


def test_apps_include_each_other_and_a_name_twice_is_one_sentence() -> None:
    app = riverrun.App(include=[riverrun.builtin.app])
    assert {"logreg", "ctr", "clicks"} <= set(app.models)
    with pytest.raises(ModelError, match=r"^model name 'logreg' is registered twice \(.*\); give"):

        @app.model("logreg", task="binary")
        def logreg() -> Any:
            return linear_model.LogisticRegression()


@pytest.mark.parametrize(
    ("task", "build", "message"),
    [
        ("binary", lambda: {"not": "a model"}, r"returned dict, not a River estimator"),
        (
            "binary",
            lambda: preprocessing.StandardScaler() | linear_model.LinearRegression(),
            r"task='binary' but its model ends with LinearRegression, which is not a classifier",
        ),
        (
            "regression",
            lambda: linear_model.LogisticRegression(),
            r"task='regression' but its model ends with LogisticRegression, which is not a regressor",
        ),
        (
            "multiclass",
            lambda: linear_model.LogisticRegression(),
            r"only tells two classes apart; wrap it in river.multiclass.OneVsRestClassifier",
        ),
        ("binary", lambda: 1 / 0, r"failed to build its model \(ZeroDivisionError"),
    ],
)
def test_a_factory_that_cannot_serve_fails_with_one_sentence(
    task: str, build: Any, message: str
) -> None:
    app = riverrun.App()
    app.model("m", task=task)(build)  # type: ignore[arg-type]
    with pytest.raises(ModelError, match=message) as err:
        resolve(app.models, ["m"], {})
    assert "\n" not in str(err.value)


def test_registration_mistakes_are_refused_at_once() -> None:
    app = riverrun.App()
    with pytest.raises(ModelError, match=r"has task 'classification'; choose one of binary"):
        app.model("m", task="classification")(linear_model.LogisticRegression)  # type: ignore[arg-type]
    with pytest.raises(ModelError, match=r"parameters without a value \(lr\)"):

        @app.model("n", task="binary")
        def needs_lr(lr: float) -> Any:
            return linear_model.LogisticRegression()


def test_resolve_names_the_unknown_model_and_suggests_one() -> None:
    with pytest.raises(ModelError, match=r"no model named 'lgreg' \(did you mean 'logreg'\?\)"):
        resolve(riverrun.builtin.app.models, ["lgreg"], {})
    with pytest.raises(ModelError, match=r"no model named 'ctrr'"):
        resolve(riverrun.builtin.app.models, ["logreg"], {"ctrr": {"alpha": 1.0}})


def test_load_app_says_what_is_wrong_with_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the working directory is on the import path, as for uvicorn
    (tmp_path / "good_app.py").write_text("import riverrun\napp = riverrun.App()\nnot_app = 3\n")
    (tmp_path / "broken_app.py").write_text("import riverrun\nx = 1 / 0\n")
    assert isinstance(riverrun.load_app("good_app:app"), riverrun.App)
    cases = {
        "good_app": r"not of the form module:attribute",
        "no_such_pkg.models:app": r"cannot import 'no_such_pkg.models' .*no module named 'no_such_pkg'",
        "good_app:missing": r"module 'good_app' has no attribute 'missing'",
        "good_app:not_app": r"good_app:not_app is a int, not a riverrun.App",
        "broken_app:app": r"importing 'broken_app' failed at .*broken_app.py:2 \(ZeroDivisionError",
    }
    for path, message in cases.items():
        with pytest.raises(riverrun.AppError, match=message):
            riverrun.load_app(path)


def test_the_public_api_is_explicit() -> None:
    assert set(riverrun.__all__) >= {"App", "Settings", "InputEvent", "Prediction", "builtin"}
    assert all(hasattr(riverrun, name) for name in riverrun.__all__)
