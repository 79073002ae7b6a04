"""Matplotlib to byte-identical SVG text."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    "svg.hashsalt": "verified-backprop",  # stable element ids
    "svg.fonttype": "none",  # text stays text: smaller, selectable, no embedded glyph paths
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 100,
}


def figure(*args, **kwargs):
    """``plt.subplots`` under the site style; pair with :func:`to_svg`."""
    with plt.rc_context(STYLE):
        return plt.subplots(*args, layout="constrained", **kwargs)


def to_svg(fig) -> str:
    """Serialise and close ``fig``; no date metadata, so two runs give the same bytes."""
    buffer = io.StringIO()
    with plt.rc_context(STYLE):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return buffer.getvalue()
