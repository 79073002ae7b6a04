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
