"""Every ```sh block of the docs site (docs/**/*.md) and of README.md that talks to a
worker (its /v1 API at http://127.0.0.1:9465, its metrics and health at
http://127.0.0.1:9464) runs as written against a real worker, those two addresses
replaced by the live worker's. A page whose examples serve the reader's own app (the
first-app page) is walked through by a test of its own instead.

What an example may assume, and nothing more:
- one `riverrun worker` with riverrun's default settings and built-in models (logreg,
  linreg, softmax, ctr, clicks, ctr_tree, ctr_forest), its API open without a token;
- events already learnt: the first 200 of each bundled dataset (phishing and bananas for
  logreg, segments for softmax, trump for linreg, clicks for ctr, offers for clicks);
- bash with `set -eo pipefail`, curl and jq; each block in a shell of its own (no
  variable carries over from one block to the next), given 30 s;
- the blocks before it on the same page and on the pages before it (in path order) ran
  first, against the same worker.

A block passes when it exits 0 and, where it prints JSON, no JSON value it prints is an
error (an object with an "error" member, alone or in a list). A stream is shown bounded, e.g.
`curl -N --max-time 3 URL || test $? = 28`. A transcript (```console, with `$ ` and the
output) is shown, not run; show nothing there that the ```sh blocks do not also run."""

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streams.cli.replay import dataset_events, encode
from tests.docs_blocks import DOCS_DIR, Block, blocks, page_id, pages
from tests.integration.conftest import Env, WorkerProcess, env_factory

API, METRICS = "http://127.0.0.1:9465", "http://127.0.0.1:9464"
SHELL = ("sh", "bash", "shell")
DATASETS = ("phishing", "bananas", "segments", "trump", "clicks", "offers")
LEARNT = 200


def worker_blocks(page: Path) -> list[Block]:
    return [b for b in blocks(page, *SHELL) if API in b.text or METRICS in b.text]


#: Pages whose examples need a worker of their own (the reader's app), each walked
#: through by a test of its own.
WALKED_THROUGH = {DOCS_DIR / "get-started" / "first-app.md"}  # test_first_app_page.py
PAGES_WITH_WORKER_EXAMPLES = [
    page for page in pages() if worker_blocks(page) and page not in WALKED_THROUGH
]


@dataclass(frozen=True)
class Live:
    env: Env
    worker: WorkerProcess

    def script(self, block: Block) -> str:
        """The block as bash runs it here: strict, and with this worker's addresses."""
        text = block.text.replace(API, f"http://127.0.0.1:{self.worker.api_port}")
        text = text.replace(METRICS, f"http://127.0.0.1:{self.worker.metrics_port}")
        return "set -eo pipefail\n" + text


@pytest.fixture(scope="module")
def live(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One worker with the built-in models, having learnt from every bundled dataset."""
    factory = env_factory(bootstrap, tmp_path_factory.mktemp("docs-shell"))
    make: Callable[..., Env] = next(factory)
    env = make()
    worker = env.start_worker()
    env.wait_for_group_members(1)
    events = [
        e for name in DATASETS for e in dataset_events(name, limit=LEARNT, model=None, seed=42)
    ]
    env.produce([encode(e) for e in events])
    env.read(env.settings.predictions_topic, len(events), timeout=120)
    yield Live(env, worker)
    next(factory, None)  # stops the worker, deletes the topics


def json_values(text: str) -> list[Any] | None:
    """The JSON values `text` is made of, one after the other (None: it is not JSON)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    text = text.strip()
    while at < len(text):
        try:
            value, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            return None
        values.append(value)
        while at < len(text) and text[at].isspace():
            at += 1
    return values or None


@pytest.mark.parametrize("page", PAGES_WITH_WORKER_EXAMPLES, ids=page_id)
def test_the_worker_examples_of_the_page_run(page: Path, live: Live) -> None:
    for block in worker_blocks(page):
        done = subprocess.run(
            ["bash", "-c", live.script(block)], capture_output=True, text=True, timeout=30
        )
        said = f"{block.where}:\n{block.text}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        assert done.returncode == 0, f"exit {done.returncode}: {said}"
        errors = [
            v
            for value in json_values(done.stdout) or []
            for v in (value if isinstance(value, list) else [value])  # (one answer per key)
            if isinstance(v, dict) and "error" in v
        ]
        assert not errors, f"answered an error: {said}"
        live.worker.assert_alive()
