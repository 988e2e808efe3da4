"""The README's "Your own models" example is real code: written as the user's module,
loaded with --app's loader, built and served."""

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

import riverrun
from online_models import Learner
from online_models.models.registry import resolve
from schemas import ClassPrediction, InputEvent, Prediction
from schemas.input_event import Label
from tests.paths import PROJECT_DIR


def readme_example() -> str:
    readme = (PROJECT_DIR / "README.md").read_text()
    section = readme.split("## Your own models", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert blocks, "the README's Your own models section has no python example"
    return str(blocks[0])


def test_the_readme_example_is_an_app_that_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(readme_example())
    monkeypatch.chdir(tmp_path)
    app = riverrun.load_app("mypkg.models:app")
    assert {name: spec.task for name, spec in app.models.items()} == {
        "ctr_adam": "binary",
        "segment": "multiclass",
    }
    assert app.models["segment"].version == "segment@2026-12"
    specs = resolve(app.models, list(app.models), {"ctr_adam": {"lr": 0.05}})
    learner = Learner(list(specs), registry=specs)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    labelled: list[tuple[str, Label]] = [
        ("ctr_adam", True),
        ("ctr_adam", False),
        ("segment", "a"),
        ("segment", "b"),
    ]
    events = [
        InputEvent(
            event_id=f"e{i}",
            ts=t0,
            model=model,
            key="k",
            features={"price": float(i), "device": "mobile"},
            label=label,
        )
        for i, (model, label) in enumerate(labelled)
    ]
    outputs = learner.process(events)
    assert [type(o) for o in outputs] == [Prediction, Prediction, ClassPrediction, ClassPrediction]
    assert all(o.learned for o in outputs)  # type: ignore[union-attr]
