"""Printed output looks like output, not like code.

markdown-exec renders a block's ``result="text"`` output as one more code block, the same as the
code above it. :func:`marking` wraps the formatter the hooks give markdown-exec, and marks that last
block: class ``exec-output`` (``site.css`` labels it "Output" and styles it apart from code) and
``no-copy`` (no copy button over the printed numbers). An output longer than
``LONG_OUTPUT_LINES`` lines is folded into a ``<details>`` whose summary says how long it is; the
page's sentences never depend on it (their values come by name from the session).
"""

from __future__ import annotations

import html
import re

LONG_OUTPUT_LINES = 15

_BLOCK = re.compile(r'<div class="(?P<classes>[^"]*\bhighlight\b[^"]*)">(?P<body><pre\b.*?</pre>)</div>', re.S)


def mark(block_html: str, with_source: bool = True, long_lines: int = LONG_OUTPUT_LINES) -> str:
    """Mark the last code block of one executed block's HTML as its output (see the module).

    ``with_source``: the block shows its code too, so the output is the second of two code blocks.
    """
    blocks = list(_BLOCK.finditer(block_html))
    if len(blocks) < (2 if with_source else 1):
        return block_html
    last = blocks[-1]
    text = html.unescape(re.sub(r"<[^>]+>", "", last.group("body")))
    if not text.strip():  # a shown block that prints nothing gets no empty output box
        return block_html[:last.start()] + block_html[last.end():]
    n_lines = len(text.rstrip("\n").split("\n"))
    marked = f'<div class="{last.group("classes")} exec-output no-copy">{last.group("body")}</div>'
    if n_lines > long_lines:
        marked = (f'<details class="exec-output-long"><summary>Output: {n_lines} lines</summary>\n'
                  f"{marked}\n</details>")
    return block_html[:last.start()] + marked + block_html[last.end():]


def marking(format_function):
    """A markdown-exec formatter that renders as ``format_function`` and marks text results."""

    def format_marked(**options):
        rendered = format_function(**options)
        if options.get("result") != "text" or not rendered:
            return rendered
        return type(rendered)(mark(str(rendered), with_source=bool(options.get("source"))))

    return format_marked
