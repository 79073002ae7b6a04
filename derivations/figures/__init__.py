"""Figure makers: each returns one figure as SVG text, drawn from the reference.

``FIGURES`` maps a figure's name to its maker; the site serves the result at
``vis/<name>.svg``. Makers take no arguments, are seeded, and never touch the
file system, so the same code gives the same bytes.

``NARROW`` names the makers that draw a phone layout too: called inside
``_svg.layout("narrow")`` they stack their panels (see :mod:`._svg`); the site serves
that drawing at ``vis/<name>-narrow.svg`` to narrow screens. Every figure also has a
dark-scheme version (``_svg.dark``), made from the drawing, not drawn again.
"""

from __future__ import annotations

from typing import Callable

FIGURES: dict[str, Callable[[], str]] = {}
NARROW: set[str] = set()


def register(name: str, narrow: bool = False):
    """Decorator: add a maker to ``FIGURES`` under ``name`` (unique); ``narrow=True`` if it also
    draws a phone layout."""

    def add(maker: Callable[[], str]) -> Callable[[], str]:
        if name in FIGURES:
            raise ValueError(f"figure {name!r} registered twice")
        FIGURES[name] = maker
        if narrow:
            NARROW.add(name)
        return maker

    return add


def render(name: str, layout: str = "wide") -> str:
    """The SVG text of figure ``name`` in ``layout``; ``KeyError`` listing the known names otherwise."""
    from ._svg import layout as drawing_layout

    if name not in FIGURES:
        raise KeyError(f"unknown figure {name!r}; known: {', '.join(sorted(FIGURES))}")
    if layout == "narrow" and name not in NARROW:
        raise ValueError(f"figure {name!r} has no narrow layout; those that do: {', '.join(sorted(NARROW))}")
    with drawing_layout(layout):
        return FIGURES[name]()


from . import attention  # noqa: E402,F401  (registers the attention chapter's figures)
from . import transformer  # noqa: E402,F401  (registers the whole-transformer chapter's figures)
from . import flow  # noqa: E402,F401  (registers the gradient-flow chapter's figures)
from . import autodiff  # noqa: E402,F401  (registers the autodiff-engines chapter's figures)
