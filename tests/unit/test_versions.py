"""A model's version follows what its code does, not its text; two factories can be two
versions of one model."""

import importlib
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

USER_MODULE = """
from river import compose, linear_model, optim, preprocessing

import riverrun

app = riverrun.App()


def with_ratio(x):
    return {**x, "ratio": x["a"] / (1 + abs(x["b"]))}


@app.model("mine", task="binary")
def mine(lr: float = 0.1):
    scale = preprocessing.StandardScaler()
    return compose.FuncTransformer(with_ratio) | scale | linear_model.LogisticRegression(optim.SGD(lr))
"""


def user_app(directory: Path, source: str, keep: bool = False) -> Any:
    """The app of the user's module `team_models` of `source`, imported from a real file
    in `directory` (as the user's is: the version reads its source); `keep` leaves it
    imported (a checkpoint pickles its functions by name)."""
    directory.mkdir()
    (directory / "team_models.py").write_text(textwrap.dedent(source))
    sys.path.insert(0, str(directory))
    try:
        sys.modules.pop("team_models", None)
        return importlib.import_module("team_models").app
    finally:
        sys.path.remove(str(directory))
        if not keep:
            sys.modules.pop("team_models", None)


def version_of(tmp_path: Path, source: str) -> str:
    """The version of model 'mine' in a module of `source`."""
    return str(
        user_app(tmp_path / f"v{len(list(tmp_path.iterdir()))}", source).models["mine"].version
    )


SAME = {
    "a docstring on the factory": (
        "def mine(lr: float = 0.1):\n",
        'def mine(lr: float = 0.1):\n    """Clicks, with the ratio of a to b."""\n',
    ),
    "a comment in the factory": (
        "    scale = preprocessing.StandardScaler()\n",
        "    # scale what the ratio gives\n    scale = preprocessing.StandardScaler()  # z-scores\n",
    ),
    "the factory reformatted": (
        "    return compose.FuncTransformer(with_ratio) | scale | linear_model.LogisticRegression(optim.SGD(lr))\n",
        "    return (\n        compose.FuncTransformer(with_ratio)\n        | scale\n"
        "        | linear_model.LogisticRegression(optim.SGD(lr),)\n    )\n",
    ),
    "a docstring on the feature function": (
        "def with_ratio(x):\n",
        "def with_ratio(x):\n    '''The ratio of a to b (b's magnitude, plus one).'''\n",
    ),
    "a comment in the feature function": (
        '    return {**x, "ratio": x["a"] / (1 + abs(x["b"]))}\n',
        '    # one plus: b may be 0\n    return {**x, "ratio": x["a"] / (1 + abs(x["b"]))}  # ok\n',
    ),
    "the feature function reformatted": (
        '    return {**x, "ratio": x["a"] / (1 + abs(x["b"]))}\n',
        "    return {\n        **x,\n        'ratio': x['a'] / (1 + abs(x['b'])),\n    }\n",
    ),
    "a module docstring and comments between definitions": (
        "\nfrom river import",
        '"""The team\'s models."""\n# (keep them small)\nfrom river import',
    ),
}

DIFFERENT = {
    "a constant of the factory": (
        "preprocessing.StandardScaler()",
        "preprocessing.StandardScaler(with_std=False)",
    ),
    "an expression of the factory": ("optim.SGD(lr)", "optim.SGD(lr * 2)"),
    "a constant of the feature function": ("(1 + abs(", "(2 + abs("),
    "an expression of the feature function": ('x["a"] / (1', 'x["a"] * (1'),
    "1 for 1.0 in the feature function": ("(1 + abs(", "(1.0 + abs("),
}


@pytest.mark.parametrize("edit", list(SAME), ids=list(SAME))
def test_comments_docstrings_and_formatting_leave_the_version(tmp_path: Path, edit: str) -> None:
    old, new = SAME[edit]
    assert old in USER_MODULE
    edited = USER_MODULE.replace(old, new)
    assert version_of(tmp_path, edited) == version_of(tmp_path, USER_MODULE)


@pytest.mark.parametrize("edit", list(DIFFERENT), ids=list(DIFFERENT))
def test_a_changed_expression_makes_a_new_version(tmp_path: Path, edit: str) -> None:
    old, new = DIFFERENT[edit]
    assert old in USER_MODULE
    edited = USER_MODULE.replace(old, new)
    assert version_of(tmp_path, edited) != version_of(tmp_path, USER_MODULE)


def test_a_learnt_checkpoint_survives_a_docstring_edit(tmp_path: Path) -> None:
    """What the issue saw: a docstring edit discarded everything learnt on restart."""
    from online_models import Learner
    from online_models.learning.checkpoint import Replica, encode_checkpoint, gather, restore

    old = user_app(tmp_path / "old", USER_MODULE, keep=True).models["mine"]
    learner = Learner(["mine"], registry={"mine": old})
    replica = Replica("g", "events", 0, "mine")
    records = encode_checkpoint(
        learner.models["mine"], replica, key=b"k", next_offset=7, sequence=0
    )
    checkpoint = gather(value for _, value in records)[0][0]
    documented = USER_MODULE.replace("def with_ratio(x):\n", 'def with_ratio(x):\n    "Doc."\n')
    try:
        new = user_app(tmp_path / "new", documented, keep=True).models["mine"]
        assert new.version == old.version
        assert restore(checkpoint, replica, new, key=b"k").resume_offset == 7
    finally:
        sys.modules.pop("team_models", None)


def test_the_syntax_hashed_is_the_same_in_every_supported_python() -> None:
    """3.12.1 pads a format spec with an empty text part that 3.11 and 3.13 do not have:
    left out, as are empty fields a newer Python adds (the same hashes in 3.11-3.13)."""
    from online_models.models.registry import _syntax

    assert "''" not in _syntax('f"{x:<{width}}"')
    assert _syntax('f"a" f"{x}" "b"') == _syntax('f"a{x}b"')
    assert '"type_params"' not in _syntax("def f(x): return x")  # [] from 3.12 on


def test_a_checkpoint_of_the_source_text_hash_restores_while_the_source_is_unchanged(
    tmp_path: Path,
) -> None:
    """Upgrading riverrun must not discard what was learnt: a checkpoint written under
    the version 0.1.0 gave (a hash of the source text) restores into the same source; an
    edited source no longer matches that old hash, so it is refused as before."""
    from dataclasses import replace

    from online_models import Learner
    from online_models.learning.checkpoint import (
        CheckpointRefused,
        Replica,
        encode_checkpoint,
        gather,
        restore,
    )

    spec = user_app(tmp_path / "old", USER_MODULE, keep=True).models["mine"]
    try:
        legacy = spec.legacy_version
        assert legacy is not None and legacy != spec.version
        # What 0.1.0 wrote: the same model under its source-text version.
        as_written = replace(spec, pinned_version=legacy.partition("@")[2])
        learner = Learner(["mine"], registry={"mine": as_written})
        replica = Replica("g", "events", 0, "mine")
        records = encode_checkpoint(
            learner.models["mine"], replica, key=b"k", next_offset=9, sequence=0
        )
        checkpoint = gather(value for _, value in records)[0][0]
        assert restore(checkpoint, replica, spec, key=b"k").resume_offset == 9
        edited = USER_MODULE.replace("(1 + abs(", "(2 + abs(")
        changed = user_app(tmp_path / "new", edited, keep=True).models["mine"]
        with pytest.raises(CheckpointRefused):
            restore(checkpoint, replica, changed, key=b"k")
    finally:
        sys.modules.pop("team_models", None)


def test_a_plan_naming_the_source_text_hash_is_built_under_that_name(tmp_path: Path) -> None:
    """A plan written before the upgrade names the old hash: the same code builds it
    (under that name, so its checkpoints and statuses keep it), its replica is the
    model's own; a version whose code changed is not built."""
    from online_models.versions.lifecycle import ModelGroup

    spec = user_app(tmp_path / "old", USER_MODULE).models["mine"]
    legacy = spec.legacy_version
    assert legacy is not None
    built = spec.building(legacy, {})
    assert built is not None and built.version == legacy
    group = ModelGroup("mine", spec, lambda s: None)  # type: ignore[arg-type, return-value]
    assert group.replica_name(legacy) == "mine"
    assert group.replica_name("mine@00000000") == "mine@00000000"
    assert spec.building("mine@00000000", {}) is None
