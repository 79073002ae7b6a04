"""Shared fixtures: repository paths, and the built site (built once per test session)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

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


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--disable-quic"]


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
    """Debian's Chromium under Playwright's sync API (skipped, or failed under CI, when it is missing)."""
    if CHROMIUM is None:
        skip_or_fail("Debian's chromium is not installed (scripts/test installs it where it can)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*LAUNCH_ARGS, *extra_args])
        yield browser
        browser.close()


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


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items) -> None:
    """Make ``--dist loadgroup`` keep an ``xdist_group`` on one worker under pytest 9.

    pytest-xdist 3.8 tells its scheduler a test's group by appending ``@group`` to the test's
    ``_nodeid``, an attribute pytest 9 no longer reads (node ids live in ``_id``): every group was
    silently spread over both workers, and each built its module fixtures (browsers, sites) again.
    This appends the suffix where xdist's own attempt did not take.
    """
    if not getattr(config.option, "loadgroup", False):
        return
    from _pytest.nodeid import NodeId

    for item in items:
        names = sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                        for mark in item.iter_markers("xdist_group")})
        if names and "@" not in item.nodeid:
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(names)}")


def pytest_terminal_summary(terminalreporter) -> None:
    """Say how many page blocks do not run, and why: the count should be zero."""
    from docblocks import blocks

    exempt = [b for page in sorted(DOCS.rglob("*.md")) for b in blocks(page, DOCS) if b.norun is not None]
    terminalreporter.write_line(f"page code blocks marked norun: {len(exempt)}")
    for block in exempt:
        terminalreporter.write_line(f"  {block.where}: {block.norun}")
