"""Every page in headless Chromium: math rendered, no KaTeX error, no console error,
no failed request, and no request leaving localhost.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import skip_or_fail

pytestmark = pytest.mark.xdist_group("site")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test reports what matters
        pass


@pytest.fixture(scope="module")
def server(built_site: Path):
    handler = functools.partial(QuietHandler, directory=str(built_site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        skip_or_fail("Debian's chromium is not installed (scripts/test installs it where it can)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )
        yield browser
        browser.close()


def site_pages(site: Path) -> list[str]:
    return sorted(p.relative_to(site).parent.as_posix() for p in site.rglob("index.html"))


def test_every_page_in_a_browser(built_site: Path, server: str, browser) -> None:
    problems: list[str] = []
    pages = site_pages(built_site)
    assert len(pages) >= 5
    context = browser.new_context()
    for rel in pages:
        url = f"{server}/{'' if rel == '.' else rel + '/'}"
        page = context.new_page()
        events: list[str] = []

        def route(route_, request, events=events):
            if urlparse(request.url).hostname not in LOCAL_HOSTS and not request.url.startswith(("data:", "blob:")):
                events.append(f"request leaving localhost: {request.url}")
                return route_.abort()
            return route_.continue_()

        page.route("**/*", route)
        page.on("console", lambda msg, events=events: msg.type == "error" and events.append(f"console: {msg.text}"))
        page.on("pageerror", lambda error, events=events: events.append(f"page error: {error}"))
        page.on("requestfailed", lambda req, events=events: events.append(f"failed: {req.url} {req.failure}"))
        page.on("response", lambda res, events=events: res.status >= 400 and events.append(f"HTTP {res.status}: {res.url}"))
        page.goto(url, wait_until="networkidle")
        counts = page.evaluate(
            """() => ({
                unrendered: document.querySelectorAll('.arithmatex:not(:has(.katex))').length,
                errors: document.querySelectorAll('.katex-error').length,
                red: [...document.querySelectorAll('.katex *')].filter(
                    e => getComputedStyle(e).color === 'rgb(204, 0, 0)').length,
                rawDollar: [...document.querySelectorAll('.jp-RenderedMarkdown')].filter(
                    e => /\\$[^$\\s][^$]*\\$/.test(e.textContent)).length,
                katexFontLoaded: document.fonts.check('16px KaTeX_Main'),
                math: document.querySelectorAll('.katex').length,
            })"""
        )
        for key in ("unrendered", "errors", "red", "rawDollar"):
            if counts[key]:
                events.append(f"{key}: {counts[key]}")
        if counts["math"] and not counts["katexFontLoaded"]:
            events.append("KaTeX fonts did not load")
        problems.extend(f"/{rel}: {event}" for event in events)
        page.close()
    context.close()
    assert not problems, "\n".join(problems)


def test_route_guard_catches_a_remote_request(server: str, browser, built_site: Path, tmp_path: Path) -> None:
    """The control: a page that asks another host is caught by the same guard."""
    (built_site / "_probe.html").write_text('<img src="https://example.invalid/x.png">')
    try:
        page = browser.new_page()
        seen: list[str] = []
        page.route("**/*", lambda route, request: (seen.append(request.url), route.abort())
                   if urlparse(request.url).hostname not in LOCAL_HOSTS else route.continue_())
        page.goto(f"{server}/_probe.html", wait_until="networkidle")
        page.close()
        assert seen == ["https://example.invalid/x.png"]
    finally:
        (built_site / "_probe.html").unlink()
