"""Every ```python block of the docs site (docs/**/*.md) and of README.md runs, as a
reader would run it: the blocks of one page in order, in one namespace, in a fresh
directory, with no RIVERRUN_* variable set and no broker. A block whose first line is a
comment naming a file (`# mypkg/models.py`) is the reader's module: it is written there
(with its packages' __init__.py) and imported, which runs it.

A page whose example needs something these tests do not give (a broker, a worker) shows
it as ```text (or ```sh for the commands tests/integration/test_docs_shell_examples.py
runs), not as ```python."""

import importlib
import linecache
import re
import sys
from pathlib import Path

import pytest

from tests.docs_blocks import Block, blocks, page_id, pages

PYTHON = ("python", "py", "python3")
# `# mypkg/models.py` or `# mypkg/models.py — the user's file`
FILE_COMMENT = re.compile(r"#\s*(?P<path>[\w./-]+\.py)(?:\s|$)")

PAGES_WITH_PYTHON = [page for page in pages() if blocks(page, *PYTHON)]


def module_of(block: Block) -> str | None:
    """The file the block says it is (`mypkg/models.py`), or None for a plain block."""
    named = FILE_COMMENT.match(block.text.lstrip("\n").split("\n", 1)[0])
    return named["path"] if named else None


def write_module(root: Path, relative: str, text: str) -> str:
    """Write the reader's file under `root` with the packages around it; its module name."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    for package in path.relative_to(root).parents:
        if package != Path(".") and not (root / package / "__init__.py").exists():
            (root / package / "__init__.py").write_text("")
    path.write_text(text)
    return ".".join(Path(relative).with_suffix("").parts)


@pytest.mark.parametrize("page", PAGES_WITH_PYTHON, ids=page_id)
def test_the_python_examples_of_the_page_run(
    page: Path, tmp_path: Path, clean_environment: pytest.MonkeyPatch
) -> None:
    monkeypatch = clean_environment
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    namespace: dict[str, object] = {"__name__": "__main__"}
    try:
        for block in blocks(page, *PYTHON):
            relative = module_of(block)
            if relative is None:
                # Its own name: a traceback shows the block and where it is on the page
                # (kept after the test: pytest reads it when it reports a failure).
                where = f"{block.where} (python block)"
                linecache.cache[where] = (0, None, block.text.splitlines(keepends=True), where)
                exec(compile(block.text, where, "exec"), namespace)
                continue
            name = write_module(tmp_path, relative, block.text)
            # The reader's package, not one of that name an earlier test imported.
            top = name.split(".")[0]
            for loaded in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
                if not (getattr(sys.modules[loaded], "__file__", None) or "").startswith(
                    str(tmp_path)
                ):
                    monkeypatch.delitem(sys.modules, loaded)
            importlib.invalidate_caches()
            if name in sys.modules:  # the page shows a new version of the file
                importlib.reload(sys.modules[name])
            else:
                importlib.import_module(name)
    finally:
        # The reader's modules go with the directory: the next page may name the same.
        for name in set(sys.modules) - before:
            origin = getattr(sys.modules[name], "__file__", None) or ""
            if origin.startswith(str(tmp_path)):
                del sys.modules[name]
