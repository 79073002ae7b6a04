"""Page weight: the limit every page keeps, and markup that changes nothing a reader gets.

``LIMIT`` is the most HTML one page may have (``tests/test_site_structure.py`` checks every page
of the built site). :func:`slim` drops markup that changes nothing for a reader, a browser or
assistive technology:

- ``xmlns`` on ``<math>``: an HTML parser puts ``<math>`` in the MathML namespace by itself;
- Pygments' ``<span class="n">`` (names) and ``<span class="w">`` (whitespace) in code blocks:
  Material colours names with ``--md-code-hl-name-color``, which is the code's own colour, and
  whitespace not at all, so the text alone renders the same.

What remains is mostly KaTeX's HTML (its inline styles are already classes:
``mathrender.compact_styles``) beside the MathML that screen readers and copy-tex use.
"""

from __future__ import annotations

import re

LIMIT = 500_000  # bytes of HTML per page

_MATHML_NAMESPACE = ' xmlns="http://www.w3.org/1998/Math/MathML"'
_PLAIN_TOKEN = re.compile(r'<span class="[nw]">([^<]*)</span>')
_CODE = re.compile(r"<code\b[^>]*>.*?</code>", re.S)


def slim(page_html: str) -> str:
    """The page without the markup listed in the module docstring."""
    page_html = page_html.replace("<math" + _MATHML_NAMESPACE, "<math")
    return _CODE.sub(lambda code: _PLAIN_TOKEN.sub(r"\1", code.group(0)), page_html)
