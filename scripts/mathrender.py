"""Server-side math: replace arithmatex's TeX with KaTeX's HTML at build time.

One Node process (``scripts/katex_render.js``, the pinned npm ``katex``) renders
every formula; the page then needs KaTeX's CSS and fonts but no JavaScript.
A formula KaTeX rejects is reported with the page, the source line and KaTeX's
message instead of reaching the reader as red text.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from buildcache import read_json_store, store_for, write_json_store

ROOT = Path(__file__).resolve().parent.parent
NODE_SCRIPT = ROOT / "scripts" / "katex_render.js"
KATEX_DIST = ROOT / "node_modules" / "katex" / "dist"

# arithmatex (generic mode) wraps math as <span class="arithmatex">\(..\)</span> and
# <div class="arithmatex">\[..\]</div>.
ARITHMATEX = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.DOTALL)
DELIMITERS = {r"\(": r"\)", r"\[": r"\]"}
# mkdocs-jupyter 0.26 leaves notebook Markdown math as $..$ / $$..$$ inside these cells.
NOTEBOOK_MARKDOWN = re.compile(r'<div class="(?:[^"]*\s)?jp-RenderedMarkdown\b[^"]*"[^>]*>')
DIV_TAG = re.compile(r"<div\b|</div>")
# Material's table of contents and navigation: <span class="md-ellipsis">Title \(x\)</span>.
TOC_ENTRY = re.compile(r'(<span class="md-ellipsis">)(.*?)(</span>)', re.DOTALL)
INLINE_TEX = re.compile(r"\\\((.+?)\\\)", re.DOTALL)
DOLLAR_MATH = re.compile(r"\$\$(.+?)\$\$|(?<![\\$])\$(?!\s)(.+?)(?<![\s\\])\$", re.DOTALL)


@dataclass
class MathError:
    tex: str
    message: str
    line: int | None


class KatexRenderer:
    """A long-lived Node process rendering TeX; results are memoised per formula.

    With ``store`` (a JSON file), the memo is read from it at start and :meth:`save` writes it
    back, so a build renders only the formulas no build has rendered before; Node is started only
    when a formula is not in the memo. The build keys the file on the KaTeX version and this
    renderer's script (:func:`store_path`).
    """

    def __init__(self, store: Path | None = None, keep: int = 5000) -> None:
        if shutil.which("node") is None:
            raise RuntimeError("node not found: the build renders math with Node 18+ (see README)")
        if not KATEX_DIST.exists():
            raise RuntimeError(f"{KATEX_DIST} missing: run `npm ci` (the README's commands do)")
        self._process: subprocess.Popen | None = None
        self._store = store
        self._memo: dict[str, dict] = read_json_store(store)
        self._saved = len(self._memo)
        self._used: set[str] = set()
        self._keep = keep  # beyond this many stored formulas, only those this process used are kept

    def _node(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [shutil.which("node"), str(NODE_SCRIPT)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                text=True, bufsize=1)
        return self._process

    def render(self, tex: str, display: bool) -> dict:
        """``{"html": ...}`` or ``{"error": ...}`` for one formula."""
        key = ("D" if display else "I") + tex
        self._used.add(key)
        if key not in self._memo:
            process = self._node()
            assert process.stdin and process.stdout
            process.stdin.write(json.dumps({"tex": tex, "display": display}) + "\n")
            process.stdin.flush()
            self._memo[key] = json.loads(process.stdout.readline())
        return self._memo[key]

    def save(self) -> None:
        """Write the memo to the store, if it has grown."""
        if self._store is None or len(self._memo) == self._saved:
            return
        if len(self._memo) > self._keep:  # formulas of pages long edited away are dropped
            self._memo = {key: value for key, value in self._memo.items() if key in self._used}
        write_json_store(self._store, self._memo)
        self._saved = len(self._memo)

    def close(self) -> None:
        self.save()
        if self._process is not None and self._process.poll() is None:
            self._process.stdin.close()
            self._process.wait(timeout=10)

    def __enter__(self) -> "KatexRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def store_path() -> Path:
    """Where the build keeps its renderings: keyed on the KaTeX version and the Node script."""
    katex = json.loads((KATEX_DIST.parent / "package.json").read_text(encoding="utf-8"))["version"]
    return store_for("katex", "formulas", NODE_SCRIPT, katex)


_SHARED: KatexRenderer | None = None


def shared_renderer() -> KatexRenderer:
    """One renderer for the life of the process (its memo makes a ``mkdocs serve`` rebuild render
    only the formulas that changed), its memo kept in the build cache between builds."""
    global _SHARED
    if _SHARED is None:
        _SHARED = KatexRenderer(store_path())
    return _SHARED


def close_shared() -> None:
    if _SHARED is not None:
        _SHARED.close()


def _source_line(tex: str, source: str | None) -> int | None:
    """The 1-based line of ``source`` where ``tex`` starts, if it appears there verbatim."""
    if not source:
        return None
    probe = tex.strip().splitlines()[0] if tex.strip() else tex
    at = source.find(probe)
    return source.count("\n", 0, at) + 1 if at >= 0 else None


def render_page(page_html: str, renderer: KatexRenderer, source: str | None = None) -> tuple[str, list[MathError]]:
    """Render every formula of a built page; return the new HTML and the formulas KaTeX rejected."""
    errors: list[MathError] = []

    def render(tex: str, display: bool) -> str | None:
        result = renderer.render(tex, display)
        if "error" in result:
            errors.append(MathError(tex, result["error"], _source_line(tex, source)))
            return None
        return result["html"]

    def arithmatex(match: re.Match) -> str:
        tag, body = match.group(1), html.unescape(match.group(2)).strip()
        opening = body[:2]
        if opening not in DELIMITERS or not body.endswith(DELIMITERS[opening]):
            errors.append(MathError(body, "unexpected arithmatex delimiters", _source_line(body, source)))
            return match.group(0)
        rendered = render(body[2:-2], display=opening == r"\[")
        if rendered is None:
            return match.group(0)
        return f'<{tag} class="arithmatex">{rendered}</{tag}>'

    def dollars(match: re.Match) -> str:
        display_tex, inline_tex = match.group(1), match.group(2)
        tex = html.unescape(display_tex if display_tex is not None else inline_tex)
        rendered = render(tex, display=display_tex is not None)
        if rendered is None:
            return match.group(0)
        tag = "div" if display_tex is not None else "span"
        return f'<{tag} class="arithmatex">{rendered}</{tag}>'

    def toc_entry(match: re.Match) -> str:
        def inline(formula: re.Match) -> str:
            rendered = render(html.unescape(formula.group(1)), display=False)
            return formula.group(0) if rendered is None else rendered

        return match.group(1) + INLINE_TEX.sub(inline, match.group(2)) + match.group(3)

    page_html = ARITHMATEX.sub(arithmatex, page_html)
    # A heading's math reaches the table of contents as text: render it there too.
    page_html = TOC_ENTRY.sub(toc_entry, page_html)
    pieces, at = [], 0
    for start, end in markdown_cells(page_html):
        pieces += [page_html[at:start], DOLLAR_MATH.sub(dollars, page_html[start:end])]
        at = end
    return "".join(pieces) + page_html[at:], errors


def markdown_cells(page_html: str) -> list[tuple[int, int]]:
    """``(start, end)`` of the content of every notebook Markdown cell, to its matching ``</div>``.

    A cell may hold nested divs (a claim expanded into it, HTML in the Markdown), so the end is
    found by counting, not by the first ``</div>``.
    """
    spans = []
    for opening in NOTEBOOK_MARKDOWN.finditer(page_html):
        depth, at = 1, opening.end()
        for tag in DIV_TAG.finditer(page_html, opening.end()):
            depth += 1 if tag.group(0) == "<div" else -1
            if depth == 0:
                spans.append((opening.end(), tag.start()))
                break
        else:
            spans.append((opening.end(), len(page_html)))
    return spans


def katex_assets() -> list[tuple[str, Path]]:
    """(site path, file) for KaTeX's stylesheet, woff2 fonts and copy-tex script, served by the site.

    copy-tex makes copying a formula give its TeX (from the MathML annotation) instead of the
    glyphs of its HTML.
    """
    assets = [("assets/katex/katex.min.css", KATEX_DIST / "katex.min.css"),
              ("assets/katex/copy-tex.min.js", KATEX_DIST / "contrib" / "copy-tex.min.js")]
    for font in sorted((KATEX_DIST / "fonts").glob("*.woff2")):
        assets.append((f"assets/katex/fonts/{font.name}", font))
    return assets


STYLED_SPAN = re.compile(r'<span(?: class="([^"]*)")? style="([^"]*)">')


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = digits[number % 36]
    while number >= 36:
        number //= 36
        out = digits[number % 36] + out
    return out


def compact_styles(page_html: str) -> str:
    """Move the inline ``style`` of every ``<span>`` into one class rule per distinct style.

    KaTeX writes its layout as inline styles (``height:0.8889em;vertical-align:-0.1944em;``), the
    same few hundred strings thousands of times on a page: a fifth of a chapter's HTML. Each
    distinct string becomes a class ``k-<n>`` (``n`` in base 36, the most frequent style first, so
    the names stay short) whose rule marks every declaration ``!important``, which gives it an
    inline style's precedence over stylesheet rules, so the page renders the same.
    """
    counts: dict[str, int] = {}
    for match in STYLED_SPAN.finditer(page_html):
        counts[match.group(2)] = counts.get(match.group(2), 0) + 1
    if not counts:
        return page_html
    ranked = sorted(counts, key=lambda style: (-counts[style], style))  # deterministic: ties by the style
    # "k-": Pygments owns short class names such as "kc" and "kn" on the same page.
    names = {style: "k-" + _base36(rank) for rank, style in enumerate(ranked)}

    def replace(match: re.Match) -> str:
        classes, style = match.group(1), match.group(2)
        return f'<span class="{classes + " " if classes else ""}{names[style]}">'

    body = STYLED_SPAN.sub(replace, page_html)
    css = "".join(
        f".{names[style]}{{{';'.join(d.strip() + ' !important' for d in style.split(';') if d.strip())}}}"
        for style in ranked)
    at = body.find("</head>")
    return body[:at] + f"<style>{css}</style>" + body[at:] if at >= 0 else body
