"""Every setting, given a wrong value of each kind that applies to it, is refused with one
sentence naming its variable, what it got (a secret masked) and the form it wants.

The cases are made from `Settings.model_fields`, so a new setting is covered the day it is
added; a setting of a type the generator does not know fails `test_every_setting_is_covered`.
"""

import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import click
import pytest
from pydantic import BaseModel, SecretStr

from streams.cli.options import load_settings
from streams.settings import MASK, Settings, env_name

SECRET = "s3cr3t-never-shown"
#: Settings any text is a valid value of (names, topics, paths checked later, secrets).
FREE_FORM = (str, Path, SecretStr)


def bare(annotation: Any) -> tuple[Any, list[Any]]:
    """(the type without `| None` and Annotated, the bounds found on the way)."""
    metadata: list[Any] = []
    while True:
        origin, args = get_origin(annotation), get_args(annotation)
        if origin is Annotated:
            annotation, metadata = args[0], [*metadata, *args[1:]]
        elif origin in (Union, types.UnionType):
            (annotation,) = [arg for arg in args if arg is not type(None)]
        else:
            return annotation, metadata


def out_of_range(kind: type, metadata: list[Any]) -> list[str]:
    """Values just outside each bound."""
    step = 1 if kind is int else 0.5
    values: list[Any] = []
    for bound in metadata:
        limit: Any = getattr(bound, type(bound).__name__.lower(), None)  # Gt(gt=0).gt
        if isinstance(bound, annotated_types.Gt | annotated_types.Lt):
            values.append(limit)
        elif isinstance(bound, annotated_types.Ge):
            values.append(limit - step)
        elif isinstance(bound, annotated_types.Le):
            values.append(limit + step)
    return [str(value) for value in values]


def wrong_values(annotation: Any, metadata: list[Any]) -> list[tuple[str, str]]:
    """(kind, text) of every kind of mistake that applies to a setting of `annotation`."""
    kind, inner = bare(annotation)
    metadata = [*metadata, *inner]
    origin, args = get_origin(kind), get_args(kind)
    if kind is bool:
        return [("wrong type", "maybe")]
    if kind in (int, float):
        ranges = [("out of range", value) for value in out_of_range(kind, metadata)]
        return [("wrong type", "lots"), *ranges]
    if origin is Literal:
        return [("unknown choice", "zzz-not-a-choice")]
    if origin is dict:
        return [("malformed JSON", "{bad"), ("wrong type", "[1, 2]")]
    if isinstance(kind, type) and issubclass(kind, BaseModel):  # e.g. RIVERRUN_EVENT_MAPPING
        return [("malformed JSON", "{bad"), ("wrong type", "[1]"), ("missing field", "{}")]
    if origin is list:
        item, item_bounds = bare(args[0])
        cases = [("malformed JSON", "[1,")]
        if isinstance(item, type) and issubclass(item, BaseModel):
            return [*cases, ("wrong type", "[1]"), ("missing field", "[{}]")]
        if item in (int, float):
            cases.append(("wrong item type", "x,y"))
            cases += [("out of range", v) for v in out_of_range(item, item_bounds)]
        return cases
    return []


CASES = [
    pytest.param(name, kind, text, id=f"{name}-{kind}")
    for name, field in Settings.model_fields.items()
    for kind, text in wrong_values(field.annotation, list(field.metadata))
]


def has_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return any(has_secret(f.annotation) for f in annotation.model_fields.values())
    return any(has_secret(arg) for arg in get_args(annotation))


def refusal(monkeypatch: pytest.MonkeyPatch, **variables: str) -> str:
    """What `riverrun` says about these variables (it must refuse them)."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(click.ClickException) as err:
        load_settings()
    return err.value.format_message()


def test_every_setting_is_covered() -> None:
    """A new setting either gets wrong values here or takes any text."""
    for name, field in Settings.model_fields.items():
        kind, _ = bare(field.annotation)
        assert wrong_values(field.annotation, list(field.metadata)) or kind in FREE_FORM, (
            f"{name}: add its wrong values to wrong_values()"
        )


@pytest.mark.parametrize(("name", "kind", "text"), CASES)
def test_a_wrong_value_is_one_sentence_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, kind: str, text: str
) -> None:
    message = refusal(monkeypatch, **{env_name(name): text})
    assert "\n" not in message and "Traceback" not in message, message
    assert env_name(name) in message, message
    assert "it wants" in message, message
    if kind == "missing field":
        assert "has no 'name'" in message or "has no 'key'" in message, message
    elif has_secret(Settings.model_fields[name].annotation):
        assert MASK in message, message
    else:  # what it got: the text, or the item of it that is wrong
        shown = text if kind != "wrong item type" else text.split(",")[0]
        assert shown in message, message


@pytest.mark.parametrize(
    "name", [n for n, f in Settings.model_fields.items() if has_secret(f.annotation)]
)
def test_a_secret_is_never_shown(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Whatever else is wrong, the secrets set beside it are not in the message."""
    kind, _ = bare(Settings.model_fields[name].annotation)
    if kind is SecretStr:
        message = refusal(monkeypatch, **{env_name(name): SECRET, "RIVERRUN_BATCH_SIZE": "x"})
        assert "RIVERRUN_BATCH_SIZE" in message
    else:  # objects with a secret inside: wrong beside it, and malformed around it
        wrong = json.dumps([{"name": "a", "url": "ftp://x", "token": SECRET}])
        message = refusal(monkeypatch, **{env_name(name): wrong})
        assert "'ftp://x'" in message, message
        message = refusal(monkeypatch, **{env_name(name): wrong[:-2]})
        assert "not valid JSON" in message, message
    assert SECRET not in message, message


def test_lists_of_names_and_numbers_may_be_given_with_commas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RIVERRUN_MODELS", "fraud")
    monkeypatch.setenv("RIVERRUN_SEGMENT_FEATURES", " country, device ")
    monkeypatch.setenv("RIVERRUN_ACTIVITY_HOURS", "1,24")
    monkeypatch.setenv("RIVERRUN_ACTIVITY_TYPES", '["view", "buy"]')  # JSON still works
    monkeypatch.setenv("RIVERRUN_PRODUCTS", "")  # empty: the default, as if unset
    settings = load_settings()
    assert settings.models == ["fraud"]
    assert settings.segment_features == ["country", "device"]
    assert settings.activity_hours == [1, 24]
    assert settings.activity_types == ["view", "buy"]
    assert settings.products == []


def test_a_push_sink_without_a_field_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refusal(monkeypatch, RIVERRUN_PUSH_SINKS='[{"name": "crm"}]')
    assert message.startswith(
        "invalid settings: RIVERRUN_PUSH_SINKS[0] has no 'url': it wants an "
        "object with name and url"
    ), message


@pytest.mark.parametrize(
    ("variable", "value", "sentence"),
    [
        (
            "RIVERRUN_MODEL_PARAMS",
            "{bad",
            "RIVERRUN_MODEL_PARAMS is '{bad', not valid JSON (Expecting property name enclosed "
            "in double quotes: line 1 column 2 (char 1)): it wants a JSON object, e.g. "
            '{"ctr": {"alpha": 0.1}}',
        ),
        (
            "RIVERRUN_SEGMENT_FEATURES",
            '["country"',
            "RIVERRUN_SEGMENT_FEATURES is '[\"country\"', not valid JSON",
        ),
    ],
)
def test_riverrun_config_says_one_sentence_and_exits_1(
    tmp_path: Path, variable: str, value: str, sentence: str
) -> None:
    """As a user meets it: the command line, no traceback, exit status 1 (as every
    refused setting before)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), variable: value}
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli.main", "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"Error: invalid settings: {sentence}"), done.stderr
