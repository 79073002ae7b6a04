"""Numerical gradient checking by central differences.

The derivative of ``f`` along coordinate ``x_k`` is estimated by
``(f(x + h e_k) - f(x - h e_k)) / 2h``. Its error has two parts: truncation,
about ``h^2 |f'''| / 6``, and rounding, about ``eps_mach |f| / h``. In float64
(``eps_mach ~ 2.2e-16``) the default ``h = 1e-6`` balances them at roughly
``1e-10`` relative for well-scaled functions, so a correct gradient shows
relative errors near ``1e-9`` or below and a wrong one shows ``1e-2`` or worse.

A check must never pass by accident: a NaN or infinite gradient, analytic or
numerical, counts as an error of ``inf`` (NaN would slip through
``max(errors) < tol``, since every comparison with NaN is false).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ._checks import as_float64, as_int, as_real, require

__all__ = ["gradcheck", "numerical_gradient", "relative_error"]


def relative_error(analytic, numeric, floor: float = 1e-12) -> np.ndarray:
    """Entrywise ``|a - n| / max(|a|, |n|, floor)``.

    The floor keeps entries where both gradients are (near) zero from dividing
    zero by zero: there the error is measured in absolute terms against ``floor``.
    An entry where either side is NaN or infinite has error ``inf``.

    Examples
    --------
    >>> relative_error([1.0, 0.0, float("nan")], [1.1, 1e-13, 1.0]).round(4).tolist()
    [0.0909, 0.1, inf]
    """
    a, n = as_float64(analytic, "analytic"), as_float64(numeric, "numeric")
    floor = as_real(floor, "floor", low=0.0, low_open=True)
    require(a.shape == n.shape, f"analytic {a.shape} and numeric {n.shape} differ in shape")
    scale = np.maximum(np.maximum(np.abs(a), np.abs(n)), floor)
    with np.errstate(invalid="ignore"):  # inf / inf where an entry is infinite: replaced by inf below
        error = np.abs(a / scale - n / scale)  # each term is at most 1, so 1e308 and -1e308 give 2, not inf
    return np.where(np.isfinite(a) & np.isfinite(n), error, np.inf)


def numerical_gradient(f: Callable[..., float], inputs: Sequence[np.ndarray], index: int, h: float = 1e-6,
                       entries=None) -> np.ndarray:
    """Central-difference gradient of scalar ``f(*inputs)`` with respect to ``inputs[index]``.

    ``entries`` (flat indices) restricts the estimate to those entries; the
    others are left NaN so they cannot be mistaken for checked values. ``h``
    must be positive and finite. Where ``f`` is NaN or infinite at a shifted
    point, that entry of the estimate is NaN or infinite.
    """
    arrays = [as_float64(x, f"inputs[{k}]").copy() for k, x in enumerate(inputs)]
    index = as_int(index, "index")
    require(0 <= index < len(arrays), f"index {index} is not one of the {len(arrays)} inputs")
    h = as_real(h, "h", low=0.0, low_open=True)
    x = arrays[index]
    if entries is not None:
        entries = np.asarray(entries)
        require(entries.ndim == 1 and np.issubdtype(entries.dtype, np.integer)
                and bool(np.all((entries >= 0) & (entries < x.size))),
                f"entries must be flat indices in [0, {x.size}) of inputs[{index}] {x.shape}")
    flat = x.reshape(-1)
    grad = np.full(x.size, np.nan) if entries is not None else np.zeros(x.size)
    for k in range(x.size) if entries is None else entries:
        original = flat[k]
        flat[k] = original + h
        plus = float(f(*arrays))
        flat[k] = original - h
        minus = float(f(*arrays))
        flat[k] = original
        grad[k] = (plus - minus) / (2 * h)
    return grad.reshape(x.shape)


def gradcheck(f: Callable[..., float], inputs: Sequence, grads: Sequence | None = None, h: float = 1e-6,
              max_entries: int | None = None, seed: int = 0) -> list[float]:
    """Compare analytic gradients with central differences; return the max relative error per input.

    Parameters
    ----------
    f : callable
        ``f(*inputs)`` returns the scalar loss, or ``(loss, grads)`` when ``grads``
        is not given, with ``grads`` one array per input.
    inputs : sequence of array_like
        The point at which to check. Copied, never modified.
    grads : sequence of array_like, optional
        Analytic gradients of ``f`` at ``inputs``, one per input (``None`` skips an input).
    h : float
        Step of the central difference (see the module docstring for why 1e-6).
    max_entries : int, optional
        Check at most this many randomly chosen entries of each input (seeded), ``>= 1``.
    seed : int
        Seed of the choice of entries.

    Returns
    -------
    list of float
        For each input, the largest relative error over the checked entries
        (``nan`` for inputs whose gradient is ``None``; ``inf`` where either
        gradient is NaN or infinite, so such a check fails).

    Raises
    ------
    ValueError
        If there are not as many gradients as inputs, a gradient's shape
        differs from its input's, ``f`` is not finite at ``inputs`` (nothing
        can be checked there), or ``h`` or ``max_entries`` is out of range.

    Examples
    --------
    >>> gradcheck(lambda x: float((x ** 3).sum()), [np.array([1.0, -2.0])], [np.array([3.0, 12.0])])[0] < 1e-8
    True
    >>> gradcheck(lambda x: float((x ** 3).sum()), [np.array([1.0, -2.0])], [np.array([3.0, 11.0])])[0] > 1e-2
    True
    """
    inputs = [as_float64(x, f"inputs[{k}]").copy() for k, x in enumerate(inputs)]
    h = as_real(h, "h", low=0.0, low_open=True)
    if max_entries is not None:
        max_entries = as_int(max_entries, "max_entries", minimum=1)
    if grads is None:
        value, grads = f(*inputs)
        loss_only = lambda *xs: f(*xs)[0]  # noqa: E731
    else:
        loss_only = f
        value = f(*inputs)
    value = float(value)
    require(np.isfinite(value), f"f is {value} at the given inputs: there is no gradient to check")
    if len(grads) != len(inputs):
        raise ValueError(f"{len(grads)} gradients for {len(inputs)} inputs")
    rng = np.random.default_rng(as_int(seed, "seed", minimum=0))
    errors = []
    for index, (x, g) in enumerate(zip(inputs, grads)):
        if g is None:
            errors.append(float("nan"))
            continue
        g = np.asarray(g, dtype=np.float64)
        if g.shape != x.shape:
            raise ValueError(f"gradient {index} has shape {g.shape}, input has shape {x.shape}")
        entries = None
        if max_entries is not None and x.size > max_entries:
            entries = np.sort(rng.choice(x.size, size=max_entries, replace=False))
        numeric = numerical_gradient(loss_only, inputs, index, h, entries)
        checked = slice(None) if entries is None else entries
        errors.append(float(np.max(relative_error(g.reshape(-1)[checked], numeric.reshape(-1)[checked]), initial=0.0)))
    return errors
