"""Figure makers: each returns one figure as SVG text, drawn from the reference.

``FIGURES`` maps a figure's name to its maker; the site serves the result at
``vis/<name>.svg``. Makers take no arguments, are seeded, and never touch the
file system, so the same code gives the same bytes.
"""

from __future__ import annotations

from typing import Callable

FIGURES: dict[str, Callable[[], str]] = {}


def register(name: str):
    """Decorator: add a maker to ``FIGURES`` under ``name`` (unique)."""

    def add(maker: Callable[[], str]) -> Callable[[], str]:
        if name in FIGURES:
            raise ValueError(f"figure {name!r} registered twice")
        FIGURES[name] = maker
        return maker

    return add


def render(name: str) -> str:
    """The SVG text of figure ``name``; ``KeyError`` listing the known names otherwise."""
    if name not in FIGURES:
        raise KeyError(f"unknown figure {name!r}; known: {', '.join(sorted(FIGURES))}")
    return FIGURES[name]()


from . import attention  # noqa: E402,F401  (registers the attention chapter's figures)
from . import transformer  # noqa: E402,F401  (registers the whole-transformer chapter's figures)
from . import flow  # noqa: E402,F401  (registers the gradient-flow chapter's figures)
from . import autodiff  # noqa: E402,F401  (registers the autodiff-engines chapter's figures)
