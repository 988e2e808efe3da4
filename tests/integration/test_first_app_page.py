"""The "first app in five minutes" page (docs/get-started/first-app.md) as a newcomer
follows it, against a real broker: its module written where it says, its file of past
events made by its own code, then each of its shell steps run as written (`riverrun
config`, `evaluate`, the worker, `replay`, the `/v1` request), and what the page shows
of their output checked against what they print.

Its worker serves the page's own model, not the built-in ones, so the page is walked
through here rather than by tests/integration/test_docs_shell_examples.py. The step that
starts the broker and the worker ("in a second terminal") is the one not run as
written: the test's broker runs already, and the worker is started with the page's app
the way `--app` names it (RIVERRUN_APP)."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.docs_blocks import DOCS_DIR, Block, blocks

PAGE = DOCS_DIR / "get-started" / "first-app.md"
API = "http://127.0.0.1:9465"
APP = "mypkg.models:app"


def shown_after(block: Block) -> str:
    """The ```text block that follows `block` on the page: the output the page shows."""
    later = [b for b in blocks(PAGE, "text") if b.line > block.line]
    return later[0].text


def run(script: str, directory: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", "-c", "set -eo pipefail\n" + script],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_first_app_page_works_as_written(make_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    module, history = blocks(PAGE, "python")
    name = module.text.splitlines()[0].removeprefix("#").strip()
    assert name == "mypkg/models.py", module.where
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / name).write_text(module.text)
    subprocess.run([sys.executable, "-c", history.text], cwd=tmp_path, check=True, timeout=60)
    assert (tmp_path / "history.csv").is_file()

    env = make_env(model_scopes={})  # the page's model has the default scope: global
    shell = dict(env.env)
    shell["PYTHONPATH"] = str(tmp_path)
    # `riverrun` as the page's reader has it: the console script beside this Python.
    shell["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{shell.get('PATH', '')}"
    config, evaluate, start, replay, ask = blocks(PAGE, "sh")

    printed = run(config.text, tmp_path, shell)
    [version] = re.findall(r"first_ctr@[0-9a-f]{8}", shown_after(config))
    assert re.search(rf"first_ctr\s+binary\s+{version}\s+global\s+yes", printed), printed

    printed = run(evaluate.text, tmp_path, shell)
    assert printed.splitlines()[0] == shown_after(evaluate).splitlines()[0], printed
    assert "equal River's progressive_val_score" in printed, printed

    assert f"riverrun worker --app {APP}" in start.text, start.where
    env.env.update(PYTHONPATH=str(tmp_path), RIVERRUN_APP=APP)
    worker = env.start_worker()
    env.wait_for_group_members(1)

    printed = run(replay.text, tmp_path, shell)
    assert printed.splitlines()[1].startswith("the worker handled all 2000 events"), printed
    assert printed.splitlines()[1].endswith("no dead letters"), printed

    # The snapshot the answer comes from is refreshed as the learner goes: ask again until
    # it has learnt the whole file, as the page shows.
    script = ask.text.replace(API, f"http://127.0.0.1:{worker.api_port}")
    shown = json.loads(shown_after(ask))
    deadline = time.monotonic() + 60
    while True:
        answer = json.loads(run(script, tmp_path, shell))
        if answer["model_updates"] == shown["model_updates"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {k: v for k, v in answer.items() if k != "prediction"} == {
        k: v for k, v in shown.items() if k != "prediction"
    }
    assert 0.0 < answer["prediction"] < 1.0
