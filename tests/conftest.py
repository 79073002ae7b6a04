"""Shared fixtures: repository paths, and the built site (built once per test session)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import inspect
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

# One BLAS thread: on a 2-core machine shared by two test workers, threaded BLAS slows small
# matrix products by orders of magnitude. Must be set before NumPy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT / "scripts"))


def skip_or_fail(reason: str) -> None:
    """Skip locally with a reason; under CI (``CI`` set) nothing may be skipped, so fail."""
    if os.environ.get("CI"):
        pytest.fail(f"not skippable in CI: {reason}")
    pytest.skip(reason)


# Debian's headless shell first: the same Blink as the browser without its window machinery, it
# loads and lays out the pages with about a fifth less CPU (Playwright's own headless default).
CHROMIUM = shutil.which("chromium-headless-shell") or shutil.which("chromium") or shutil.which("chromium-browser")
# --js-flags: V8's optimising compilers (TurboFan, Maglev) pay off for long-running scripts; a test
# page runs Material's scripts for a second and moves on, and compiling them for speed cost more
# than it saved (the layout sweep: 5 % less time). The scripts behave the same in every tier.
# The last one: Chromium resolves no host name but localhost, so a request that slipped past
# OffsiteGuard's nets could not leave either.
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--disable-quic", "--js-flags=--no-opt --no-maglev",
               "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the tests report what matters
        pass


@contextlib.contextmanager
def static_server(directory: Path):
    """Serve ``directory`` on 127.0.0.1 at a free port; yields the base URL (no trailing slash)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(directory)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


@contextlib.contextmanager
def chromium(*extra_args: str):
    """Debian's Chromium (its headless shell) under Playwright's sync API (skipped, or failed under CI, when it is missing)."""
    if CHROMIUM is None:
        skip_or_fail("Debian's chromium-headless-shell (or chromium) is not installed (scripts/test installs it where it can)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*LAUNCH_ARGS, *extra_args])
        yield browser
        browser.close()


LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
LOCAL_SCHEMES = {"data", "blob", "about"}
# What the guard's routers send to Python: every URL but the test servers' own, which this prefix
# alone shows to be local. The driver matches it, so the hundreds of requests for the site's own
# files do not each make a round trip to Python; Python decides the rest with ``is_local``.
MAYBE_OFFSITE = re.compile(r"^(?!http://127\.0\.0\.1:\d+/)")


def is_local(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in LOCAL_SCHEMES or parsed.hostname in LOCAL_HOSTS


class OffsiteGuard:
    """Aborts and records every request of a browser context that is not for localhost.

    Three nets: the context's router (HTTP from pages and workers, aborted), its WebSocket router
    (closed), and its request events (anything the router might not have been asked about). The
    guard works on the whole context, so it also sees what scripts start after a page has loaded
    (fetch, XHR, WebSocket, beacons, dynamic imports, workers, prefetch links): Material's bundle
    could load a polyfill or Mermaid from a CDN in some browsers, which a scan of the HTML would
    never show. Open contexts with ``service_workers="block"`` (a service worker's requests would
    bypass routing). ``page`` says which site page is open, for the report.

    For Playwright's sync and async APIs alike: ``guard.attach(context)``, awaited under the async
    API (the handlers return what Playwright's calls return, which Playwright awaits when needed).
    """

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.page = "?"

    def attach(self, context):
        context.on("request", self._request)
        routes = [context.route(MAYBE_OFFSITE, self._route), context.route_web_socket(MAYBE_OFFSITE, self._socket)]
        return asyncio.gather(*routes) if inspect.isawaitable(routes[0]) else None

    def _record(self, kind: str, url: str) -> None:
        entry = f"{self.page}: {kind} leaving localhost: {url}"
        if entry not in self.seen:
            self.seen.append(entry)

    def _route(self, route, request):
        if is_local(request.url):
            return route.continue_()
        self._record(request.resource_type, request.url)
        return route.abort()

    def _socket(self, socket):
        if is_local(socket.url):
            return socket.connect_to_server()
        self._record("websocket", socket.url)
        return socket.close()

    def _request(self, request) -> None:
        if not is_local(request.url):
            self._record(request.resource_type, request.url)

    def urls(self) -> list[str]:
        return [entry.rsplit(": ", 1)[1] for entry in self.seen]


class PageWatch:
    """What goes wrong in a page while it loads and runs: console errors, uncaught errors, failed
    requests and HTTP errors, each under ``label`` (the site page open at the time); and which of
    its requests are still in flight. For the sync and async APIs alike."""

    def __init__(self, page, label: str = "?") -> None:
        self.label = label
        self.problems: list[str] = []
        self.in_flight: set = set()
        page.on("console", lambda msg: msg.type == "error" and self._add(f"console: {msg.text}"))
        page.on("pageerror", lambda error: self._add(f"page error: {error}"))
        page.on("request", lambda request: self.in_flight.add(request))
        page.on("requestfinished", lambda request: self.in_flight.discard(request))
        page.on("requestfailed", self._failed)
        page.on("response", lambda res: res.status >= 400 and self._add(f"HTTP {res.status}: {res.url}"))

    def _add(self, problem: str) -> None:
        self.problems.append(f"{self.label}: {problem}")

    def _failed(self, request) -> None:
        self.in_flight.discard(request)
        self._add(f"failed: {request.url} {request.failure}")


def site_pages(site: Path) -> list[str]:
    """Every page of a built site, as its folder relative to the site ("." for the home page)."""
    return sorted(p.relative_to(site).parent.as_posix() for p in site.rglob("index.html"))


def mkdocs_build(site: Path, config: Path | None = None) -> subprocess.CompletedProcess:
    """``mkdocs build --strict`` of the site (or of ``config``) into ``site``, dated so builds compare."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "SOURCE_DATE_EPOCH": "0"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    if config is not None:
        command += ["-f", str(config)]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)


def write_config(tmp_path: Path, docs: Path, **overrides) -> Path:
    """The site's mkdocs.yml and hooks, for a small site made of ``docs``.

    ``overrides`` replace settings; ``None`` removes one. ``watch`` is dropped because its
    paths are relative to the real repository.
    """
    import yaml
    from mkdocs.utils.yaml import yaml_load

    with open(ROOT / "mkdocs.yml", encoding="utf-8") as source:  # MkDocs' loader: it resolves !ENV
        config = yaml_load(source)
    config.update(docs_dir=str(docs), hooks=[str(ROOT / "scripts" / "hooks.py")], extra_css=[], watch=[])
    for key, value in overrides.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path = tmp_path / "mkdocs.yml"
    path.write_text(yaml.dump(config))
    return path


def run_folder(tmp_path_factory) -> Path:
    """A folder of this test run shared by its xdist workers (each worker's own temporary folder
    is a subfolder of it), so that a product one worker makes, the others can use."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def built_site(tmp_path_factory) -> Path:
    """``mkdocs build --strict`` into a temporary folder, once per test run: the first worker to
    need it builds it under a lock, the others wait and use it. The build's log is shown on failure,
    by every test that needs the site. Tests only read it."""
    import fcntl

    shared = run_folder(tmp_path_factory)
    site, done = shared / "site", shared / "site.done"
    with open(shared / "site.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            result = mkdocs_build(site)
            status = "ok" if result.returncode == 0 else "failed"
            done.write_text(f"{status}\n{result.stdout}\n{result.stderr}", encoding="utf-8")
    status, _, log = done.read_text(encoding="utf-8").partition("\n")
    if status != "ok":
        pytest.fail(f"mkdocs build --strict failed:\n{log}", pytrace=False)
    return site


def copy_registry_pages(docs: Path) -> None:
    """The claims and derivations pages into a small site's ``docs``: the badges of its claims link
    to them, and they link to each other."""
    for name in ("claims.md", "derivations.md"):
        shutil.copy(DOCS / name, docs / name)


@pytest.fixture(scope="session")
def exercise_site(tmp_path_factory) -> Path:
    """A small site with every exercise of the chapters on one page, ``all/`` (the real site has a
    page per chapter), for the browser tests of the self-check and the rendering test of each kind.
    Tests that use it belong to the ``exercise-sites`` xdist group, so one worker builds it."""
    root = tmp_path_factory.mktemp("exercise-site")
    docs = root / "docs"
    (docs / "assets").mkdir(parents=True)
    (docs / "index.md").write_text("# Home\n\nSee [the exercises](exercises.md).\n")
    copy_registry_pages(docs)
    for name in ("exercises.md", "assets/site.css", "assets/exercises.js"):
        shutil.copy(DOCS / name, docs / name)
    markers = [line for page in sorted((DOCS / "questions").glob("*.md"))
               for line in page.read_text(encoding="utf-8").splitlines() if line.startswith("[[exercise:")]
    (docs / "all.md").write_text("# All exercises\n\n" + "\n\n".join(markers) + "\n")
    config = write_config(root, docs, nav=None, extra_css=["assets/katex/katex.min.css", "assets/site.css"])
    result = mkdocs_build(root / "site", config)
    if result.returncode != 0:
        pytest.fail(f"the exercise site did not build:\n{result.stdout}\n{result.stderr}", pytrace=False)
    return root / "site"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items) -> None:
    """Make ``--dist loadgroup`` keep an ``xdist_group`` on one worker under pytest 9.

    pytest-xdist 3.8 tells its scheduler a test's group by appending ``@group`` to the test's
    ``_nodeid``, an attribute pytest 9 no longer reads (node ids live in ``_id``): every group was
    silently spread over both workers, and each built its module fixtures (browsers, sites) again.
    This appends the suffix where xdist's own attempt did not take.

    It also puts the groups first, the longest first (``GROUPS_LONGEST_FIRST``): xdist deals the
    units of work to the workers in this order as they free up (``scripts/test`` passes
    ``--no-loadscope-reorder``; xdist would otherwise order them by their number of tests, and the
    browser sweep, four tests long, would start late), so no long group runs on alone at the end.
    """
    if not getattr(config.option, "loadgroup", False):
        return
    from _pytest.nodeid import NodeId

    def groups(item) -> list[str]:
        return sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                       for mark in item.iter_markers("xdist_group")})

    for item in items:
        names = groups(item)
        if names and "@" not in item.nodeid:
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(names)}")
    rank = {name: place for place, name in enumerate(GROUPS_LONGEST_FIRST)}
    items.sort(key=lambda item: min((rank.get(name, len(rank)) for name in groups(item)), default=len(rank) + 1))


# The xdist groups by how long they take (the browser sweep, the exercise site and its browser, the
# claims' proofs, the small sites, the notebook runs); a group not listed comes after these and before
# ungrouped tests.
GROUPS_LONGEST_FIRST = ("layout", "exercise-sites", "claims", "site", "notebook")


def pytest_terminal_summary(terminalreporter) -> None:
    """Say how many page blocks do not run, and why: the count should be zero."""
    from docblocks import blocks

    exempt = [b for page in sorted(DOCS.rglob("*.md")) for b in blocks(page, DOCS) if b.norun is not None]
    terminalreporter.write_line(f"page code blocks marked norun: {len(exempt)}")
    for block in exempt:
        terminalreporter.write_line(f"  {block.where}: {block.norun}")
