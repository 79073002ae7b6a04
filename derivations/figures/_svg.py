"""Matplotlib to byte-identical SVG text, in two layouts and two colour schemes.

- **Layouts.** A figure is drawn for a column about 700 CSS px wide (``"wide"``, the default) and,
  when its maker supports it, again for a phone (``"narrow"``: panels stacked, about 4.6 inches
  wide), so that its text stays legible at 390 px (:func:`text_sizes` measures it). Makers pass
  the narrow arguments to :func:`figure` and may ask :func:`is_narrow` for shorter labels.
- **Colour schemes.** Makers draw for a white page. :func:`dark` turns the finished SVG into the
  dark scheme's version by mapping every colour through :func:`dark_color`: lightness is inverted
  between the theme's background and its text colour (white becomes the page's dark background,
  black its light text), hue and chroma are kept, so a colour map stays ordered and a line keeps
  its contrast with the background. Nothing is drawn twice for it.
"""

from __future__ import annotations

import base64
import contextlib
import io
import re

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.mathtext import MathTextParser  # noqa: E402


def _share_parsed_formulas(limit: int = 4096) -> None:
    """Let every Matplotlib formula parser of this process share one cache of parsed formulas.

    Each label with math (``$\\mathdefault{10^{-2}}$`` on every log axis) is parsed when the
    constrained layout measures it, again when it is drawn and again in the next figure, each
    time by a new parser (every SVG renderer makes its own), and Matplotlib's cache is per parser:
    the figures parsed the same 140 formulas about 500 times. Parsers of the same output type
    give the same result for the same key (text, dpi, font, flags), so the SVG is unchanged.
    Left as it is if a Matplotlib version stores its cache differently.
    """
    parse = MathTextParser.__dict__.get("_parse_cached")
    if parse is None or not hasattr(parse, "__wrapped__"):
        return
    parse_once = parse.__wrapped__
    parsed: dict[tuple, object] = {}

    def parse_cached(self, s, dpi, prop, antialiased, load_glyph_flags):
        key = (self._output_type, s, dpi, prop, antialiased, load_glyph_flags)
        if key not in parsed:
            if len(parsed) >= limit:
                parsed.clear()
            parsed[key] = parse_once(self, s, dpi, prop, antialiased, load_glyph_flags)
        return parsed[key]

    MathTextParser._parse_cached = parse_cached


_share_parsed_formulas()

STYLE = {
    "svg.hashsalt": "verified-backprop",  # stable element ids
    "svg.fonttype": "none",  # text stays text: smaller, selectable, no embedded glyph paths
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 100,
}

LAYOUTS = ("wide", "narrow")
_layout = ["wide"]


@contextlib.contextmanager
def layout(name: str):
    """Draw the figures made inside the block in layout ``name`` (``"wide"`` or ``"narrow"``)."""
    if name not in LAYOUTS:
        raise ValueError(f"unknown layout {name!r}; known: {', '.join(LAYOUTS)}")
    _layout.append(name)
    try:
        yield
    finally:
        _layout.pop()


def is_narrow() -> bool:
    """True while the phone layout is drawn (see :func:`layout`)."""
    return _layout[-1] == "narrow"


def figure(*args, narrow: dict | None = None, **kwargs):
    """``plt.subplots`` under the site style; pair with :func:`to_svg`.

    ``narrow`` holds the arguments that replace or extend ``kwargs`` in the narrow layout, for
    example ``{"nrows": 2, "ncols": 1, "figsize": (4.6, 6.4)}`` to stack two panels.
    """
    if is_narrow() and narrow:
        names = ("nrows", "ncols")
        kwargs.update({**dict(zip(names, args)), **narrow})
        args = ()
    with plt.rc_context(STYLE):
        return plt.subplots(*args, layout="constrained", **kwargs)


def to_svg(fig) -> str:
    """Serialise and close ``fig``; no date metadata, so two runs give the same bytes."""
    buffer = io.StringIO()
    with plt.rc_context(STYLE):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- the dark scheme

#: Material's slate scheme: the page background, and a text colour a little brighter than its
#: body text (``hsla(225, 15%, 90%, 0.82)`` over the background), so thin lines and small labels
#: read; with ``DARK_GAMMA`` every text colour the figures use keeps WCAG's 4.5:1 contrast.
DARK_BACKGROUND = "#1e2129"
DARK_TEXT = "#cdd0d6"
DARK_GAMMA = 0.5


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


_M1 = np.array([[0.4122214708, 0.5363325363, 0.0514459929],
                [0.2119034982, 0.6806995451, 0.1073969566],
                [0.0883024619, 0.2817188376, 0.6299787005]])
_M2 = np.array([[0.2104542553, 0.7936177850, -0.0040720468],
                [1.9779984951, -2.4285922050, 0.4505937099],
                [0.0259040371, 0.7827717662, -0.8086757660]])


def _to_oklab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1], shape ``[..., 3]``, to OKLab (Björn Ottosson's transform)."""
    lms = _srgb_to_linear(rgb) @ _M1.T
    return np.cbrt(lms) @ _M2.T


def _from_oklab(lab: np.ndarray) -> np.ndarray:
    lms = (lab @ np.linalg.inv(_M2).T) ** 3
    return _linear_to_srgb(lms @ np.linalg.inv(_M1).T)


def _hex_to_rgb(color: str) -> np.ndarray:
    return np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)], dtype=float) / 255


def _dark_rgb(rgb: np.ndarray) -> np.ndarray:
    """The dark-scheme version of sRGB colours ``[..., 3]`` (see :func:`dark_color`)."""
    lab = _to_oklab(rgb)
    background, text = _to_oklab(_hex_to_rgb(DARK_BACKGROUND)), _to_oklab(_hex_to_rgb(DARK_TEXT))
    # 0 for white, 1 for black; the power lifts mid tones, which the dark scheme's narrower range of
    # lightness would otherwise leave too close to the background to read as lines or text.
    t = np.clip(1.0 - lab[..., :1], 0.0, 1.0) ** DARK_GAMMA
    grey = background + t * (text - background)  # white -> background, black -> text, tinted as the theme
    out = grey + np.concatenate([np.zeros_like(t), lab[..., 1:]], axis=-1)  # the colour's own hue and chroma
    return np.clip(_from_oklab(out), 0.0, 1.0)


def dark_color(color: str) -> str:
    """``#rrggbb`` for the dark scheme: white -> the page background, black -> its text colour, a
    colour of lightness ``L`` (OKLab) -> lightness ``1 - L`` on the same scale, same hue and chroma.

    >>> dark_color("#ffffff"), dark_color("#000000")
    ('#1e2129', '#cdd0d6')
    """
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", color):
        raise ValueError(f"dark_color needs a colour written #rrggbb, not {color!r}")
    r, g, b = np.round(_dark_rgb(_hex_to_rgb(color)) * 255).astype(int)
    return f"#{r:02x}{g:02x}{b:02x}"


def _dark_png(data: str) -> str:
    """A base64 PNG (a colour bar, an ``imshow``) with every pixel mapped as :func:`dark_color`."""
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(data))).convert("RGBA")
    pixels = np.asarray(image, dtype=float) / 255
    rgb = _dark_rgb(pixels[..., :3])
    mapped = np.concatenate([np.round(rgb * 255), pixels[..., 3:] * 255], axis=-1).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(mapped, "RGBA").save(out, format="PNG", optimize=False, compress_level=9)
    return base64.b64encode(out.getvalue()).decode("ascii")


_COLOR = re.compile(r"((?:fill|stroke|stop-color|color)\s*[:=]\s*\"?)(#[0-9a-fA-F]{6})(?![0-9a-fA-F])")
_PNG = re.compile(r"(data:image/png;base64,)([A-Za-z0-9+/=\s]+)")
_ROOT = re.compile(r"<svg\b")


def dark(svg: str) -> str:
    """The dark-scheme version of a figure's SVG text: every colour mapped by :func:`dark_color`.

    Matplotlib leaves black fills (text included) unset, so the root gets the dark text colour as
    its default fill; embedded PNG images are mapped pixel by pixel.
    """
    if not _ROOT.search(svg):
        raise ValueError("dark() needs SVG text (no <svg> element found)")
    cache: dict[str, str] = {}

    def color(match: re.Match) -> str:
        value = match.group(2).lower()
        if value not in cache:
            cache[value] = dark_color(value)
        return match.group(1) + cache[value]

    out = _COLOR.sub(color, svg)
    out = _PNG.sub(lambda m: m.group(1) + _dark_png(m.group(2)), out)
    return _ROOT.sub(f'<svg style="fill: {DARK_TEXT}"', out, count=1)


# ----------------------------------------------------------------------------- legibility

_SIZE = re.compile(r"font-size:\s*([0-9.]+)px")
_VIEWBOX = re.compile(r'<svg\b[^>]*\bviewBox="([0-9.\s-]+)"')
_TEXT = re.compile(r"<text\b.*?</text>", re.S)


def width_units(svg: str) -> float:
    """Width of the figure in its own units (points: matplotlib's viewBox)."""
    match = _VIEWBOX.search(svg)
    if match is None:
        raise ValueError("no viewBox on the figure's <svg> element")
    return float(match.group(1).split()[2])


def text_sizes(svg: str) -> list[tuple[float, float]]:
    """For every ``<text>`` element: ``(base, smallest)`` font size, in the figure's units.

    ``base`` is the largest run in the element (a plain label has one run; a mathtext label has
    one run per symbol, its sub- and superscripts at 70 % of the base), ``smallest`` the smallest.
    A figure shown ``w`` CSS px wide renders a size ``s`` at ``s * w / width_units(svg)`` px.
    """
    sizes = []
    for element in _TEXT.findall(svg):
        runs = [float(s) for s in _SIZE.findall(element)]
        if runs:
            sizes.append((max(runs), min(runs)))
    return sizes
