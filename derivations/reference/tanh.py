"""The hyperbolic tangent as a forward/backward pair, float64.

The recurrent network of :mod:`.rnn` applies ``tanh`` inside its step; the
gradient-flow experiments also need it on its own, as a layer of a plain stack.
Like every reference operation, ``tanh(x)`` returns ``(y, cache)`` and
``tanh_backward(dy, cache)`` returns the gradient of its input. The derivative
is written through the output, ``tanh'(x) = 1 - tanh(x)^2``, so the cache keeps
the output only.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._checks import as_float64, require, unpack_cache

__all__ = ["TanhCache", "tanh", "tanh_backward"]


class TanhCache(NamedTuple):
    """What :func:`tanh_backward` needs."""

    y: np.ndarray  # the output: the derivative is 1 - y^2


def tanh(x):
    """Hyperbolic tangent, entrywise.

    Parameters
    ----------
    x : array_like, any shape

    Returns
    -------
    y : ndarray, same shape as ``x``
        Values in ``[-1, 1]``.
    cache : TanhCache
        ``(y,)``: the derivative ``1 - y^2`` needs the output only.

    Notes
    -----
    NaN in gives NaN out (and a NaN gradient); ``±inf`` gives ``±1`` with slope 0, as in PyTorch.

    Examples
    --------
    >>> y, _ = tanh([0.0, 1.0, -40.0])
    >>> y.round(6).tolist()
    [0.0, 0.761594, -1.0]
    """
    y = np.tanh(as_float64(x, "x"))
    return y, TanhCache(y)


def tanh_backward(dy, cache):
    """Backward pass of :func:`tanh`: ``dx = dy * (1 - y^2)``.

    Parameters
    ----------
    dy : array_like, same shape as ``x``
    cache : TanhCache
        From :func:`tanh`.

    Returns
    -------
    dx : ndarray, same shape as ``x``

    Raises
    ------
    ValueError
        If ``dy`` does not have the shape of the forward output, or ``cache`` is not tanh's.

    Examples
    --------
    >>> _, cache = tanh([0.0, 40.0])
    >>> tanh_backward([2.0, 2.0], cache).tolist()  # slope 1 at 0; saturated: slope 0
    [2.0, 0.0]
    """
    (y,) = unpack_cache(cache, TanhCache, "tanh")
    dy = as_float64(dy, "dy")
    require(dy.shape == y.shape, lambda: f"dy {dy.shape} does not match x {y.shape}")
    return dy * (1.0 - y * y)
