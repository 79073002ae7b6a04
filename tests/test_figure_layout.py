"""Figures a reader can read: legible at phone and laptop widths, right in the dark scheme, and set
in fonts every browser has.

The legibility rule: every text element of a figure renders at least ``MIN_TEXT_PX`` CSS pixels
tall where the page shows it, on a 390 px phone and on a 1280 px laptop. A text element's size is
its largest run (matplotlib's mathtext sets sub- and superscripts at 70 % of it). A figure is shown
at its natural width or the column's width, whichever is smaller; the phone gets the figure's
narrow layout when it has one. The column widths are Material's at those window widths, and
``tests/test_layout_browser.py`` measures the same rule on the rendered pages.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest

from derivations.figures import FIGURES, NARROW, _svg, render

MIN_TEXT_PX = 8.0
COLUMN_PX = {"phone": 358, "laptop": 688}  # Material's content column at 390 px and at 1280 px
PX_PER_UNIT = 4 / 3  # matplotlib's SVG units are points


def _luminance(hex_color: str) -> float:
    """WCAG relative luminance, computed here from the sRGB definition (not from _svg)."""
    channels = [int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


# ----------------------------------------------------------------------------- the dark mapping


def test_dark_color_maps_the_page_colours_onto_the_dark_theme():
    assert _svg.dark_color("#ffffff") == _svg.DARK_BACKGROUND
    assert _svg.dark_color("#000000") == _svg.DARK_TEXT
    assert _svg.dark_color("#FFFFFF") == _svg.DARK_BACKGROUND


def test_dark_color_reverses_the_order_of_lightness():
    greys = [f"#{v:02x}{v:02x}{v:02x}" for v in range(0, 256, 15)]  # black to white
    mapped = [_luminance(_svg.dark_color(g)) for g in greys]
    assert all(a > b for a, b in zip(mapped, mapped[1:])), mapped


def test_dark_color_keeps_a_colours_hue():
    for color in ("#c0392b", "#1b9e77", "#2166ac", "#d95f02"):
        r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
        dr, dg, db = (int(_svg.dark_color(color)[i:i + 2], 16) for i in (1, 3, 5))
        assert np.argmax([r, g, b]) == np.argmax([dr, dg, db]), color  # the dominant channel stays


@pytest.mark.parametrize("bad", ["red", "#fff", "#12345g", ""])
def test_dark_color_rejects_what_is_not_rrggbb(bad):
    with pytest.raises(ValueError, match="#rrggbb"):
        _svg.dark_color(bad)


def test_dark_recolours_shapes_text_and_embedded_images():
    fig, (left, right) = _svg.figure(1, 2, figsize=(4, 2))
    left.plot([0, 1], [0, 1], color="#c0392b")
    left.set_title("black title")
    right.imshow(np.array([[0.0, 1.0]]), cmap="Greys", vmin=0, vmax=1)  # white and black pixels
    light = _svg.to_svg(fig)
    dark = _svg.dark(light)
    assert "#c0392b" in light and _svg.dark_color("#c0392b") in dark and "#c0392b" not in dark
    assert "#ffffff" not in dark.lower()
    assert f'<svg style="fill: {_svg.DARK_TEXT}"' in dark  # matplotlib leaves black text unset
    from PIL import Image

    (data,) = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=\s]+)", dark)
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")).reshape(-1, 3)
    colours = {f"#{r:02x}{g:02x}{b:02x}" for r, g, b in pixels}
    assert colours <= {_svg.DARK_BACKGROUND, _svg.DARK_TEXT} | {_svg.dark_color(c) for c in colours}
    assert _svg.DARK_BACKGROUND in colours and _svg.DARK_TEXT in colours  # white and black cells, mapped
    with pytest.raises(ValueError, match="SVG"):
        _svg.dark("<html></html>")


def test_layouts_are_checked():
    with pytest.raises(ValueError, match="unknown layout"):
        with _svg.layout("tiny"):
            pass
    plain = next(name for name in sorted(FIGURES) if name not in NARROW)
    with pytest.raises(ValueError, match="no narrow layout"):
        render(plain, "narrow")


# ----------------------------------------------------------------------------- every built figure


def _served(built_site: Path):
    """(figure, layout, screen, svg text) for what each screen is given."""
    for name in sorted(FIGURES):
        wide = (built_site / "vis" / f"{name}.svg").read_text(encoding="utf-8")
        narrow = (built_site / "vis" / f"{name}-narrow.svg").read_text(encoding="utf-8") if name in NARROW else None
        yield name, "wide", "laptop", wide
        yield name, "narrow" if narrow else "wide", "phone", narrow or wide


def test_every_figure_is_legible_on_a_phone_and_a_laptop(built_site: Path):
    too_small = []
    for name, layout, screen, svg in _served(built_site):
        width = _svg.width_units(svg)
        shown = min(width * PX_PER_UNIT, COLUMN_PX[screen])
        smallest = min(base for base, _ in _svg.text_sizes(svg)) * shown / width
        if smallest < MIN_TEXT_PX:
            too_small.append(f"{name} ({layout} layout, {screen}): smallest text {smallest:.1f} px")
    assert not too_small, "\n".join(too_small)


def test_the_legibility_rule_catches_a_small_figure():
    """The control: a wide figure with 8-point text fails on a phone, as the rule says it must."""
    fig, ax = _svg.figure(figsize=(9, 3))
    ax.set_title("tiny", fontsize=8)
    svg = _svg.to_svg(fig)
    width = _svg.width_units(svg)
    assert min(b for b, _ in _svg.text_sizes(svg)) * COLUMN_PX["phone"] / width < MIN_TEXT_PX


def test_figures_use_only_fonts_the_page_can_show(built_site: Path):
    """Mathtext takes a few symbols from fonts a browser does not have (cmsy10's prime, STIX's
    calligraphic letters and radicals); an SVG with text as text then shows the wrong glyph."""
    fonts = {}
    for svg in (built_site / "vis").glob("*.svg"):
        for family in set(re.findall(r"font-family: '([^']+)'", svg.read_text(encoding="utf-8"))):
            fonts.setdefault(family, []).append(svg.name)
    assert set(fonts) == {"DejaVu Sans"}, {f: names for f, names in fonts.items() if f != "DejaVu Sans"}


def test_dark_figures_keep_their_text_readable(built_site: Path):
    """Text outside heatmap cells, on the dark background, has at least WCAG's 4.5:1 contrast."""
    weak = []
    for path in sorted((built_site / "vis").glob("*-dark.svg")):
        svg = path.read_text(encoding="utf-8")
        for group in re.findall(r'<g id="(text_\d+)">(.*?)</g>\s*(?=<g id=|</g>)', svg, re.S):
            gid, body = group
            fills = re.findall(r"fill: (#[0-9a-f]{6})", body) or [_svg.DARK_TEXT]
            for fill in fills:
                if _contrast(fill, _svg.DARK_BACKGROUND) < 4.5:
                    weak.append(f"{path.name} {gid}: {fill} ({_contrast(fill, _svg.DARK_BACKGROUND):.1f}:1)")
    assert not weak, "\n".join(sorted(set(weak)))
