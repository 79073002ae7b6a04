"""The site a reader expects: menu labels that are the pages' titles, pages under the weight limit,
numbered figures the text refers to correctly, and the markup the layout relies on.

The unit tests at the top need no build; the rest read the site built once for the session.
"""

from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path

import pytest

from conftest import DOCS, ROOT

pytestmark = pytest.mark.xdist_group("site")


# ----------------------------------------------------------------------------- navigation


def _nav_entries(entries) -> list[tuple[str, str]]:
    """(label, page) for every page in the nav, groups included."""
    out = []
    for entry in entries:
        ((label, target),) = entry.items()
        if isinstance(target, list):
            out += _nav_entries(target)
        else:
            out.append((label, target))
    return out


def _title(page: Path) -> str:
    if page.suffix == ".ipynb":
        cells = json.loads(page.read_text(encoding="utf-8"))["cells"]
        text = "".join(next(c for c in cells if c["cell_type"] == "markdown")["source"])
    else:
        text = page.read_text(encoding="utf-8")
    return next(line[2:].strip() for line in text.splitlines() if line.startswith("# "))


def test_every_menu_label_is_its_pages_title() -> None:
    from mkdocs.utils.yaml import yaml_load

    with open(ROOT / "mkdocs.yml", encoding="utf-8") as source:
        entries = _nav_entries(yaml_load(source)["nav"])
    assert len(entries) >= 10
    wrong = [f"{page}: menu says {label!r}, the page's title is {_title(DOCS / page)!r}"
             for label, page in entries if label != _title(DOCS / page)]
    assert not wrong, "\n".join(wrong)
    listed = {page for _, page in entries}
    unlisted = [p.relative_to(DOCS).as_posix() for p in [*DOCS.rglob("*.md"), *DOCS.rglob("*.ipynb")]
                if p.relative_to(DOCS).as_posix() not in listed]
    assert not unlisted, f"pages missing from the menu: {unlisted}"


# ----------------------------------------------------------------------------- unit: markup helpers


def test_output_blocks_are_marked_and_long_ones_folded() -> None:
    import outputblocks

    code = '<div class="language-python highlight"><pre><span></span><code>print(1)</code></pre></div>'
    out = '<div class="highlight"><pre><span></span><code>{}</code></pre></div>'
    short = outputblocks.mark(code + "\n" + out.format("1\n2"))
    assert short.count("exec-output no-copy") == 1
    assert short.index("exec-output") > short.index("language-python")  # the output, not the code
    assert "<details" not in short
    many = "\n".join(str(i) for i in range(outputblocks.LONG_OUTPUT_LINES + 1))
    folded = outputblocks.mark(code + out.format(many))
    assert f"<summary>Output: {outputblocks.LONG_OUTPUT_LINES + 1} lines</summary>" in folded
    exactly = "\n".join(str(i) for i in range(outputblocks.LONG_OUTPUT_LINES))
    assert "<details" not in outputblocks.mark(code + out.format(exactly))
    # code alone (with its source shown) is never taken for output; an empty output box is dropped
    assert outputblocks.mark(code) == code
    assert outputblocks.mark(code + out.format("")) == code
    assert "exec-output" in outputblocks.mark(out.format("x"), with_source=False)


def test_figure_images_become_light_and_dark_links_with_the_phone_layout() -> None:
    import figurepage

    drawings = {"demo": figurepage.Drawing(800, 300, narrow=(440, 600)), "plain": figurepage.Drawing(400, 300)}
    page = '<p><img alt="what it shows" src="../vis/demo.svg" /></p><p><img alt="x" src="vis/plain.svg"></p>'
    html, errors = figurepage.expand(page, drawings)
    assert errors == []
    assert html.count('class="glightbox figure-light"') == 2 and html.count('class="glightbox figure-dark"') == 2
    assert 'href="../vis/demo-dark.svg"' in html and 'srcset="../vis/demo-narrow-dark.svg"' in html
    assert 'srcset="../vis/demo-narrow.svg" width="440" height="600"' in html
    assert 'width="800" height="300"' in html
    assert "plain-narrow" not in html  # no phone layout drawn, none offered
    assert html.count('alt="what it shows"') == 2
    _, errors = figurepage.expand('<img alt="" src="vis/demo.svg">', drawings)
    assert any("alt text" in e for e in errors)
    _, errors = figurepage.expand('<img alt="a" src="vis/missing.svg">', drawings)
    assert any("missing" in e for e in errors)


def test_slim_keeps_what_renders_and_drops_only_inert_markup() -> None:
    import pageweight

    page = ('<math xmlns="http://www.w3.org/1998/Math/MathML" display="block"><mi>x</mi></math>'
            '<pre><code><span class="n">x</span><span class="w"> </span><span class="o">=</span>'
            '<span class="mi">1</span></code></pre><p><span class="n">prose</span></p>')
    slim = pageweight.slim(page)
    assert '<math display="block"><mi>x</mi></math>' in slim
    assert '<code>x <span class="o">=</span><span class="mi">1</span></code>' in slim
    assert '<span class="n">prose</span>' in slim  # outside code nothing is touched


def test_compact_styles_short_names_are_stable_and_do_not_collide_with_pygments() -> None:
    import mathrender

    page = ('<head></head><span style="a:1">x</span><span class="kc" style="b:2">y</span>'
            '<span style="b:2">z</span>')
    out = mathrender.compact_styles(page)
    assert '<span class="kc k-0">y</span>' in out and '<span class="k-0">z</span>' in out  # b:2 is the commoner
    assert '<span class="k-1">x</span>' in out
    assert ".k-0{b:2 !important}.k-1{a:1 !important}" in out
    assert mathrender.compact_styles(page) == out


# ----------------------------------------------------------------------------- the built site


def test_no_page_is_over_the_weight_limit(built_site: Path) -> None:
    import pageweight

    heavy = [f"{p.relative_to(built_site)}: {p.stat().st_size:,} bytes"
             for p in sorted(built_site.rglob("*.html")) if p.stat().st_size > pageweight.LIMIT]
    assert not heavy, f"pages over {pageweight.LIMIT:,} bytes of HTML:\n" + "\n".join(heavy)


def _figures(page_html: str) -> list[tuple[str, str, str]]:
    """(id, number, figure html) of every numbered figure of a page."""
    return [(m.group(1), m.group(3), m.group(0)) for m in re.finditer(
        r'<figure id="([^"]+)">(.*?)<span class="caption-prefix">Figure (\d+)\.</span>.*?</figure>', page_html, re.S)]


def test_every_figure_is_numbered_and_every_figure_reference_is_right(built_site: Path) -> None:
    problems, n_figures = [], 0
    numbers: dict[tuple[str, str], str] = {}  # (page dir, id) -> number
    pages = sorted(built_site.rglob("index.html"))
    for page in pages:
        html = page.read_text(encoding="utf-8")
        figures = _figures(html)
        n_figures += len(figures)
        for k, (fid, number, figure) in enumerate(figures, start=1):
            numbers[page.parent.relative_to(built_site).as_posix(), fid] = number
            if number != str(k):
                problems.append(f"{page}: figure {fid} is numbered {number}, but is figure {k} of the page")
            if "vis/" not in figure:
                problems.append(f"{page}: figure {fid} holds no drawing")
        article = html[html.find("<article"):html.find("</article>")]
        shown = len(re.findall(r'<a class="glightbox figure-light"', article))
        if shown != len(figures):
            problems.append(f"{page}: {shown} figures shown, {len(figures)} with a numbered caption")
    for page in pages:
        here = page.parent.relative_to(built_site).as_posix()
        html = page.read_text(encoding="utf-8")
        for href, text in re.findall(r'<a href="([^"]*#fig-[^"]+)">(Figure \d+)[^<]*</a>', html):
            target, _, fid = href.partition("#")
            where = posixpath.normpath(posixpath.join(here, target)) if target else here
            number = numbers.get((where, fid))
            if number is None:
                problems.append(f"{page}: {text!r} links to {href}, which is no numbered figure")
            elif text != f"Figure {number}":
                problems.append(f"{page}: {text!r} links to {href}, which is Figure {number}")
    assert n_figures >= 12
    assert not problems, "\n".join(problems)


def test_every_figure_has_its_dark_version_and_phone_layout(built_site: Path) -> None:
    from derivations.figures import FIGURES, NARROW

    vis = built_site / "vis"
    for name in FIGURES:
        assert (vis / f"{name}-dark.svg").exists(), name
        assert (vis / f"{name}-narrow.svg").exists() == (name in NARROW), name
        assert (vis / f"{name}-narrow-dark.svg").exists() == (name in NARROW), name


def test_the_build_reads_the_figure_catalogue_as_the_makers_register_it(tmp_path: Path) -> None:
    """The build lists the figures from the makers' source, without importing them; the list must be
    the registry's, and a registration it cannot read is an error, not a figure left out."""
    import figurejobs
    from derivations.figures import FIGURES, NARROW

    assert figurejobs.catalogue() == {name: list(figurejobs.VARIANTS if name in NARROW else figurejobs.VARIANTS[:2])
                                      for name in sorted(FIGURES)}
    package = tmp_path / "figures"
    package.mkdir()
    (package / "a.py").write_text('@register("wide_only")\ndef a(): ...\n\n@register(name="both", narrow=True)\ndef b(): ...\n')
    assert figurejobs.catalogue(package) == {"both": list(figurejobs.VARIANTS), "wide_only": ["", "-dark"]}
    for body, message in [("NAME = 'x'\n@register(NAME)\ndef a(): ...\n", "a literal name"),
                          ("@register('x', narrow=WIDE)\ndef a(): ...\n", "a literal name"),
                          ("@register('x')\ndef a(): ...\n@register('x')\ndef b(): ...\n", "registered twice")]:
        (package / "a.py").write_text(body)
        with pytest.raises(ValueError, match=message) as error:
            figurejobs.catalogue(package)
        assert "a.py:" in str(error.value)


def test_home_page_lists_every_chapter_in_reading_order(built_site: Path) -> None:
    html = (built_site / "index.html").read_text(encoding="utf-8")
    section = html[html.index('id="reading-order"'):html.index('id="two-models-one-code-base"')]
    linked = re.findall(r'<li><a href="([^"]+)"', section)
    assert linked == ["notation/", "attention-gradients/", "transformer-backward/",
                      "notebooks/backward-walkthrough/", "gradient-flow/", "autodiff-engines/"]
    assert len(re.findall(r"about\s+\d+\s+min", section)) == len(linked)
