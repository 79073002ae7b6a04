"""Every page as a reader sees it: on a 1280 px laptop and a 390 px phone, in the light and the dark
scheme, in headless Chromium.

On every page, in every combination:

- nothing is cut off: an element whose content is wider than its box must scroll and show that it
  does (the shadows of ``site.css``: backgrounds attached to the scrolling content); content that
  spills out of its box must stay on screen, and content clipped by ``overflow: hidden`` is a
  failure, and so is a page that scrolls sideways;
- every figure shown is legible: its smallest text renders at least ``MIN_TEXT_PX`` CSS px (the rule
  of ``tests/test_figure_layout.py``, here measured on the drawing the browser chose and the width
  it rendered it at), and exactly one of its light and dark drawings is displayed, the one of the
  scheme;
- no raw TeX reaches the text, and every formula carries its MathML;
- Material picks the light scheme when the system prefers it (on the first page, with fresh
  storage; the other pages keep the scheme Material stored), and the dark one when the system
  prefers dark (on one page with figures per screen, in a context of its own);
- no console error, no uncaught error, no failed request, no HTTP error; and no request leaves
  localhost, whether the markup or a script makes it (conftest's ``OffsiteGuard``, with its
  control here).

On the laptop, once per page: every formula is rendered, by KaTeX without an error (no red), with
KaTeX's fonts loaded, and no ``$`` is left in a notebook's Markdown.

Once: Material's search finds words that follow punctuation ("Einstein", "FlashAttention"), and a
figure opens in the lightbox, from this site.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from conftest import (CHROMIUM, LAUNCH_ARGS, LOCAL_HOSTS, OffsiteGuard, PageWatch, chromium, site_pages, skip_or_fail,
                      static_server)

pytestmark = pytest.mark.xdist_group("layout")  # the built site is shared across workers (conftest built_site)

MIN_TEXT_PX = 8.0
SCREENS = {"laptop": {"viewport": {"width": 1280, "height": 800}},
           "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True,
                     "device_scale_factor": 2}}
SCHEMES = ("light", "dark")
# How long a page stays open at least, from its load event, so that what its scripts start after
# loading is seen (by the guard, and as errors); it leaves once nothing it asked for is in flight.
SETTLE_S = 0.5
STILL_LOADING_S = 15.0


@pytest.fixture(scope="module")
def server(built_site: Path):
    with static_server(built_site) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


def _guarded_context(browser, **options):
    context = browser.new_context(service_workers="block", **options)
    guard = OffsiteGuard()
    guard.attach(context)
    return context, guard


# What one page reports: overflow without an affordance, figures, raw TeX, formulas without MathML.
INSPECT = r"""() => {
  const article = document.querySelector('article.md-content__inner') || document.body;
  const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
      (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\s+/).slice(0, 3).join('.') : '');
  const where = el => { const h = [...article.querySelectorAll('h1,h2,h3')].filter(
      x => x.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING).pop();
      return h ? ` (under "${h.textContent.replace('¶', '').trim().slice(0, 50)}")` : ''; };
  const scrolls = s => s.overflowX === 'auto' || s.overflowX === 'scroll';
  const clips = s => s.overflowX === 'hidden' || s.overflowX === 'clip';
  // The affordance: site.css's shadows, a background attached to the scrolling content ("local")
  // over one attached to the box ("scroll"). Material's own tab bar has scroll buttons of its own.
  const affordance = el => { const a = getComputedStyle(el).backgroundAttachment;
      return (a.includes('local') && a.includes('scroll')) || el.matches('.tabbed-labels'); };
  const overflow = [];
  for (const el of article.querySelectorAll('*')) {
    if (el.closest('.katex, .katex-mathml, svg, .md-code__nav') && !el.matches('.katex-display')) continue;
    if (el.clientWidth === 0 || el.scrollWidth <= el.clientWidth + 1) continue;
    const style = getComputedStyle(el);
    if (scrolls(style)) { if (!affordance(el)) overflow.push('scrolls with no sign of it: ' + name(el) + where(el)); continue; }
    if (clips(style)) { overflow.push('cut off by its own box: ' + name(el) + where(el)); continue; }
    // Visible overflow is fine while it stays visible: inside a scroller that shows it scrolls, or
    // within what the nearest clipping ancestor (or the window: Material hides the page's own
    // sideways overflow) leaves on screen.
    let a = el.parentElement;
    while (a && a !== document.documentElement && !scrolls(getComputedStyle(a)) && !clips(getComputedStyle(a)))
      a = a.parentElement;
    if (a && a !== document.documentElement && scrolls(getComputedStyle(a))) {
      if (!affordance(a)) overflow.push('spills into a scroller with no sign of it: ' + name(el) + where(el));
      continue;
    }
    const box = el.getBoundingClientRect();
    const right = box.left + el.scrollWidth, limit = a && a !== document.documentElement
      ? a.getBoundingClientRect().left + a.clientWidth : window.innerWidth;
    if (right > limit + 1) overflow.push(`cut off by ${Math.round(right - limit)} px: ` + name(el) + where(el));
  }
  if (document.documentElement.scrollWidth > window.innerWidth + 1) overflow.push('the page scrolls sideways');
  const figures = [...article.querySelectorAll('a.glightbox')].map(a => {
    const img = a.querySelector('img');
    return {scheme: a.classList.contains('figure-dark') ? 'dark' : 'light', shown: img.getBoundingClientRect().width > 0,
            width: img.getBoundingClientRect().width, src: img.currentSrc || img.src};
  });
  const copy = article.cloneNode(true);
  copy.querySelectorAll('.katex-mathml, pre, code, script, style').forEach(e => e.remove());
  const text = copy.textContent;
  const tex = (text.match(/\\[\(\)\[\]]|\\(frac|partial|sqrt|begin|end|mathrm|operatorname|top|sum)\b|\$\$/g) || []);
  return {
    overflow, figures, tex: tex.slice(0, 5),
    formulas: article.querySelectorAll('.katex').length,
    withoutMathML: article.querySelectorAll('.katex:not(:has(> .katex-mathml math semantics annotation))').length,
    scheme: document.body.getAttribute('data-md-color-scheme'),
  };
}"""


def _legible_px(built_site: Path, src: str, width: float) -> float:
    from derivations.figures import _svg

    svg = (built_site / urlparse(src).path.lstrip("/")).read_text(encoding="utf-8")
    return min(base for base, _ in _svg.text_sizes(svg)) * width / _svg.width_units(svg)


def _empty_search_index(built_site: Path) -> str:
    """Material's search index as the sweep serves it after the first page: the site's own settings
    with no documents, or every page would build the whole index again in its search worker (0.4 s
    of CPU a page). The first page of each screen gets the real one, and only the index's own URL
    is stubbed: an index asked for at a wrong path still reaches the server (and fails as a 404)."""
    real = json.loads((built_site / "search" / "search_index.json").read_text(encoding="utf-8"))
    return json.dumps({"config": real["config"], "docs": []})


# Once a page on the laptop, over the whole document: formulas KaTeX did not render, its errors (also
# when shown in its error colour), raw "$" in a notebook's Markdown, and whether KaTeX's fonts loaded.
MATH = r"""async () => {
  await document.fonts.ready;
  return {
    unrendered: document.querySelectorAll('.arithmatex:not(:has(.katex))').length,
    errors: document.querySelectorAll('.katex-error').length,
    red: [...document.querySelectorAll('.katex *')].filter(e => getComputedStyle(e).color === 'rgb(204, 0, 0)').length,
    rawDollar: [...document.querySelectorAll('.jp-RenderedMarkdown')].filter(
        e => /\$[^$\s][^$]*\$/.test(e.textContent)).length,
    katexFontLoaded: document.fonts.check('16px KaTeX_Main'),
    math: document.querySelectorAll('.katex').length,
  };
}"""


def _math_problems(counts: dict) -> list[str]:
    problems = [f"{key}: {counts[key]}" for key in ("unrendered", "errors", "red", "rawDollar") if counts[key]]
    if counts["math"] and not counts["katexFontLoaded"]:
        problems.append("KaTeX fonts did not load")
    return problems


async def _settle(watch: PageWatch, loaded: float) -> None:
    """Stay on the page ``SETTLE_S`` after its load event, and until none of its requests is in flight."""
    await asyncio.sleep(max(0.0, loaded + SETTLE_S - time.monotonic()))
    while watch.in_flight and time.monotonic() < loaded + STILL_LOADING_S:
        await asyncio.sleep(0.02)
    if watch.in_flight:
        watch.problems.append(f"{watch.label}: still loading {STILL_LOADING_S:.0f} s after its load event: "
                              f"{sorted(r.url for r in watch.in_flight)}")


async def _inspect_screen(browser, server: str, pages: list[str], screen: str,
                          empty_index: str) -> tuple[list[str], list[dict]]:
    """Every page on one screen: in the light scheme, then switched to the dark one the way
    Material's toggle does it (the body's ``data-md-color-scheme``), so each page loads once."""
    # The system asks for reduced motion, so Material turns off every CSS transition: its colours no
    # longer fade for a quarter of a second, frame by frame, on load and on the switch to the dark
    # scheme (12 % of the sweep's CPU). The sweep checks pages once they have settled, not motion.
    context = await browser.new_context(color_scheme="light", reduced_motion="reduce", service_workers="block",
                                        **SCREENS[screen])
    guard = OffsiteGuard()
    await guard.attach(context)
    first = f"/{pages[0]} [{screen}]"
    await context.route(f"{server}/search/search_index.json", lambda route: route.continue_() if guard.page == first
                        else route.fulfill(status=200, content_type="application/json", body=empty_index))
    page = await context.new_page()
    watch = PageWatch(page)
    problems, figures = [], []
    for rel in pages:
        label = f"/{rel} [{screen}]"
        guard.page = watch.label = label
        await page.goto(f"{server}/{'' if rel == '.' else rel + '/'}", wait_until="load")
        loaded = time.monotonic()
        await page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager')")
        if screen == "laptop":
            problems += [f"{label}: {problem}" for problem in _math_problems(await page.evaluate(MATH))]
        for scheme in SCHEMES:
            if scheme == "dark":
                await page.evaluate("document.body.setAttribute('data-md-color-scheme', 'slate')")
            await page.wait_for_function("[...document.images].every(i => i.complete)")
            report = await page.evaluate(INSPECT)
            label = f"/{rel} [{screen}, {scheme}]"
            if scheme == "light" and report["scheme"] != "default":
                problems.append(f"{label}: the system prefers light, Material chose the {report['scheme']} scheme")
            problems += [f"{label}: {item}" for item in report["overflow"]]
            if report["tex"]:
                problems.append(f"{label}: raw TeX in the text: {report['tex']}")
            if report["withoutMathML"]:
                problems.append(f"{label}: {report['withoutMathML']} of {report['formulas']} formulas without MathML")
            for figure in report["figures"]:
                if figure["shown"] != (figure["scheme"] == scheme):
                    problems.append(f"{label}: the {figure['scheme']} drawing of {figure['src']} is "
                                    f"{'shown' if figure['shown'] else 'hidden'}")
                elif figure["shown"]:
                    figures.append({**figure, "label": label, "screen": screen})
        await _settle(watch, loaded)
    await context.close()
    return problems + watch.problems + guard.seen, figures


async def _dark_system_gets_the_dark_scheme(browser, server: str, screen: str) -> list[str]:
    """Material picks its dark scheme when the system prefers dark (the palette's media query).
    (The light one, when the system prefers light, the sweep sees on its first page.)"""
    context = await browser.new_context(color_scheme="dark", service_workers="block", **SCREENS[screen])
    guard = OffsiteGuard()
    await guard.attach(context)
    page = await context.new_page()
    watch = PageWatch(page, label=f"/attention-gradients/ [{screen}, system dark]")
    guard.page = watch.label
    await page.goto(f"{server}/attention-gradients/", wait_until="load")
    loaded = time.monotonic()
    chosen = await page.evaluate("document.body.getAttribute('data-md-color-scheme')")
    shown = await page.evaluate("[...document.querySelectorAll('a.glightbox')].filter("
                                "a => a.querySelector('img').getBoundingClientRect().width > 0).map(a => a.className)")
    problems = []
    if chosen != "slate":
        problems.append(f"{watch.label}: Material chose the {chosen} scheme")
    if not shown or any("figure-dark" not in c for c in shown):
        problems.append(f"{watch.label}: figures shown: {shown}")
    await _settle(watch, loaded)
    await context.close()
    return problems + watch.problems + guard.seen


def test_every_page_at_both_widths_in_both_schemes(built_site: Path, server: str) -> None:
    if CHROMIUM is None:
        skip_or_fail("Debian's chromium-headless-shell (or chromium) is not installed (scripts/test installs it where it can)")
    from playwright.async_api import async_playwright

    from derivations.figures import NARROW

    pages = site_pages(built_site)
    assert len(pages) >= 15 and pages[0] == "."
    empty_index = _empty_search_index(built_site)

    async def run():
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            # The two screens side by side: loading and laying out a page is most of the time.
            results = await asyncio.gather(*(_inspect_screen(browser, server, pages, screen, empty_index)
                                             for screen in SCREENS),
                                           *(_dark_system_gets_the_dark_scheme(browser, server, screen)
                                             for screen in SCREENS))
            await browser.close()
            return results

    *screens, dark_laptop, dark_phone = asyncio.run(run())
    problems = dark_laptop + dark_phone
    shown = {"laptop": 0, "phone": 0}
    for screen_problems, figures in screens:
        problems += screen_problems
        for figure in figures:
            shown[figure["screen"]] += 1
            px = _legible_px(built_site, figure["src"], figure["width"])
            if px < MIN_TEXT_PX:
                problems.append(f"{figure['label']}: {figure['src']} shown {figure['width']:.0f} px wide: "
                                f"smallest text {px:.1f} px")
            name = Path(urlparse(figure["src"]).path).stem.removesuffix("-dark")
            if figure["screen"] == "phone" and name in NARROW:
                problems.append(f"{figure['label']}: the phone got {name}, not its narrow layout")
    assert not problems, "\n".join(problems)
    from derivations.figures import FIGURES

    assert shown["laptop"] >= 2 * len(FIGURES) and shown["phone"] >= 2 * len(FIGURES), shown


def test_search_finds_words_after_punctuation(server: str, browser) -> None:
    context, guard = _guarded_context(browser, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"{server}/", wait_until="load")
    found = {}
    # The word as a reader types it; a result matched on it links with "?h=<matched terms>" (Material
    # splits the query as it split the pages, so "FlashAttention" also matches as "flash" + "attention").
    for word, term in (("Einstein", "einstein"), ("FlashAttention", "flash")):
        page.click("input.md-search__input")
        page.fill("input.md-search__input", "")
        page.keyboard.type(word)
        page.wait_for_function("t => [...document.querySelectorAll('.md-search-result__item a')].some("
                               "a => new URL(a.href).searchParams.get('h').split(' ').includes(t))", arg=term,
                               timeout=20000)
        found[word] = [href for href in page.eval_on_selector_all(".md-search-result__item a", "els => els.map(e => e.href)")
                       if term in (parse_qs(urlparse(href).query).get("h", [""])[0].split())]
        page.keyboard.press("Escape")
    context.close()
    assert any("/notation/" in href for href in found["Einstein"]), found["Einstein"]
    assert any("/attention-gradients/" in href for href in found["FlashAttention"]), found["FlashAttention"]
    assert not guard.seen, guard.seen


def test_a_figure_opens_in_the_lightbox_from_this_site(server: str, browser) -> None:
    context, guard = _guarded_context(browser, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"{server}/attention-gradients/", wait_until="load")
    page.locator("a.glightbox.figure-light").first.click()
    page.wait_for_selector(".glightbox-container .gslide-image img", state="visible", timeout=10000)
    src = page.eval_on_selector(".glightbox-container .gslide-image img", "img => img.currentSrc")
    shown = page.eval_on_selector(".glightbox-container .gslide-image img", "img => img.getBoundingClientRect().width")
    context.close()
    assert urlparse(src).hostname in LOCAL_HOSTS and re.search(r"/vis/\w+\.svg$", src), src
    assert shown > 900, f"the enlarged figure is only {shown:.0f} px wide"
    assert not guard.seen, guard.seen


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
    context, guard = _guarded_context(browser)
    page = context.new_page()
    guard.page = "/probe"
    page.goto(probe_server, wait_until="load")
    assert guard.urls() == ["https://example.invalid/x.png"]
    page.evaluate("() => {" + "; ".join(PROBES.values()) + "}")
    deadline = time.monotonic() + 10
    while not set(PROBE_URLS.values()) <= set(guard.urls()) and time.monotonic() < deadline:
        page.wait_for_timeout(20)
    local_fetch = page.evaluate(f'() => fetch("{probe_server}").then(r => r.status)')
    context.close()
    assert local_fetch == 200  # localhost still works
    missing = [kind for kind, url in PROBE_URLS.items() if url not in guard.urls()]
    assert not missing, f"the guard missed: {missing}; it saw {guard.seen}"
    assert all(entry.startswith("/probe: ") for entry in guard.seen)
