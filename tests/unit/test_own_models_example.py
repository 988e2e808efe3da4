"""The example app of the docs' "Your own models" page (docs/models/index.md) is real
code: written as the user's module, loaded with --app's loader, built and served. (Every
python block of the site also runs as it is, in tests/unit/test_docs_examples.py; this
one is checked deeper.)"""

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


def the_pages_example() -> str:
    page = (PROJECT_DIR / "docs" / "models" / "index.md").read_text()
    section = page.split("## An app in your package", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert blocks, "the Your own models page's 'An app in your package' has no python example"
    return str(blocks[0])


def test_the_example_app_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(the_pages_example())
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
