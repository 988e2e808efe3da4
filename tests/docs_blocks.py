"""The fenced code blocks of the docs site's pages and of README.md, for the tests that
run them (tests/unit/test_docs_examples.py, tests/integration/test_docs_shell_examples.py)."""

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from tests.paths import PROJECT_DIR

DOCS_DIR = PROJECT_DIR / "docs"

# An opening fence, at any indentation (a block inside a list item): ```python, ``` python,
# ```python title="x.py" (pymdownx attributes), or more backticks or tildes.
OPENING = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, its text (unindented) and where it starts."""

    page: Path
    line: int  # of the block's first line of code in the page, from 1
    language: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(PROJECT_DIR)}:{self.line}"


def pages() -> list[Path]:
    """Every page of the site (docs/**/*.md, but the hooks) and README.md."""
    site = sorted(p for p in DOCS_DIR.rglob("*.md") if "hooks" not in p.relative_to(DOCS_DIR).parts)
    return [*site, PROJECT_DIR / "README.md"]


def page_id(page: Path) -> str:
    return str(page.relative_to(PROJECT_DIR))


def blocks(page: Path, *languages: str) -> list[Block]:
    """The page's fenced blocks in one of `languages` (all of them when none is given), in
    order."""
    found: list[Block] = []
    lines = page.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = OPENING.match(lines[index])
        index += 1
        if opening is None:
            continue
        indent, fence = opening["indent"], opening["fence"]
        language = (opening["info"].split() or [""])[0].lstrip(".").lower()
        start = index
        closing = re.compile(
            rf"^{re.escape(indent)}[ \t]{{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$"
        )
        while index < len(lines) and not closing.match(lines[index]):
            index += 1
        body = "\n".join(lines[start:index]) + "\n"
        index += 1  # past the closing fence
        if not languages or language in languages:
            found.append(Block(page, start + 1, language, textwrap.dedent(body)))
    return found
