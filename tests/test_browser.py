"""Every page in headless Chromium: math rendered, no KaTeX error, no console error,
no failed request, and no request leaving localhost.

The off-site guard works on the whole browser context, so it also sees what scripts start after
the page has loaded (fetch, XHR, WebSocket, beacons, dynamic imports, workers, prefetch links):
Material's bundle could load a polyfill or Mermaid from a CDN in some browsers, which a scan of
the HTML would never show. Service workers are blocked (their requests would bypass routing), and
Chromium resolves no host name but localhost, so nothing unrouted could leave either.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import chromium, site_pages, static_server

pytestmark = pytest.mark.xdist_group("browser")  # the built site is shared across workers (conftest built_site)

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
LOCAL_SCHEMES = {"data", "blob", "about"}


def is_local(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in LOCAL_SCHEMES or parsed.hostname in LOCAL_HOSTS


class OffsiteGuard:
    """Aborts and records every request of a browser context that is not for localhost.

    Three nets: the context's router (HTTP from pages and workers, aborted), its WebSocket router
    (closed), and its request events (anything the router might not have been asked about).
    ``page`` says which site page is open, for the report.
    """

    def __init__(self, context) -> None:
        self.seen: list[str] = []
        self.page = "?"
        context.route("**/*", self._route)
        context.route_web_socket(re.compile(r".*"), self._socket)
        context.on("request", self._request)

    def _record(self, kind: str, url: str) -> None:
        entry = f"{self.page}: {kind} leaving localhost: {url}"
        if entry not in self.seen:
            self.seen.append(entry)

    def _route(self, route, request) -> None:
        if is_local(request.url):
            route.continue_()
        else:
            self._record(request.resource_type, request.url)
            route.abort()

    def _socket(self, socket) -> None:
        if is_local(socket.url):
            socket.connect_to_server()
        else:
            self._record("websocket", socket.url)
            socket.close()

    def _request(self, request) -> None:
        if not is_local(request.url):
            self._record(request.resource_type, request.url)

    def urls(self) -> list[str]:
        return [entry.rsplit(": ", 1)[1] for entry in self.seen]


@pytest.fixture(scope="module")
def server(built_site: Path):
    with static_server(built_site) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    # Chromium resolves no host name but localhost: nothing unrouted could leave either.
    with chromium("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1") as browser:
        yield browser


def test_every_page_in_a_browser(built_site: Path, server: str, browser) -> None:
    problems: list[str] = []
    pages = site_pages(built_site)
    assert len(pages) >= 5
    context = browser.new_context(service_workers="block")
    guard = OffsiteGuard(context)
    for rel in pages:
        url = f"{server}/{'' if rel == '.' else rel + '/'}"
        guard.page = f"/{rel}"
        page = context.new_page()
        events: list[str] = []
        page.on("console", lambda msg, events=events: msg.type == "error" and events.append(f"console: {msg.text}"))
        page.on("pageerror", lambda error, events=events: events.append(f"page error: {error}"))
        page.on("requestfailed", lambda req, events=events: events.append(f"failed: {req.url} {req.failure}"))
        page.on("response", lambda res, events=events: res.status >= 400 and events.append(f"HTTP {res.status}: {res.url}"))
        page.goto(url, wait_until="networkidle")
        page.wait_for_timeout(200)  # let scripts that start work after the load event do so
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
    problems.extend(guard.seen)
    assert not problems, "\n".join(problems)


PROBES = {
    "fetch": 'fetch("https://example.com/fetch").catch(() => {})',
    "xhr": 'const x = new XMLHttpRequest(); x.open("GET", "https://example.com/xhr"); x.onerror = () => {}; x.send()',
    "websocket": 'try { new WebSocket("wss://example.com/socket") } catch (e) {}',
    "prefetch": 'const l = document.createElement("link"); l.rel = "prefetch"; '
                'l.href = "https://cdn.example.net/polyfill.js"; document.head.appendChild(l)',
    "script": 'const s = document.createElement("script"); s.src = "https://cdn.example.net/mermaid.min.js"; '
              'document.head.appendChild(s)',
    "beacon": 'navigator.sendBeacon("https://example.com/beacon", "x")',
    "import": 'import("https://example.com/module.js").catch(() => {})',
    "worker": 'new Worker(URL.createObjectURL(new Blob([\'fetch("https://example.com/worker").catch(() => {})\'], '
              '{type: "text/javascript"})))',
}
PROBE_URLS = {
    "fetch": "https://example.com/fetch", "xhr": "https://example.com/xhr", "websocket": "wss://example.com/socket",
    "prefetch": "https://cdn.example.net/polyfill.js", "script": "https://cdn.example.net/mermaid.min.js",
    "beacon": "https://example.com/beacon", "import": "https://example.com/module.js",
    "worker": "https://example.com/worker",
}


@pytest.fixture(scope="module")
def probe_server(tmp_path_factory):
    """A one-page site of our own, so the guard's control does not depend on the real build."""
    root = tmp_path_factory.mktemp("probe")
    (root / "index.html").write_text('<!doctype html><title>probe</title><img src="https://example.invalid/x.png">')
    with static_server(root) as url:
        yield url + "/"


def test_the_guard_catches_markup_and_script_initiated_requests(probe_server: str, browser) -> None:
    """The control: requests in the HTML and requests scripts start later are all reported and aborted."""
    context = browser.new_context(service_workers="block")
    guard = OffsiteGuard(context)
    page = context.new_page()
    guard.page = "/probe"
    page.goto(probe_server, wait_until="networkidle")
    assert guard.urls() == ["https://example.invalid/x.png"]
    page.evaluate("() => {" + "; ".join(PROBES.values()) + "}")
    page.wait_for_timeout(1000)
    local_fetch = page.evaluate(f'() => fetch("{probe_server}").then(r => r.status)')
    context.close()
    assert local_fetch == 200  # localhost still works
    missing = [kind for kind, url in PROBE_URLS.items() if url not in guard.urls()]
    assert not missing, f"the guard missed: {missing}; it saw {guard.seen}"
    assert all(entry.startswith("/probe: ") for entry in guard.seen)
