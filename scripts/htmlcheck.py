"""What a reader must never see in a built page: raw TeX and unexpanded markers.

The build renders math with KaTeX and expands ``[[claim: id]]``, ``{{ value }}`` and
similar markers; anything that slipped past (a formula outside arithmatex's delimiters,
``$..$`` left in a notebook cell, a malformed marker in a notebook, math in a heading
shown raw in the table of contents) would reach readers as source text. This scans a
built page's visible text, outside code, and reports each such spot.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

RAW = re.compile(r"\\[()\[\]]|\$\$|\\(?:frac|partial|delta|sum|mathbf|mathrm|operatorname|sqrt|left|right|begin|end)\b"
                 r"|\[\[|\]\]|\{\{|\}\}|(?<![\w$])\$(?=[^\s$])[^$\n]{1,80}(?<=[^\s$])\$(?![\w$])")


class _Text(HTMLParser):
    SKIP = {"code", "pre", "script", "style", "annotation", "textarea", "svg", "math"}
    HIDDEN_CLASSES = {"clipboard-copy-txt"}  # nbconvert's copy of each cell's source for the copy button
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []  # open elements: (tag, is its text skipped)
        self.chunks: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        if tag in self.VOID:
            return
        classes = set((dict(attrs).get("class") or "").split())
        hidden = tag in self.SKIP or bool(classes & self.HIDDEN_CLASSES) or "hidden" in dict(attrs)
        self.stack.append((tag, (self.stack[-1][1] if self.stack else False) or hidden))

    def handle_endtag(self, tag) -> None:
        # Pop to the matching element: HTML leaves some elements (p, li) implicitly closed.
        if any(open_tag == tag for open_tag, _ in self.stack):
            while self.stack.pop()[0] != tag:
                pass

    def handle_data(self, data) -> None:
        if not (self.stack and self.stack[-1][1]):
            self.chunks.append(data)


BULK = re.compile(r"<(style|script|svg)\b.*?</\1>", re.DOTALL | re.IGNORECASE)


def visible_text(page_html: str) -> str:
    """The text of ``page_html`` outside code, scripts, styles and math markup."""
    reader = _Text()
    reader.feed(BULK.sub("", page_html))  # the bulk of a notebook page is its inline CSS: skip it unparsed
    return " ".join(reader.chunks)


def raw_source(page_html: str) -> list[str]:
    """Snippets of visible text that look like TeX or unexpanded markers."""
    text = visible_text(page_html)
    return [text[max(m.start() - 40, 0): m.end() + 40].replace("\n", " ") for m in RAW.finditer(text)]
