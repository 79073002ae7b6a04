"""Figures on a page: each ``<img src="vis/NAME.svg">`` becomes the figure a reader expects.

A page writes ``![what it shows](vis/name.svg)`` (and a numbered caption under it). Here that
image becomes two links, one per colour scheme (CSS shows the one matching Material's scheme),
each opening the full-size drawing in the lightbox (GLightbox, served by mkdocs-glightbox from
this site) and each holding a ``<picture>`` that gives narrow screens the phone layout when the
figure has one (``vis/name-narrow.svg``, ``...-narrow-dark.svg``). Width and height attributes
come from the drawing, so the page does not jump as figures load.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

#: Screens at most this wide get a figure's narrow layout (Material's own phone breakpoint).
NARROW_MEDIA = "(max-width: 44.984375em)"
PX_PER_UNIT = 4 / 3  # matplotlib's SVG units are points; a CSS pixel is 3/4 of a point

IMAGE = re.compile(r'<img\b[^>]*?\bsrc="(?P<prefix>(?:\.\./)*)vis/(?P<name>[A-Za-z0-9_]+)\.svg"[^>]*>')
_ATTRIBUTE = re.compile(r'([a-zA-Z-]+)="([^"]*)"')
_VIEWBOX = re.compile(r'<svg\b[^>]*\bviewBox="[0-9.\-]+ [0-9.\-]+ ([0-9.]+) ([0-9.]+)"')


@dataclass(frozen=True)
class Drawing:
    """What the page needs to know of one figure: its size in CSS px per layout."""

    width: int
    height: int
    narrow: tuple[int, int] | None = None  # (width, height) of the phone layout, if there is one


def size_of(svg_path: Path) -> tuple[int, int]:
    """Natural size of a matplotlib SVG in CSS px, from its viewBox (in points)."""
    match = _VIEWBOX.search(svg_path.read_text(encoding="utf-8")[:2000])
    if match is None:
        raise ValueError(f"{svg_path}: no viewBox on its <svg> element")
    return round(float(match.group(1)) * PX_PER_UNIT), round(float(match.group(2)) * PX_PER_UNIT)


def drawings(names: list[str], key: str) -> dict[str, Drawing]:
    """The drawn figures of this build (``figurejobs``' cache under ``key``) and their sizes."""
    import figurejobs

    found = {}
    for name in names:
        path = figurejobs.figure_path(name, key)
        if not path.exists():  # its failure is reported by the figure job
            continue
        narrow = figurejobs.figure_path(name, key, "-narrow")
        found[name] = Drawing(*size_of(path), narrow=size_of(narrow) if narrow.exists() else None)
    return found


def _picture(prefix: str, name: str, scheme: str, alt: str, drawing: Drawing) -> str:
    suffix = "-dark" if scheme == "dark" else ""
    source = ""
    if drawing.narrow is not None:
        width, height = drawing.narrow
        source = (f'<source media="{NARROW_MEDIA}" srcset="{prefix}vis/{name}-narrow{suffix}.svg" '
                  f'width="{width}" height="{height}">')
    href = f"{prefix}vis/{name}{suffix}.svg"
    return (f'<a class="glightbox figure-{scheme}" href="{href}" data-type="image" data-gallery="figures-{scheme}">'
            f'<picture>{source}<img src="{href}" alt="{alt}" width="{drawing.width}" height="{drawing.height}" '
            f'loading="lazy" decoding="async"></picture></a>')


def expand(page_html: str, drawings: dict[str, Drawing]) -> tuple[str, list[str]]:
    """Replace every figure image by its light and dark links; returns the HTML and errors
    (an image of a figure that was not drawn)."""
    errors: list[str] = []

    def replace(match: re.Match) -> str:
        name, prefix = match.group("name"), match.group("prefix")
        if name not in drawings:
            errors.append(f"vis/{name}.svg is not a figure of derivations.figures (known: {', '.join(sorted(drawings))})")
            return match.group(0)
        attributes = dict(_ATTRIBUTE.findall(match.group(0)))
        alt = html.escape(html.unescape(attributes.get("alt", "")), quote=True)
        if not alt:
            errors.append(f"vis/{name}.svg has no alt text: say what the figure shows")
        return "".join(_picture(prefix, name, scheme, alt, drawings[name]) for scheme in ("light", "dark"))

    return IMAGE.sub(replace, page_html), errors
