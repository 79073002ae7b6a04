"""What a reader must never see in a built page: raw TeX and unexpanded markers.

The build renders math with KaTeX and expands ``[[claim: id]]``, ``{{ value }}`` and
similar markers; anything that slipped past (a formula outside arithmatex's delimiters,
``$..$`` left in a notebook cell, a malformed marker in a notebook, math in a heading
shown raw in the table of contents) would reach readers as source text. This scans a
built page's visible text, outside code, and reports each such spot.
"""

from __future__ import annotations

import html
import re

RAW = re.compile(r"\\[()\[\]]|\$\$|\\(?:frac|partial|delta|sum|mathbf|mathrm|operatorname|sqrt|left|right|begin|end)\b"
                 r"|\[\[|\]\]|\{\{|\}\}|(?<![\w$])\$(?=[^\s$])[^$\n]{1,80}(?<=[^\s$])\$(?![\w$])")


# Elements whose text readers do not see as prose: code, scripts, styles, math markup, and
# nbconvert's hidden copy of each cell's source (for its copy button).
UNSEEN = re.compile(
    r"<(style|script|svg|pre|code|annotation|math|textarea)\b.*?</\1\s*>"
    r'|<div class="clipboard-copy-txt"[^>]*>.*?</div>',
    re.DOTALL | re.IGNORECASE,
)
TAG = re.compile(r"<[^>]*>")


def visible_text(page_html: str) -> str:
    """The text of ``page_html`` outside code, scripts, styles and math markup.

    Regular expressions, not an HTML parser: a page holds tens of thousands of KaTeX spans and
    this runs on every page of every build. None of the elements removed nests inside itself.
    """
    return html.unescape(TAG.sub(" ", UNSEEN.sub(" ", page_html)))


def raw_source(page_html: str) -> list[str]:
    """Snippets of visible text that look like TeX or unexpanded markers."""
    text = visible_text(page_html)
    return [text[max(m.start() - 40, 0): m.end() + 40].replace("\n", " ") for m in RAW.finditer(text)]
