"""What a reader sees, in a real browser: every page of the docs site, built strictly and
served over HTTP, and the HTML file of `riverrun report` on a real worker's topics, opened
in headless Chromium (Debian's, unpacked by deploy/browser/install.sh, driven by
Playwright).

A page fails on a console error, an uncaught exception, a request that failed or was
answered 4xx/5xx, an image that did not load, or a request beyond this machine: a page
must work offline and tell no third party who reads it (so mkdocs.yml sets no `repo_url`,
whose header widget would fetch the repository's stars from GitHub's API)."""

import asyncio
import functools
import http.server
import os
import re
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from playwright.async_api import (
    BrowserContext,
    ConsoleMessage,
    Request,
    Response,
    Route,
    async_playwright,
)
from playwright.async_api import TimeoutError as PlaywrightTimeout

from streams.cli.replay import dataset_events, encode
from tests.integration.conftest import riverrun_cli
from tests.paths import PROJECT_DIR

CHROMIUM = PROJECT_DIR / ".cache" / "chromium" / "bin" / "chromium"
# Those that work on this kind of machine: no sandbox (root), no GPU, and nothing that
# calls home (the closed network refuses it, and a test must not depend on it).
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
# Pages open side by side: most of a page's time is the wait for a quiet network.
TABS = 4
# How long a page may take to become quiet. The swagger-ui page of the HTTP API took 15 s
# with three other tabs on a quiet machine, and over 30 s (Playwright's default) once in
# CI: a slow page is not a broken one, and a page that never becomes quiet still fails,
# naming the requests it still waits for.
QUIET_WITHIN_MS = 120_000
RENDERED_BY_MKDOCS = re.compile(r"<meta[^>]*content=\"mkdocs-\d")
T = TypeVar("T")


def in_chromium(check: Callable[[BrowserContext], Awaitable[T]]) -> T:
    """`check(context)` with a fresh headless Chromium; fails with one sentence when the
    project's Chromium is not installed."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: run make test (or deploy/browser/install.sh)",
            pytrace=False,
        )

    async def run() -> T:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            try:
                return await check(await browser.new_context())
            finally:
                await browser.close()

    return asyncio.run(run())


@dataclass
class Visit:
    """One page as a reader met it: what went wrong, and its images (alt, width)."""

    problems: list[str]
    images: list[tuple[str, int]]


async def visit(context: BrowserContext, url: str) -> Visit:
    """Open `url` in a new tab until its network is quiet; every problem met on the way."""
    problems: list[str] = []
    refused: set[str] = set()
    pending: set[str] = set()

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and not (refused and "ERR_BLOCKED_BY_CLIENT" in message.text):
            problems.append(f"console error: {message.text}")

    def failed(request: Request) -> None:
        pending.discard(request.url)
        if request.url not in refused:
            problems.append(f"request failed: {request.url} ({request.failure})")

    def answered(response: Response) -> None:
        if response.status >= 400:
            problems.append(f"HTTP {response.status}: {response.url}")

    async def only_local(route: Route) -> None:
        url = urllib.parse.urlsplit(route.request.url)
        if url.scheme in {"data", "blob", "about", "file"} or url.hostname in LOCAL_HOSTS:
            await route.continue_()
            return
        problems.append(f"request beyond this machine: {route.request.url}")
        refused.add(route.request.url)  # (its failure is no second problem)
        await route.abort("blockedbyclient")

    page = await context.new_page()
    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    page.on("request", lambda request: pending.add(request.url))
    page.on("requestfinished", lambda request: pending.discard(request.url))
    page.on("requestfailed", failed)
    page.on("response", answered)
    await page.route("**/*", only_local)
    try:
        try:
            await page.goto(url, wait_until="networkidle", timeout=QUIET_WITHIN_MS)
        except PlaywrightTimeout:
            waiting = ", ".join(sorted(pending)) or "no request"
            problems.append(f"not quiet after {QUIET_WITHIN_MS // 1000} s, waiting for: {waiting}")
            return Visit(problems, [])
        images = [
            image
            for frame in page.frames  # (an embedded viewer's too)
            for image in await frame.evaluate(
                "[...document.images].map(i => [i.alt || i.src.slice(0, 80),"
                " i.complete ? i.naturalWidth : 0])"
            )
        ]
    finally:
        await page.close()
    problems += [f"image not loaded: {name}" for name, width in images if width == 0]
    return Visit(problems, [(name, width) for name, width in images])


@dataclass(frozen=True)
class Site:
    built: Path  # the HTML files
    url: str  # where they are served


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """(a failed request is reported by the browser's side)"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The docs site, built as `make docs-build` builds it, served on a free local port."""
    built = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(built)],
        cwd=PROJECT_DIR,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr}"
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(built))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Site(built, f"http://127.0.0.1:{server.server_address[1]}/")
    server.shutdown()
    server.server_close()


def site_pages(built: Path) -> list[str]:
    """Every page mkdocs rendered (its generator tag), from the built site's root; not the
    HTML files that only live inside a page, such as an embedded viewer's iframe, which
    load (and are checked) with the page that embeds them."""
    return sorted(
        p.relative_to(built).as_posix()
        for p in built.rglob("*.html")
        if RENDERED_BY_MKDOCS.search(p.read_text(errors="replace"))
    )


def test_every_page_of_the_docs_site_loads_cleanly(site: Site) -> None:
    pages = site_pages(site.built)
    # At least the home page and the theme's 404 page (a build that wrote nothing fails).
    assert "index.html" in pages and "404.html" in pages

    async def visit_all(context: BrowserContext) -> dict[str, Visit]:
        tabs = asyncio.Semaphore(TABS)

        async def one(page: str) -> tuple[str, Visit]:
            async with tabs:
                return page, await visit(context, site.url + page)

        return dict(await asyncio.gather(*(one(page) for page in pages)))

    visits = in_chromium(visit_all)
    problems = [f"{page}: {p}" for page, seen in visits.items() for p in seen.problems]
    assert not problems, f"{len(problems)} problems on the site:\n" + "\n".join(problems)


def test_the_report_of_a_real_worker_shows_every_chart(make_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = make_env(models=["logreg"], metrics_every_events=100)
    env.start_worker()
    env.wait_for_group_members(1)
    # 400 labelled phishing events (a metrics report every 100) and one message that is
    # no event (a dead letter).
    events = list(dataset_events("phishing", limit=400, model="logreg", seed=42))
    env.produce([encode(e) for e in events] + [(b"bad", b"not json")])
    env.read(env.settings.predictions_topic, 400)
    env.read(env.settings.metrics_topic, 4)
    env.read(env.settings.dead_letters_topic, 1)
    report = tmp_path / "report.html"
    done = riverrun_cli(env, "report", "--out", str(report))
    assert done.returncode == 0, done.stderr

    seen = in_chromium(lambda context: visit(context, report.as_uri()))
    assert not seen.problems, "\n".join(seen.problems)
    # logreg's quality and its predicted vs actual, the dead letters, the throughput: each
    # a PNG the browser decoded.
    assert [name for name, _ in seen.images] == [
        "logreg: quality",
        "logreg: predicted vs actual",
        "dead letters",
        "throughput",
    ]
    assert all(width > 0 for _, width in seen.images)
