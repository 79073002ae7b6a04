"""Make mkdocs-jupyter's pages self-contained.

nbconvert's template adds a MathJax loader (with an empty ``src``) and a module
that imports Mermaid from a CDN when a cell has a diagram. The site renders math
with KaTeX at build time and has no Mermaid cells, so both are removed: the page
must not even contain an address of another host.
"""

from __future__ import annotations

import re

MATHJAX = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.DOTALL)
MERMAID = re.compile(r'<script type="module">(?:(?!</script>).)*?jp-Mermaid.*?</script>', re.DOTALL)


def strip_remote_loaders(page_html: str) -> str:
    """Remove the MathJax and Mermaid loaders of an nbconvert page."""
    if 'class="jp-Notebook' not in page_html and "jupyter-wrapper" not in page_html:
        return page_html
    page_html = MATHJAX.sub("", page_html)
    if re.search(r'class="[^"]*jp-Mermaid', page_html):
        raise ValueError("a notebook cell uses Mermaid, which would load from a CDN")
    return MERMAID.sub("", page_html)


STYLE = re.compile(r'<style type="text/css">(.*?)</style>', re.DOTALL)
SHARED_MIN = 2000  # bytes: nbconvert's theme and Pygments sheets; small page-specific rules stay inline


def share_styles(page_html: str, site_dir: str, page_url: str) -> str:
    """Move a notebook page's large inline stylesheets (nbconvert's theme, about 0.6 MB) into one
    file served once, ``assets/notebook-<hash>.css``, linked from the page.

    The file's name is a hash of its content, so every notebook page with the same sheets links
    the same file and a browser caches it.
    """
    import hashlib
    import posixpath
    from pathlib import Path

    sheets = [m for m in STYLE.finditer(page_html) if len(m.group(1)) >= SHARED_MIN]
    if not sheets:
        return page_html
    css = "\n".join(m.group(1) for m in sheets)
    name = f"assets/notebook-{hashlib.sha256(css.encode()).hexdigest()[:12]}.css"
    target = Path(site_dir) / name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(css, encoding="utf-8")
    href = posixpath.relpath(name, posixpath.dirname(page_url.rstrip("/") + "/x") or ".")
    link = f'<link rel="stylesheet" href="{href}">'
    first, *rest = sheets
    out, at = [], 0
    for m in sheets:
        out += [page_html[at:m.start()], link if m is first else ""]
        at = m.end()
    return "".join(out) + page_html[at:]


def with_download_link(page_html: str, filename: str) -> str:
    """A link to the notebook file (copied beside the page by mkdocs-jupyter) under its title."""
    link = (f'<p class="page-download"><a href="{filename}" download>Download this notebook</a>, '
            "with the outputs of this build, to run it in Jupyter with the <code>derivations</code> "
            "package installed.</p>")
    at = page_html.find("</h1>")
    return page_html if at < 0 else page_html[:at + 5] + link + page_html[at + 5:]
