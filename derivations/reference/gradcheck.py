"""Numerical gradient checking by central differences.

The derivative of ``f`` along coordinate ``x_k`` is estimated by
``(f(x + h e_k) - f(x - h e_k)) / 2h``. Its error has two parts: truncation,
about ``h^2 |f'''| / 6``, and rounding, about ``eps_mach |f| / h``. In float64
(``eps_mach ~ 2.2e-16``) the default ``h = 1e-6`` balances them at roughly
``1e-10`` relative for well-scaled functions, so a correct gradient shows
relative errors near ``1e-9`` or below and a wrong one shows ``1e-2`` or worse.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

__all__ = ["gradcheck", "numerical_gradient", "relative_error"]


def relative_error(analytic, numeric, floor: float = 1e-12) -> np.ndarray:
    """Entrywise ``|a - n| / max(|a|, |n|, floor)``.

    The floor keeps entries where both gradients are (near) zero from dividing
    zero by zero: there the error is measured in absolute terms against ``floor``.
    """
    a, n = np.asarray(analytic, dtype=np.float64), np.asarray(numeric, dtype=np.float64)
    return np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), floor)


def numerical_gradient(f: Callable[..., float], inputs: Sequence[np.ndarray], index: int, h: float = 1e-6,
                       entries=None) -> np.ndarray:
    """Central-difference gradient of scalar ``f(*inputs)`` with respect to ``inputs[index]``.

    ``entries`` (flat indices) restricts the estimate to those entries; the
    others are left NaN so they cannot be mistaken for checked values.
    """
    arrays = [np.array(x, dtype=np.float64) for x in inputs]
    x = arrays[index]
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
        Check at most this many randomly chosen entries of each input (seeded).

    Returns
    -------
    list of float
        For each input, the largest relative error over the checked entries
        (``nan`` for inputs whose gradient is ``None``).

    Raises
    ------
    ValueError
        If a gradient's shape differs from its input's shape.

    Examples
    --------
    >>> gradcheck(lambda x: float((x ** 3).sum()), [np.array([1.0, -2.0])], [np.array([3.0, 12.0])])[0] < 1e-8
    True
    >>> gradcheck(lambda x: float((x ** 3).sum()), [np.array([1.0, -2.0])], [np.array([3.0, 11.0])])[0] > 1e-2
    True
    """
    inputs = [np.array(x, dtype=np.float64) for x in inputs]
    if grads is None:
        _, grads = f(*inputs)
        loss_only = lambda *xs: f(*xs)[0]  # noqa: E731
    else:
        loss_only = f
    if len(grads) != len(inputs):
        raise ValueError(f"{len(grads)} gradients for {len(inputs)} inputs")
    rng = np.random.default_rng(seed)
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
