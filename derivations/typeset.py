"""Numbers as they appear in prose and tables: one place decides how a value is typeset.

Every function returns a :class:`Typeset`: the value as TeX (for use inside a formula)
and as Markdown (for a sentence or a table cell: plain digits where digits suffice,
inline math where they do not, as in :math:`1.2 \\times 10^{-6}`). ``str()`` gives the
Markdown form, so ``f"| {number(x)} |"`` makes a table cell.

>>> str(number(0.012345))
'0.0123'
>>> number(1.5e-7, 2).tex
'1.5 \\\\times 10^{-7}'
>>> str(integer(102036)), integer(102036).tex
('102,036', '102{,}036')
>>> str(percent(0.371))
'37%'
>>> str(span(2.44, 3.21, 2))
'2.4 to 3.2'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Typeset", "number", "sci", "fixed", "integer", "percent", "span", "typeset"]

PLAIN_RANGE = (1e-3, 1e5)  # magnitudes written as plain decimals; outside it, a x 10^k


@dataclass(frozen=True)
class Typeset:
    tex: str  # for use inside \( ... \)
    text: str | None = None  # plain Markdown when no math is needed, else None

    @property
    def markdown(self) -> str:
        return self.text if self.text is not None else f"\\({self.tex}\\)"

    def __str__(self) -> str:
        return self.markdown


def _real(x) -> float:
    try:
        value = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"cannot typeset {x!r} as a number") from None
    return value


def _special(x: float) -> Typeset | None:
    if math.isnan(x):
        return Typeset(r"\text{NaN}", "NaN")
    if math.isinf(x):
        return Typeset(r"\infty" if x > 0 else r"-\infty")
    return None


def _minus(text: str) -> str:
    return text.replace("-", "\u2212")  # a real minus sign in prose, not a hyphen


def sci(x, digits: int = 2) -> Typeset:
    """``a \\times 10^{k}`` with ``digits`` significant digits (``digits >= 1``)."""
    x = _real(x)
    if (special := _special(x)) is not None:
        return special
    if digits < 1:
        raise ValueError(f"digits must be at least 1, got {digits}")
    if x == 0:
        return Typeset("0", "0")
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    return Typeset(f"{mantissa} \\times 10^{{{int(exponent)}}}")


def number(x, digits: int = 3) -> Typeset:
    """``digits`` significant digits: plain decimals for magnitudes in ``PLAIN_RANGE``, else :func:`sci`."""
    x = _real(x)
    if (special := _special(x)) is not None:
        return special
    if digits < 1:
        raise ValueError(f"digits must be at least 1, got {digits}")
    if x != 0 and not PLAIN_RANGE[0] <= abs(x) < PLAIN_RANGE[1]:
        return sci(x, digits)
    if x == 0:
        return Typeset("0", "0")
    decimals = max(digits - 1 - math.floor(math.log10(abs(float(f"{x:.{digits - 1}e}")))), 0)
    text = f"{x:.{decimals}f}"
    return Typeset(text, _minus(text))


def fixed(x, decimals: int) -> Typeset:
    """Exactly ``decimals`` digits after the point."""
    x = _real(x)
    if (special := _special(x)) is not None:
        return special
    text = f"{x:.{decimals}f}"
    return Typeset(text, _minus(text))


def integer(n) -> Typeset:
    """An integer with thousands separators: ``102,036`` in prose, ``102{,}036`` in a formula."""
    if isinstance(n, float) and not n.is_integer():
        raise ValueError(f"{n!r} is not an integer")
    try:
        value = int(n)
    except (TypeError, ValueError):
        raise ValueError(f"cannot typeset {n!r} as an integer") from None
    text = f"{value:,}"
    return Typeset(text.replace(",", "{,}"), _minus(text))


def percent(x, decimals: int = 0) -> Typeset:
    """A fraction as a percentage: ``0.371 -> 37%``."""
    x = _real(x)
    if (special := _special(x)) is not None:
        return special
    text = f"{100 * x:.{decimals}f}"
    return Typeset(f"{text}\\%", _minus(text) + "%")


def span(lo, hi, digits: int = 2) -> Typeset:
    """A range of measurements, ``lo to hi``, both with ``digits`` significant digits."""
    a, b = number(lo, digits), number(hi, digits)
    if a.text is not None and b.text is not None:
        return Typeset(f"{a.tex} \\text{{ to }} {b.tex}", f"{a.text} to {b.text}")
    return Typeset(f"{a.tex} \\text{{ to }} {b.tex}")


def typeset(value, spec: str = "") -> Typeset:
    """Typeset ``value`` by a short spec, as pages write it after a colon: ``{{ name:sci2 }}``.

    ``""`` (integers: :func:`integer`, other numbers: 3 significant digits), ``sig<N>``
    (:func:`number`), ``sci<N>``, ``fix<N>`` (:func:`fixed`), ``int``, ``pct<N>``,
    ``text`` (a string as it is). Python's own ``e``/``g`` formats are not offered: they
    print ``1e-05``, which reads as a variable ``e`` in prose.
    """
    import numpy as np

    kind = spec.rstrip("0123456789")
    arg = spec[len(kind):]
    count = int(arg) if arg else None
    if isinstance(value, (bool, np.bool_)):
        raise ValueError("a boolean is not a number: state it with a check, {{ check: name }}")
    if isinstance(value, str):
        if kind not in ("", "text"):
            raise ValueError(f"{value!r} is text; the spec {spec!r} is for numbers")
        return Typeset(value, value)
    if kind == "":
        if count is not None:
            raise ValueError(f"unknown spec {spec!r}: write sig{count} for {count} significant digits")
        if isinstance(value, (int, np.integer)):
            return integer(value)
        return number(value)
    makers = {"sig": number, "sci": sci, "fix": fixed, "pct": percent}
    if kind == "int" and count is None:
        return integer(value)
    if kind in makers:
        defaults = {"sig": 3, "sci": 2, "fix": 2, "pct": 0}
        return makers[kind](value, defaults[kind] if count is None else count)
    raise ValueError(f"unknown spec {spec!r}: use sig<N>, sci<N>, fix<N>, int, pct<N> or text")
