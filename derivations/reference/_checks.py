"""Input validation shared by the reference operations.

Every check raises ``ValueError`` with a message that names the argument, so a
caller learns which input was wrong and how, never only NumPy's view of it.
"""

from __future__ import annotations

import math
import numbers
import operator

import numpy as np


def require(condition: bool, message) -> None:
    """Raise ``ValueError(message)`` unless ``condition``: the one way bad input is reported.

    ``message`` is the text, or a function returning it: ``lambda: f"x {x.shape} ..."`` formats
    the shapes only when the check fails, which matters in the operations called thousands of
    times a page (formatting cost a linear map about as much as its matrix product).
    """
    if not condition:
        raise ValueError(message() if callable(message) else message)


def as_float64(x, name: str) -> np.ndarray:
    """``x`` as a float64 array; a ``ValueError`` naming ``name`` if it is not real numbers.

    Strings, bytes and complex numbers are refused rather than converted
    (``np.asarray("1.5", dtype=float)`` would quietly parse the text, and a
    complex array would lose its imaginary part).
    """
    dtype = x.dtype if isinstance(x, np.ndarray) else np.asarray(x).dtype
    if dtype.kind in "USVc":  # not require(): the message is formatted only when it is needed
        raise ValueError(f"{name} must be an array of real numbers, got dtype {dtype}")
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a numeric array: {error}") from None


def as_mask(mask, name: str = "mask") -> np.ndarray:
    """A boolean mask (True where an entry takes part), or a ``ValueError`` naming its dtype.

    Casting to bool would treat every non-zero number as "take part": a
    PyTorch-style additive mask (0 to keep, -inf to drop) would come out
    inverted, and 0.5 or NaN would count as allowed. So only booleans pass.
    """
    array = np.asarray(mask)
    if array.dtype != np.bool_:
        raise ValueError(
            f"{name} must be a boolean array (True where a query may attend to a key), got dtype {array.dtype}; "
            f"an additive mask of 0 (keep) and -inf (drop) converts with `{name} == 0`"
        )
    return array


def as_int(value, name: str, minimum: int | None = None) -> int:
    """``value`` as a Python int (``bool`` refused), at least ``minimum`` when given."""
    require(not isinstance(value, (bool, np.bool_)), lambda: f"{name} must be an integer, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None:
        require(value >= minimum, lambda: f"{name} must be >= {minimum}, got {value}")
    return value


def as_real(value, name: str, *, low: float | None = None, low_open: bool = False,
            high: float | None = None, high_open: bool = False, finite: bool = True) -> float:
    """``value`` as a float inside the given bounds, or a ``ValueError`` naming it.

    ``low_open`` and ``high_open`` exclude the bound itself. NaN is always
    refused (it fails every comparison); infinity is refused when ``finite``.
    """
    require(isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)),
            lambda: f"{name} must be a real number, got {value!r}")
    value = float(value)
    require(not math.isnan(value), lambda: f"{name} must be a number, got nan")
    if finite:
        require(math.isfinite(value), lambda: f"{name} must be finite, got {value}")
    if low is not None:
        inside = value > low if low_open else value >= low
        require(inside, lambda: f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None:
        inside = value < high if high_open else value <= high
        require(inside, lambda: f"{name} must be {'<' if high_open else '<='} {high}, got {value}")
    return value


def unpack_cache(cache, cache_type, forward: str):
    """``cache`` as ``cache_type`` (a NamedTuple); a plain tuple of the right length is accepted.

    A cache from another operation (or built by hand with the wrong number of
    fields) raises a ``ValueError`` naming the forward function it should come from.
    """
    fields = cache_type._fields
    another_named_tuple = hasattr(cache, "_fields") and not isinstance(cache, cache_type)
    require(isinstance(cache, tuple) and len(cache) == len(fields) and not another_named_tuple,
            lambda: f"cache must be the {cache_type.__name__}{fields} that {forward} returns, got "
            f"{type(cache).__name__}" + (f" of length {len(cache)}" if isinstance(cache, tuple) else ""))
    return cache if isinstance(cache, cache_type) else cache_type(*cache)


def l2_norm(arrays) -> float:
    """``sqrt(sum of x^2)`` over every entry of every array, without overflow or underflow.

    The plain sum of squares overflows to infinity once an entry exceeds about
    1e154 and underflows to 0 below about 1e-154, though the norm itself is
    representable. In that case the entries are divided by the largest
    magnitude first and the factor is put back after the square root. Inputs in
    the ordinary range take the plain path, so their result is unchanged to the
    last bit. Any NaN gives NaN; otherwise any infinity gives infinity.
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    with np.errstate(over="ignore"):
        squares = sum(float(np.sum(a * a)) for a in arrays)
    if math.isfinite(squares) and squares > 1e-290:
        return math.sqrt(squares)
    if any(np.isnan(a).any() for a in arrays):
        return math.nan
    largest = max((float(np.max(np.abs(a))) for a in arrays if a.size), default=0.0)
    if largest == 0.0 or not math.isfinite(largest):
        return largest
    return largest * math.sqrt(sum(float(np.sum((a / largest) ** 2)) for a in arrays))
