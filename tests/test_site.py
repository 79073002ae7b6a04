"""The built site: strict build, math rendered, figures present, self-contained, reproducible,
and every kind of bad input fails the build with the page and the reason.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest

from conftest import copy_registry_pages, mkdocs_build, write_config

pytestmark = pytest.mark.xdist_group("site")  # one worker builds the site once for all of these

EXTERNAL_RESOURCE = re.compile(
    r"""<(?:script|img|iframe|source|audio|video)\b[^>]*\bsrc=["'](?:https?:)?//"""
    r"""|<link\b[^>]*\bhref=["'](?:https?:)?//"""
    r"""|url\(\s*["']?(?:https?:)?//"""
    r"""|@import\s+["'](?:https?:)?//"""
    r"""|import\(\s*["'](?:https?:)?//""",
    re.IGNORECASE,
)


def pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if p.name != "404.html")


def test_every_formula_is_rendered(built_site: Path) -> None:
    for page in pages(built_site):
        html = page.read_text(encoding="utf-8")
        raw = re.findall(r'class="arithmatex">\s*\\[\(\[]', html)
        assert not raw, f"{page.relative_to(built_site)}: {len(raw)} formulas left unrendered"
        assert "katex-error" not in html


def test_pages_have_math_and_run_code(built_site: Path) -> None:
    html = (built_site / "attention-gradients" / "index.html").read_text(encoding="utf-8")
    assert html.count('class="katex"') > 50
    assert "Traceback" not in html


def test_figures_are_built(built_site: Path) -> None:
    from derivations.figures import FIGURES

    for name in FIGURES:
        svg = built_site / "vis" / f"{name}.svg"
        assert svg.exists(), f"vis/{name}.svg missing from the site"
        assert svg.read_text(encoding="utf-8").lstrip().startswith(("<?xml", "<svg"))


def test_no_resource_from_another_host(built_site: Path) -> None:
    offenders = []
    for path in built_site.rglob("*"):
        if path.suffix in {".html", ".css"}:
            for match in EXTERNAL_RESOURCE.finditer(path.read_text(encoding="utf-8", errors="replace")):
                offenders.append(f"{path.relative_to(built_site)}: {match.group(0)}")
    assert not offenders, "\n".join(offenders)


def test_claims_page_reports_every_claim_verified(built_site: Path) -> None:
    from derivations.symbolic import CLAIMS

    html = (built_site / "claims" / "index.html").read_text(encoding="utf-8")
    assert html.count("verified by SymPy for this version") == len(CLAIMS)
    assert "FAILED" not in html and "not verified" not in html


def test_claim_badges_link_to_the_claims_page(built_site: Path) -> None:
    html = (built_site / "attention-gradients" / "index.html").read_text(encoding="utf-8")
    assert 'href="../claims/#claim-softmax-jacobian"' in html


def test_build_is_reproducible(built_site: Path, tmp_path: Path) -> None:
    second = tmp_path / "again"
    result = mkdocs_build(second)
    assert result.returncode == 0, result.stdout + result.stderr
    first_files = {p.relative_to(built_site) for p in built_site.rglob("*") if p.is_file()}
    second_files = {p.relative_to(second) for p in second.rglob("*") if p.is_file()}
    assert first_files == second_files
    differ = [str(f) for f in sorted(first_files) if (built_site / f).read_bytes() != (second / f).read_bytes()]
    assert not differ, f"files differ between two builds: {differ}"


# ----------------------------------------------------------------------------- bad input fails the build


def mini_site(tmp_path: Path, page: str) -> subprocess.CompletedProcess:
    """Build a one-page site with the real configuration and hooks (the exercises' tests use it)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\nSee [the page](page.md).\n")
    (docs / "page.md").write_text(page)
    copy_registry_pages(docs)
    return mkdocs_build(tmp_path / "site", write_config(tmp_path, docs, nav=None))


def write_notebook(path: Path, markdown_cell: str) -> None:
    """A notebook whose first cell is ``markdown_cell`` and whose second prints 42."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(markdown_cell), nbformat.v4.new_code_cell("print(6 * 7)")]
    nbformat.write(nb, path)


BAD_PAGES = {
    "formula KaTeX cannot parse": ("# P\n\nline three\n\n\\[ \\frac{1}{ \\]\n", r"docs/page.md:5: KaTeX cannot render"),
    "MathJax-only command": ("# P\n\nInline \\( \\mbox{x} \\) here.\n", r"docs/page.md:3: KaTeX cannot render"),
    "unknown claim": ("# P\n\n[[claim: no.such-claim]]\n", r"docs/page.md: line 3: unknown claim id 'no.such-claim'"),
    "code block that raises": (
        '# P\n\n```python exec="on" session="page"\nx = 1\nraise ValueError("boom")\n```\n',
        r"docs/page.md:5: ValueError: boom",
    ),
    "claim written inline": ("# P\n\nSee [[claim: softmax.vjp]] here.\n", "docs/page.md:3: marker not expanded"),
    "mistyped claim marker": ("# P\n\ntext\n\n[[claim: softmax.vjp]\n", "docs/page.md:5: marker not expanded"),
    "value never computed": (
        '# P\n\n```python exec="on" session="page"\nx = 1\n```\n\nIt is {{ y }}.\n',
        "docs/page.md:7: {{ y }}: 'y' is not a number",
    ),
    "false check": (
        '# P\n\n```python exec="on" session="page"\nbigger = 2 > 3\n```\n\nTwo is bigger.{{ check: bigger }}\n',
        "docs/page.md:7: {{ check: bigger }}: check 'bigger' is false",
    ),
    "math in a place KaTeX never sees": ("# P\n\n<p markdown>`x`</p>\n\n<div>\\(a\\)</div>\n",
                                         "raw TeX or an unexpanded marker would reach readers"),
    "broken link": ("# P\n\nSee [nowhere](missing.md).\n", r"'missing.md'"),
    "broken anchor": ("# P\n\nSee [home](index.md#no-such-heading).\n", r"no-such-heading"),
}


BAD_NAMES = {kind: f"bad{number}" for number, kind in enumerate(BAD_PAGES)}

# Notebooks (nb0.ipynb, ...): a Markdown cell with the problem, and the error that must name the notebook.
BAD_NOTEBOOK_CELLS = {
    "broken math after a claim line": ("# NB\n\n[[claim: softmax.vjp]]\n\nThen $\\frac{a$ here.", "KaTeX cannot render"),
    "malformed claim marker": ("# NB\n\nSee [[claim: softmax.vjp] here.", "unexpanded marker"),
    "unknown claim": ("# NB\n\n[[claim: no.such-claim]]", "unknown claim id 'no.such-claim'"),
}


GOOD_PAGE = (
    "# P\n\n## Section\n\nInline \\( \\delta^{i}_{m} \\) and a claim:\n\n[[claim: softmax.jacobian]]\n\n"
    '```python exec="on" session="good"\nprint("computed", 6 * 7)\n```\n\n[back](index.md) and [here](#section).\n'
)
GOOD_NOTEBOOK_CELL = "# NB\n\n[[claim: softmax.vjp]]\n\nThen $x^{2}$ and $$\\frac{a}{b}$$ here."


class MixedSite(NamedTuple):
    site: Path
    log: str


@pytest.fixture(scope="module")
def mixed_site(tmp_path_factory) -> MixedSite:
    """One site holding every bad page (bad0.md, bad1.md, ...) and every bad notebook (nb0.ipynb,
    ...), and as their control a page and a notebook that use every feature correctly (good.md,
    good-nb.ipynb), built once with the real configuration and hooks. A strict build reports every
    problem it finds, and writes every page, before it aborts: so each bad page's error must be in
    this one log, no error may name the good ones, and their pages must be complete."""
    root = tmp_path_factory.mktemp("mixed-site")
    docs = root / "docs"
    docs.mkdir()
    links = "".join(f"- [{name}]({name}.md)\n" for name in BAD_NAMES.values())
    links += "".join(f"- [nb{n}](nb{n}.ipynb)\n" for n in range(len(BAD_NOTEBOOK_CELLS)))
    (docs / "index.md").write_text(f"# Home\n\n{links}- [good](good.md)\n- [good notebook](good-nb.ipynb)\n")
    copy_registry_pages(docs)
    for kind, (page, _) in BAD_PAGES.items():
        (docs / f"{BAD_NAMES[kind]}.md").write_text(page.replace('session="page"', f'session="{BAD_NAMES[kind]}"'))
    for number, (cell, _) in enumerate(BAD_NOTEBOOK_CELLS.values()):
        write_notebook(docs / f"nb{number}.ipynb", cell)
    (docs / "good.md").write_text(GOOD_PAGE)
    write_notebook(docs / "good-nb.ipynb", GOOD_NOTEBOOK_CELL)
    result = mkdocs_build(root / "site", write_config(root, docs, nav=None))
    assert result.returncode != 0, "a site made of bad pages built"
    return MixedSite(root / "site", result.stdout + result.stderr)


@pytest.mark.parametrize("kind", list(BAD_PAGES))
def test_bad_input_fails_the_build(mixed_site: MixedSite, kind: str) -> None:
    bad_site_log = mixed_site.log
    message = BAD_PAGES[kind][1].replace("docs/page.md", f"docs/{BAD_NAMES[kind]}.md")
    if "docs/" not in message:  # the page must be named even where the message itself does not name it
        lines = [line for line in bad_site_log.splitlines() if message in line]
        assert any(BAD_NAMES[kind] in line for line in lines), f"{kind}: no error naming the page\n{bad_site_log}"
    assert message in bad_site_log, f"{kind}: the error does not say {message!r}\n{bad_site_log}"


def test_good_page_and_notebook_beside_the_bad_ones_are_complete(mixed_site: MixedSite) -> None:
    page = (mixed_site.site / "good" / "index.html").read_text(encoding="utf-8")
    assert "computed 42" in page and 'class="katex"' in page and "claim-badge" in page
    notebook = (mixed_site.site / "good-nb" / "index.html").read_text(encoding="utf-8")
    assert notebook.count('class="katex"') >= 3 and "claim-badge" in notebook and "42" in notebook


def test_every_error_comes_from_a_bad_page(mixed_site: MixedSite) -> None:
    """The control of the bad pages: the good page and notebook built beside them raise nothing,
    so each error below is the bad input's own and not the harness's or the hooks'."""
    records = re.split(r"\n(?=[A-Z]+ +- )", mixed_site.log)  # a record: its line and the lines it continues on
    problems = [record for record in records if record.startswith(("ERROR", "WARNING"))]
    assert len(problems) >= len(BAD_PAGES) + len(BAD_NOTEBOOK_CELLS), mixed_site.log
    unexplained = [record for record in problems if not re.search(r"\b(bad\d+\.md|nb\d+\.ipynb)\b", record)]
    assert not unexplained, "\n".join(unexplained)


def test_internal_links_and_anchors_resolve(built_site: Path) -> None:
    """Every internal link of the built site reaches a file, and its #anchor an element id.

    MkDocs validates links written in Markdown; this also covers links the hooks add after
    rendering (claim badges in the notebook) and links inside generated pages.
    """
    href = re.compile(r'<a\b[^>]*\bhref="([^"#?:]*)(?:#([^"]*))?"')
    ids_of: dict[Path, set[str]] = {}

    def ids(path: Path) -> set[str]:
        if path not in ids_of:
            ids_of[path] = set(re.findall(r'\bid="([^"]+)"', path.read_text(encoding="utf-8")))
        return ids_of[path]

    broken = []
    for page in pages(built_site):
        for target, fragment in href.findall(page.read_text(encoding="utf-8")):
            if target.startswith("//"):
                continue
            resolved = (page.parent / target).resolve() if target else page
            if resolved.is_dir():
                resolved = resolved / "index.html"
            if not resolved.exists():
                broken.append(f"{page.relative_to(built_site)}: {target}")
            elif fragment and resolved.suffix == ".html" and fragment not in ids(resolved):
                broken.append(f"{page.relative_to(built_site)}: {target}#{fragment}")
    assert not broken, "\n".join(sorted(set(broken)))


@pytest.mark.parametrize("kind", list(BAD_NOTEBOOK_CELLS))
def test_bad_notebook_fails_the_build(mixed_site: MixedSite, kind: str) -> None:
    bad_site_log = mixed_site.log
    _, message = BAD_NOTEBOOK_CELLS[kind]
    page = f"docs/nb{list(BAD_NOTEBOOK_CELLS).index(kind)}.ipynb"
    lines = [line for line in bad_site_log.splitlines() if page in line and message in line]
    assert lines, f"{kind}: no error in {page} saying {message!r}\n{bad_site_log}"


def test_raw_source_finds_what_readers_must_not_see() -> None:
    import htmlcheck

    clean = ('<p>Costs <span class="katex">x</span> and <code>\\(x\\) [[a]]</code></p><pre>{{ y }}</pre>'
             '<div class="clipboard-copy-txt">$$x$$</div>')
    assert htmlcheck.raw_source(clean) == []
    for bad in ["<p>\\(x\\)</p>", "<li>see [[claim: a.b]</li>", "<p>{{ n }}</p>", "<p>so $x^2$ grows</p>",
                "<h2>\\frac{a}{b}</h2>", "<span>$$y$$</span>"]:
        assert htmlcheck.raw_source(bad), bad


# ----------------------------------------------------------------------------- accessible math, search


def test_every_formula_carries_mathml_for_assistive_technology(built_site: Path) -> None:
    for page in pages(built_site):
        html = page.read_text(encoding="utf-8")
        formulas, mathml = html.count('<span class="katex">'), html.count('<span class="katex-mathml"><math')
        assert formulas == mathml, f"{page.relative_to(built_site)}: {formulas} formulas, {mathml} with MathML"
        assert html.count('<annotation encoding="application/x-tex">') == mathml  # what copy-tex copies


def search_index(site: Path) -> dict:
    import json

    return json.loads((site / "search" / "search_index.json").read_text(encoding="utf-8"))


def test_search_index_shows_math_as_text(built_site: Path) -> None:
    raw = re.compile(r"\\[()\[\]]|\\(?:frac|partial|delta|sum|sqrt)\b")
    docs = search_index(built_site)["docs"]
    offenders = [f"{d['location']}: {m.group(0)!r}" for d in docs for field in ("title", "text")
                 for m in [raw.search(d[field])] if m]
    assert not offenders, "raw TeX in search results:\n" + "\n".join(offenders[:10])
    assert any("∂L/∂V" in d["text"] for d in docs), "formulas are not in the index as readable text"


def test_search_finds_words_after_punctuation(built_site: Path) -> None:
    """lunr splits the index and the query with the configured separator (Material's documented
    one): a word right after "(" or "/" must come out as a word of its own."""
    index = search_index(built_site)
    separator = re.compile(index["config"]["separator"])
    tokens = {t.lower() for d in index["docs"] for t in separator.split(re.sub(r"<[^>]+>", " ", d["text"])) if t}
    for query in ["(Einstein", "FlashAttention", "softmax_backward"]:
        words = [w.lower() for w in separator.split(query) if w]
        assert words and all(w in tokens for w in words), f"{query!r} -> {words} not all in the index"
