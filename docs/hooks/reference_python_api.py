"""The Python API reference: one mkdocstrings block per name of `riverrun.__all__`, so a
new public name is documented the day it is exported.

A public name without a docstring fails the build: the API is what users import, and
everything else may change.
"""

import importlib
from collections.abc import Sequence
from pathlib import Path

import griffe
from mkdocs.exceptions import PluginError

PACKAGE = "riverrun"
#: Where the project's packages are (riverrun re-exports names of schemas, streams...).
PROJECT = Path(__file__).resolve().parents[2]


def render() -> str:
    """`::: riverrun.NAME` for each public name, checked documented first."""
    names = public_names(PACKAGE)
    check(PACKAGE, names)
    return "\n\n".join(f"::: {PACKAGE}.{name}" for name in names)


def public_names(package: str) -> list[str]:
    """The package's `__all__`, in its order."""
    return list(importlib.import_module(package).__all__)


def check(package: str, names: Sequence[str], search_paths: Sequence[Path] = (PROJECT,)) -> None:
    """A PluginError naming each of `names` without a docstring, as mkdocstrings sees it:
    griffe's reading of the source, through re-exports into other packages."""
    found = griffe.load(
        package,
        search_paths=list(search_paths),
        resolve_aliases=True,
        resolve_external=True,
    )
    missing = []
    for name in names:
        try:
            docstring = found[name].docstring
        except (KeyError, griffe.AliasResolutionError):
            missing.append(f"{name} (not found in the source)")
            continue
        if docstring is None or not docstring.value.strip():
            missing.append(name)
    if missing:
        raise PluginError(
            f"Python API reference: public names of {package}.__all__ without a docstring: "
            + ", ".join(missing)
        )
