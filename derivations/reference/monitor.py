"""Gradient statistics per parameter, and the warning signs worth flagging.

:func:`gradient_report` summarises a dict of gradients (one row per
parameter: mean, standard deviation, largest magnitude, norm) and flags the
three signs that something upstream is broken:

``zero``
    Every entry is exactly 0. Nothing reaches this parameter: a dead ReLU
    layer, a zero weight downstream, a detached path.
``huge``
    Some entry exceeds ``huge`` in magnitude. The threshold is a heuristic and
    depends on the model; a value far above the parameter's usual range, or
    growing from step to step, is the sign.
``nonfinite``
    Some entry is NaN or infinite. One such entry poisons every parameter it
    is added to at the next step.

The statistics are taken over the finite entries only, so a single NaN does
not hide the size of the rest; ``nonfinite`` counts the others. They never
overflow: finite entries near the top of the float64 range still give a finite
mean, standard deviation and norm.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ._checks import as_float64, as_real, l2_norm, require

__all__ = ["GradientStats", "gradient_report", "format_report"]

FLAGS = ("zero", "huge", "nonfinite")


class GradientStats(NamedTuple):
    """The statistics of one parameter's gradient."""

    name: str
    size: int
    mean: float  # over the finite entries (nan if there are none)
    std: float
    max_abs: float
    norm: float
    nonfinite: int  # how many entries are NaN or +-inf
    flags: tuple[str, ...]  # a subset of FLAGS, in that order


def gradient_report(grads, huge: float = 100.0) -> list[GradientStats]:
    """One row of statistics and flags per gradient, in the dict's order.

    Parameters
    ----------
    grads : dict of str to array_like
        Gradients keyed by parameter name, any shapes.
    huge : float
        Flag a gradient whose largest finite magnitude exceeds this (positive,
        finite).

    Returns
    -------
    list of GradientStats

    Raises
    ------
    ValueError
        If ``grads`` is not a dict, an entry is not numeric, or ``huge`` is not
        a positive finite number.

    Notes
    -----
    A gradient with no finite entry has ``mean``, ``std``, ``max_abs`` and
    ``norm`` NaN and the flag ``nonfinite``; an empty one has NaN statistics and
    no flag.

    Examples
    --------
    >>> rows = gradient_report({"w": [3.0, -4.0], "dead": [0.0, 0.0], "bad": [1.0, float("nan")]})
    >>> [(r.name, r.norm, r.flags) for r in rows]
    [('w', 5.0, ()), ('dead', 0.0, ('zero',)), ('bad', 1.0, ('nonfinite',))]
    >>> gradient_report({"w": [1e3]})[0].flags
    ('huge',)
    """
    require(isinstance(grads, dict), f"grads must be a dict of arrays, got {type(grads).__name__}")
    huge = as_real(huge, "huge", low=0.0, low_open=True)
    rows = []
    for name, g in grads.items():
        g = as_float64(g, f"grads[{name!r}]").ravel()
        finite = g[np.isfinite(g)]
        nonfinite = int(g.size - finite.size)
        if finite.size:
            max_abs, norm = float(np.max(np.abs(finite))), l2_norm([finite])
            with np.errstate(over="ignore"):
                mean, std = float(finite.mean()), float(finite.std())
            if not (math.isfinite(mean) and math.isfinite(std)):  # the sums overflowed: scale them down first
                scaled = finite / max_abs
                mean, std = max_abs * float(scaled.mean()), max_abs * float(scaled.std())
        else:
            mean = std = max_abs = norm = math.nan
        flags = []
        if g.size and nonfinite == 0 and max_abs == 0.0:
            flags.append("zero")
        if finite.size and max_abs > huge:
            flags.append("huge")
        if nonfinite:
            flags.append("nonfinite")
        rows.append(GradientStats(name, int(g.size), mean, std, max_abs, norm, nonfinite, tuple(flags)))
    return rows


def format_report(rows: list[GradientStats], only_flagged: bool = False) -> str:
    """The report as a fixed-width text table, one line per parameter.

    Parameters
    ----------
    rows : list of GradientStats
        From :func:`gradient_report`.
    only_flagged : bool
        Keep only the rows with a flag (and say how many were left out).

    Examples
    --------
    >>> print(format_report(gradient_report({"w": [3.0, -4.0]})))
    parameter  size       mean        std     max|g|       norm  flags
    w             2  -5.00e-01   3.50e+00   4.00e+00   5.00e+00  -
    """
    shown = [r for r in rows if r.flags] if only_flagged else rows
    width = max([len("parameter")] + [len(r.name) for r in shown])
    size_width = max([len("size")] + [len(str(r.size)) for r in shown])
    lines = [f"{'parameter':<{width}}  {'size':>{size_width}}  {'mean':>9}  {'std':>9}  {'max|g|':>9}  {'norm':>9}  flags"]
    for r in shown:
        flags = ", ".join(f"{flag} ({r.nonfinite})" if flag == "nonfinite" else flag for flag in r.flags) or "-"
        lines.append(f"{r.name:<{width}}  {r.size:>{size_width}}  {r.mean:>9.2e}  {r.std:>9.2e}  {r.max_abs:>9.2e}  "
                     f"{r.norm:>9.2e}  {flags}")
    if only_flagged:
        lines.append(f"({len(rows) - len(shown)} parameters without a flag not shown)")
    return "\n".join(lines)
