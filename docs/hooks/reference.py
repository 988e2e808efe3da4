"""mkdocs hook: the reference pages' generated parts (settings, CLI, topics, contracts).

A page holds a marker line `<!-- generated: NAME -->`; `on_page_markdown` replaces it
with what `GENERATORS[NAME]` renders from the code, so the reference cannot drift. A
generator raises mkdocs' PluginError when the code leaves something undocumented (a
setting, a command, an option, a public name): the strict build fails, naming it.
"""

from collections.abc import Callable
from typing import Any

from mkdocs.exceptions import PluginError

# Beside this file: mkdocs puts the hook's directory on sys.path while it loads it.
from reference_cli import render as render_cli
from reference_python_api import render as render_python_api
from reference_settings import render as render_settings
from reference_topics import render_asyncapi_overview, render_topics

GENERATORS: dict[str, Callable[[], str]] = {
    "settings": render_settings,
    "cli": render_cli,
    "python-api": render_python_api,
    "topics": render_topics,
    "asyncapi": render_asyncapi_overview,
}

MARKER = "<!-- generated: {} -->"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    for name, render in GENERATORS.items():
        marker = MARKER.format(name)
        if marker in markdown:
            markdown = markdown.replace(marker, render())
    if "<!-- generated:" in markdown:
        raise PluginError(f"{page.file.src_path}: unknown generated section")
    return markdown
