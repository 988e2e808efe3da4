"""mkdocs hook: the reference pages' generated parts (settings, CLI, topics, contracts).

A page holds a marker line `<!-- generated: NAME -->`; `on_page_markdown` replaces it
with what `GENERATORS[NAME]` renders from the code, so the reference cannot drift.
"""

from collections.abc import Callable
from typing import Any

from mkdocs.exceptions import PluginError

GENERATORS: dict[str, Callable[[], str]] = {}

MARKER = "<!-- generated: {} -->"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    for name, render in GENERATORS.items():
        marker = MARKER.format(name)
        if marker in markdown:
            markdown = markdown.replace(marker, render())
    if "<!-- generated:" in markdown:
        raise PluginError(f"{page.file.src_path}: unknown generated section")
    return markdown
