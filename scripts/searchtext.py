"""Readable math in the search index.

Material's search plugin indexes each page before the build renders its math, so the
index holds arithmatex's TeX (``\\(\\frac{\\partial L}{\\partial V}\\)``), which search results
would show raw. After the plugin has written ``search/search_index.json``, every formula in
it is rewritten as Unicode text with pylatexenc (``∂L/∂V``), and the words of a formula
become searchable like any other.

Readings are remembered: in this process (``mkdocs serve`` rebuilds) and in
``.cache/build/search`` under the pylatexenc version and this file's hash, so a build reads the
formulas it has read before instead of parsing them again.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from buildcache import read_json_store, store_for, write_json_store

_readings: dict[str, str | None] = {}  # formula -> its Unicode reading; None: pylatexenc cannot read it

# arithmatex's delimiters on pages, and the $..$ / $$..$$ of notebook Markdown cells
FORMULA = re.compile(r"\\\((.+?)\\\)|\\\[(.+?)\\\]|\$\$(.+?)\$\$|(?<![\\$])\$(?!\s)(.+?)(?<![\s\\])\$", re.DOTALL)


def _converter():
    from pylatexenc.latex2text import LatexNodes2Text

    return LatexNodes2Text(math_mode="text", strict_latex_spaces=True)


def readable(text: str, converter=None) -> str:
    """``text`` (HTML from the index) with each formula replaced by its Unicode reading."""
    converter = converter or _converter()

    def replace(match: re.Match) -> str:
        tex = html.unescape(next(group for group in match.groups() if group is not None))
        if tex not in _readings:
            try:
                _readings[tex] = " ".join(converter.latex_to_text(tex).split())
            except Exception:  # noqa: BLE001 - a formula pylatexenc cannot read stays as it was
                _readings[tex] = None
        plain = _readings[tex]
        return match.group(0) if plain is None else html.escape(plain, quote=False)

    return FORMULA.sub(replace, text)


def rewrite_index(path: Path) -> int:
    """Rewrite the search index at ``path`` in place; return how many entries changed."""
    index = json.loads(path.read_text(encoding="utf-8"))
    converter = _converter()
    stored = _stored_readings()
    if not _readings:
        _readings.update(read_json_store(stored))
    known = len(_readings)
    changed = 0
    for doc in index.get("docs", []):
        for field in ("title", "text"):
            before = doc.get(field, "")
            after = readable(before, converter)
            if after != before:
                doc[field] = after
                changed += 1
    path.write_text(json.dumps(index, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    if len(_readings) != known or not stored.exists():
        write_json_store(stored, _readings)
    return changed


def _stored_readings() -> Path:
    from importlib.metadata import version

    return store_for("search", "readings", Path(__file__), version("pylatexenc"))
