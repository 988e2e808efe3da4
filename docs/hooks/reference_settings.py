"""The Settings reference: every field of `streams.settings.Settings`, by the sections
`riverrun config` prints them under, as one table per section.

A field without a description, or in no section, fails the build: the page is the
settings' documentation, so a setting nobody described would otherwise ship unexplained.
"""

import json
import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from mkdocs.exceptions import PluginError
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from streams import settings as settings_module

#: What a default computed when the settings are read (a path under $HOME) is shown as;
#: its description then says what it is.
DYNAMIC = "computed: see its description"

_CODE = re.compile(r"(`[^`]*`)")
_VARIABLE = re.compile(r"(\bRIVERRUN_[A-Z0-9_]*[A-Z0-9]\b)")


def render() -> str:
    """The tables of every setting, checked complete first."""
    by_section = checked_sections()
    lines: list[str] = []
    nested: dict[str, type[BaseModel]] = {}
    for title, fields in by_section.items():
        lines += [f"## {title}", "", *_table_head()]
        for name, field in fields.items():
            variable = settings_module.env_name(name)
            anchor = f'<span id="{variable}"></span>'
            lines.append(_row(f"{anchor}`{variable}`", field))
            nested.update(_models_in(field.annotation))
        lines.append("")
        for model in nested.values():
            lines += _model_table(model)
        nested.clear()
    return "\n".join(lines)


def checked_sections() -> dict[str, dict[str, FieldInfo]]:
    """`streams.settings.sections()`, once every field is in exactly one section and says
    what it does (and what a default computed at start-up is); else a PluginError naming
    the fields."""
    fields = settings_module.Settings.model_fields
    listed = [name for names in settings_module.SECTIONS.values() for name in names]
    problems = []
    unlisted = [settings_module.env_name(name) for name in fields if name not in listed]
    if unlisted:
        problems.append(f"in no section of streams.settings.SECTIONS: {', '.join(unlisted)}")
    twice = sorted({name for name in listed if listed.count(name) > 1})
    if twice:
        problems.append(f"in two sections: {', '.join(twice)}")
    unknown = [name for name in listed if name not in fields]
    if unknown:
        problems.append(f"SECTIONS names no such setting: {', '.join(unknown)}")
    undescribed = [settings_module.env_name(n) for n, f in fields.items() if not _described(f)]
    for model in {m for f in fields.values() for m in _models_in(f.annotation).values()}:
        undescribed += [
            f"{model.__name__}.{n}" for n, f in model.model_fields.items() if not _described(f)
        ]
    if undescribed:
        problems.append(f"without a description: {', '.join(undescribed)}")
    unexplained = [
        settings_module.env_name(name)
        for name, field in fields.items()
        if _default(field) == DYNAMIC and "default" not in (field.description or "").lower()
    ]
    if unexplained:
        problems.append(
            "a default computed at start-up that the description does not give (say "
            f"'Default: ...'): {', '.join(unexplained)}"
        )
    if problems:
        raise PluginError("settings reference: settings " + "; ".join(problems))
    return settings_module.sections()


def _described(field: FieldInfo) -> bool:
    return bool((field.description or "").strip())


def _table_head() -> list[str]:
    return ["| Variable | Type | Default | Allowed | Description |", "|---|---|---|---|---|"]


def _row(name: str, field: FieldInfo) -> str:
    cells = [
        name,
        type_name(field.annotation),
        _default(field),
        allowed(field.annotation, field.metadata),
        _markdown(field.description or ""),
    ]
    return "| " + " | ".join(cells) + " |"


def _model_table(model: type[BaseModel]) -> list[str]:
    """The fields of the objects a list setting holds (e.g. a push sink)."""
    title = _words(model.__name__)
    lines = [
        f"### {title[0].upper()}{title[1:]} objects",
        "",
        "Each item of the list is a JSON object with these fields (others are refused):",
        "",
        "| Field | Type | Default | Allowed | Description |",
        "|---|---|---|---|---|",
    ]
    lines += [_row(f"`{name}`", field) for name, field in model.model_fields.items()]
    return [*lines, ""]


def _models_in(annotation: Any) -> dict[str, type[BaseModel]]:
    """The pydantic models a setting's value is made of (a push sink of the list)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {annotation.__name__: annotation}
    found: dict[str, type[BaseModel]] = {}
    for arg in get_args(annotation):
        found.update(_models_in(arg))
    return found


def type_name(annotation: Any) -> str:
    """A setting's type in words: int, float, str, bool, path, secret, list of str, ...

    >>> type_name(list[int] | None), type_name(dict[str, Literal["a", "b"]])
    ('list of int', 'map of str to choice')
    """
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return type_name(args[0])
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(arg) for arg in args if arg is not type(None))
    if origin is Literal:
        return "choice"
    if origin is list:
        return f"list of {type_name(args[0]) if args else 'values'}"
    if origin is dict:
        return f"map of {type_name(args[0])} to {type_name(args[1])}" if args else "map"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        anchor = _words(annotation.__name__).replace(" ", "-")
        return f"[{_words(annotation.__name__)}](#{anchor}-objects)"
    words = {str: "str", int: "int", float: "float", bool: "bool", Path: "path"}
    if annotation is SecretStr:
        return "secret"
    if annotation is Any:
        return "object"
    return words.get(annotation, getattr(annotation, "__name__", str(annotation)))


def allowed(annotation: Any, metadata: list[Any]) -> str:
    """The values a setting takes beyond its type: choices, bounds, a pattern, a length.

    >>> from pydantic import PositiveInt
    >>> allowed(list[PositiveInt], [annotated_types.MinLen(1)])
    'each > 0; at least 1 item'
    """
    parts = list(_bounds(metadata))
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return "; ".join(filter(None, [allowed(args[0], list(args[1:])), *parts]))
    if origin in (Union, types.UnionType):
        chosen = [allowed(arg, []) for arg in args if arg is not type(None)]
        return "; ".join(filter(None, [*chosen, *parts]))
    if origin is Literal:
        return "; ".join(["one of " + ", ".join(f"`{arg}`" for arg in args), *parts])
    if origin is list and args:
        item = allowed(args[0], [])
        return "; ".join(filter(None, [f"each {item}" if item else "", *parts]))
    if origin is dict and args:
        value = allowed(args[1], [])
        return "; ".join(filter(None, [f"values: {value}" if value else "", *parts]))
    return "; ".join(parts)


def _bounds(metadata: list[Any]) -> Iterator[str]:
    for bound in metadata:
        if isinstance(bound, annotated_types.Gt):
            yield f"> {bound.gt}"
        elif isinstance(bound, annotated_types.Ge):
            yield f"≥ {bound.ge}"
        elif isinstance(bound, annotated_types.Lt):
            yield f"< {bound.lt}"
        elif isinstance(bound, annotated_types.Le):
            yield f"≤ {bound.le}"
        elif isinstance(bound, annotated_types.MinLen) and bound.min_length:
            yield f"at least {bound.min_length} item{'s' if bound.min_length > 1 else ''}"
        elif getattr(bound, "pattern", None):
            yield f"matches `{bound.pattern}`"


def _default(field: FieldInfo) -> str:
    """The default as it would be written in the environment; a secret's never."""
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        if not isinstance(value, list | dict | tuple):
            return DYNAMIC  # e.g. a path under the user's home: its description gives it
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, SecretStr) or "secret" in type_name(field.annotation):
        return "(secret)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list | dict | tuple):
        value = json.dumps(value)
    return f"`{value}`"


def _markdown(text: str) -> str:
    """A description in a table cell: variables as code, nothing read as HTML, emphasis
    or a column break (code spans are left as they are)."""
    pieces = []
    for piece in _CODE.split(" ".join(text.split())):
        if piece.startswith("`") and piece.endswith("`") and len(piece) > 1:
            pieces.append(piece.replace("|", "&#124;"))
            continue
        for part in _VARIABLE.split(piece):
            pieces.append(f"`{part}`" if _VARIABLE.fullmatch(part) else _escaped(part))
    return "".join(pieces)


def _escaped(text: str) -> str:
    """Plain text as Markdown shows it as written (`__other__` is not bold)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("|", "&#124;")
    return re.sub(r"([\\*_\[\]])", r"\\\1", text)


def _words(name: str) -> str:
    """A class name in words: PushSink -> push sink."""
    return re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower()
