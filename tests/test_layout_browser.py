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
- no request leaves localhost.

Once: Material's search finds words that follow punctuation ("Einstein", "FlashAttention"), and a
figure opens in the lightbox, from this site.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from conftest import CHROMIUM, LAUNCH_ARGS, chromium, site_pages, skip_or_fail, static_server

pytestmark = pytest.mark.xdist_group("layout")  # the built site is shared across workers (conftest built_site)

LOCAL_HOSTS = {"127.0.0.1", "localhost"}
MIN_TEXT_PX = 8.0
SCREENS = {"laptop": {"viewport": {"width": 1280, "height": 800}},
           "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True,
                     "device_scale_factor": 2}}
SCHEMES = ("light", "dark")


@pytest.fixture(scope="module")
def server(built_site: Path):
    with static_server(built_site) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


def _guarded_context(browser, remote: list[str], **options):
    """A browser context that aborts, and records, any request to a host other than this machine."""
    context = browser.new_context(**options)

    def route(route_, request):
        if urlparse(request.url).hostname not in LOCAL_HOSTS and not request.url.startswith(("data:", "blob:")):
            remote.append(request.url)
            return route_.abort()
        return route_.continue_()

    context.route("**/*", route)
    return context


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


async def _inspect_screen(browser, server: str, pages: list[str], screen: str) -> tuple[list[str], list[dict], list[str]]:
    """Every page on one screen: in the light scheme, then switched to the dark one the way
    Material's toggle does it (the body's ``data-md-color-scheme``), so each page loads once."""
    remote: list[str] = []
    context = await browser.new_context(**SCREENS[screen])

    async def route(route_, request):
        if urlparse(request.url).hostname not in LOCAL_HOSTS and not request.url.startswith(("data:", "blob:")):
            remote.append(request.url)
            return await route_.abort()
        if "/search/search_index.json" in request.url:  # every page would build the search index again
            return await route_.fulfill(status=200, content_type="application/json",
                                        body='{"config": {"lang": ["en"], "separator": "[\\\\s]+", "pipeline": []}, "docs": []}')
        return await route_.continue_()

    await context.route("**/*", route)
    page = await context.new_page()
    problems, figures = [], []
    for rel in pages:
        await page.goto(f"{server}/{'' if rel == '.' else rel + '/'}", wait_until="load")
        await page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager')")
        for scheme in SCHEMES:
            if scheme == "dark":
                await page.evaluate("document.body.setAttribute('data-md-color-scheme', 'slate')")
            await page.wait_for_function("[...document.images].every(i => i.complete)")
            report = await page.evaluate(INSPECT)
            label = f"/{rel} [{screen}, {scheme}]"
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
    await context.close()
    return problems, figures, remote


async def _scheme_follows_the_system(browser, server: str, screen: str) -> list[str]:
    """Material picks its dark scheme when the system prefers dark (the palette's media query)."""
    problems = []
    for scheme, expected in (("light", "default"), ("dark", "slate")):
        context = await browser.new_context(color_scheme=scheme, **SCREENS[screen])
        page = await context.new_page()
        await page.goto(f"{server}/attention-gradients/", wait_until="load")
        chosen = await page.evaluate("document.body.getAttribute('data-md-color-scheme')")
        shown = await page.evaluate("[...document.querySelectorAll('a.glightbox')].filter("
                                    "a => a.querySelector('img').getBoundingClientRect().width > 0).map(a => a.className)")
        if chosen != expected:
            problems.append(f"[{screen}, system {scheme}]: Material chose the {chosen} scheme")
        if not shown or any(f"figure-{scheme}" not in c for c in shown):
            problems.append(f"[{screen}, system {scheme}]: figures shown: {shown}")
        await context.close()
    return problems


def test_every_page_at_both_widths_in_both_schemes(built_site: Path, server: str) -> None:
    if CHROMIUM is None:
        skip_or_fail("Debian's chromium is not installed (scripts/test installs it where it can)")
    import asyncio

    from playwright.async_api import async_playwright

    from derivations.figures import NARROW

    pages = site_pages(built_site)
    assert len(pages) >= 15

    async def run():
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            # The two screens side by side: loading and laying out a page is most of the time.
            results = await asyncio.gather(*(_inspect_screen(browser, server, pages, screen) for screen in SCREENS),
                                           *(_scheme_follows_the_system(browser, server, screen) for screen in SCREENS))
            await browser.close()
            return results

    *screens, scheme_laptop, scheme_phone = asyncio.run(run())
    problems = scheme_laptop + scheme_phone
    shown = {"laptop": 0, "phone": 0}
    for screen_problems, figures, remote in screens:
        problems += screen_problems + [f"request leaving localhost: {url}" for url in remote]
        for figure in figures:
            shown[figure["screen"]] += 1
            px = _legible_px(built_site, figure["src"], figure["width"])
            if px < MIN_TEXT_PX:
                problems.append(f"{figure['label']}: {figure['src']} shown {figure['width']:.0f} px wide: "
                                f"smallest text {px:.1f} px")
            name = Path(urlparse(figure["src"]).path).stem.removesuffix("-dark")
            if figure["screen"] == "phone" and name in NARROW:
                problems.append(f"{figure['label']}: the phone got {name}, not its narrow layout")
    from derivations.figures import FIGURES

    assert shown["laptop"] >= 2 * len(FIGURES) and shown["phone"] >= 2 * len(FIGURES), shown
    assert not problems, "\n".join(problems)


def test_search_finds_words_after_punctuation(server: str, browser) -> None:
    remote: list[str] = []
    context = _guarded_context(browser, remote, viewport={"width": 1280, "height": 800})
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
    assert not remote


def test_a_figure_opens_in_the_lightbox_from_this_site(server: str, browser) -> None:
    remote: list[str] = []
    context = _guarded_context(browser, remote, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"{server}/attention-gradients/", wait_until="load")
    page.locator("a.glightbox.figure-light").first.click()
    page.wait_for_selector(".glightbox-container .gslide-image img", state="visible", timeout=10000)
    src = page.eval_on_selector(".glightbox-container .gslide-image img", "img => img.currentSrc")
    shown = page.eval_on_selector(".glightbox-container .gslide-image img", "img => img.getBoundingClientRect().width")
    context.close()
    assert urlparse(src).hostname in LOCAL_HOSTS and re.search(r"/vis/\w+\.svg$", src), src
    assert shown > 900, f"the enlarged figure is only {shown:.0f} px wide"
    assert not remote, remote
