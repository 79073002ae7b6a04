"""Softmax and scaled dot-product attention: forward/backward pairs in float64.

Every ``op(...)`` returns ``(out, cache)`` and ``op_backward(dout, cache)``
returns the gradients of its inputs, in input order. The cache holds exactly
what the backward pass needs, as a named tuple (``cache.A``; it still unpacks
and indexes like the plain tuple it is).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._checks import as_float64, as_mask, require, unpack_cache

__all__ = ["SoftmaxCache", "AttentionCache", "softmax", "softmax_backward", "attention", "attention_backward"]


class SoftmaxCache(NamedTuple):
    """What :func:`softmax_backward` needs from the forward pass."""

    y: np.ndarray  # the softmax output [..., n]


class AttentionCache(NamedTuple):
    """What :func:`attention_backward` needs from the forward pass."""

    Q: np.ndarray  # [..., n_q, d_k]
    K: np.ndarray  # [..., n_k, d_k]
    V: np.ndarray  # [..., n_k, d_v]
    A: np.ndarray  # the attention weights softmax(Q K^T / sqrt(d_k)) [..., n_q, n_k]


def softmax(x, mask=None):
    """Softmax over the last axis, stable for any finite input.

    Parameters
    ----------
    x : array_like, shape ``[..., n]``, ``n >= 1``
    mask : array_like of bool, optional
        Broadcastable to ``x.shape``; True where an entry takes part. Masked
        entries get weight exactly 0 and their values are never read. A row
        with every entry masked gives all zeros (not NaN).

    Returns
    -------
    y : ndarray, shape ``[..., n]``
        Rows sum to 1 (0 for fully masked rows).
    cache : SoftmaxCache
        ``(y,)``, all that :func:`softmax_backward` needs.

    Raises
    ------
    ValueError
        If ``x`` has no last axis or it is empty, or ``mask`` is not boolean
        (an additive mask of 0 and -inf converts with ``mask == 0``) or does not
        broadcast to ``x``.

    Notes
    -----
    Non-finite scores, entry by entry, in the rows that are not fully masked:

    - ``-inf`` gets weight 0 (the limit), as long as the row has a finite entry;
    - NaN or ``+inf`` anywhere in the row, or no entry other than ``-inf``,
      makes the whole row NaN, as ``torch.softmax`` does. Only the explicit
      ``mask`` gives the all-zero row.

    Examples
    --------
    >>> y, _ = softmax([1000.0, 1000.0, -1000.0])
    >>> y.round(6).tolist()
    [0.5, 0.5, 0.0]
    >>> softmax([[1.0, 2.0]], mask=[[False, False]])[0].tolist()
    [[0.0, 0.0]]
    """
    x = as_float64(x, "x")
    require(x.ndim >= 1 and x.shape[-1] >= 1, lambda: f"x {x.shape} needs a non-empty last axis to normalise over")
    if mask is None and np.isfinite(x).all():
        # The common case, finite scores and no mask: none of the steps below changes a value
        # here, so the plain formula gives the same bits with a third of the passes over x.
        e = np.exp(x - np.max(x, axis=-1, keepdims=True))
        y = e / np.sum(e, axis=-1, keepdims=True)
        return y, SoftmaxCache(y)
    allowed = np.ones(x.shape, dtype=bool)
    if mask is not None:
        mask = as_mask(mask)
        try:
            allowed = np.broadcast_to(mask, x.shape)
        except ValueError:
            raise ValueError(f"mask {mask.shape} does not broadcast to x {x.shape}") from None
        x = np.where(allowed, x, -np.inf)
    # NaN or +inf in a row that takes part, or nothing but -inf there: the row is undefined (NaN).
    undefined = np.any(np.isnan(x) | (x == np.inf), axis=-1, keepdims=True)
    undefined |= np.any(allowed, axis=-1, keepdims=True) & ~np.any(np.isfinite(x), axis=-1, keepdims=True)
    row_max = np.max(np.where(np.isnan(x), -np.inf, x), axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)  # fully masked rows: avoid inf - inf
    e = np.exp(x - row_max)  # exp(-inf) == 0 exactly; exp(+inf) rows are undefined and replaced below
    e = np.where(undefined, 0.0, e)
    total = np.sum(e, axis=-1, keepdims=True)
    y = e / np.where(total > 0, total, 1.0)  # a fully masked row has e = 0 everywhere: y = 0, not 0/0
    y = np.where(undefined, np.nan, y)
    return y, SoftmaxCache(y)


def softmax_backward(dy, cache):
    """Gradient of a loss through softmax: ``dx = y * (dy - rowsum(y * dy))``.

    Parameters
    ----------
    dy : array_like, shape ``[..., n]``
        Gradient of the loss with respect to the softmax output.
    cache : SoftmaxCache
        From :func:`softmax`.

    Returns
    -------
    dx : ndarray, shape ``[..., n]``
        Exactly 0 wherever the forward weight was 0 (masked entries) and
        ``dy`` is finite.

    Notes
    -----
    NaN propagates: a NaN row of ``y`` or a NaN or infinite entry of ``dy``
    makes its row of ``dx`` NaN (``0 * inf`` is NaN too), as in PyTorch.

    Examples
    --------
    >>> y, cache = softmax([0.0, 0.0])
    >>> softmax_backward([1.0, 0.0], cache).tolist()
    [0.25, -0.25]
    """
    (y,) = unpack_cache(cache, SoftmaxCache, "softmax")
    dy = as_float64(dy, "dy")
    require(dy.shape == y.shape, lambda: f"dy {dy.shape} does not match softmax output {y.shape}")
    return y * (dy - np.sum(y * dy, axis=-1, keepdims=True))


def attention(Q, K, V, mask=None):
    """Scaled dot-product attention ``O = softmax(Q K^T / sqrt(d_k)) V``.

    Parameters
    ----------
    Q : array_like, shape ``[..., n_q, d_k]``
    K : array_like, shape ``[..., n_k, d_k]``
    V : array_like, shape ``[..., n_k, d_v]``
        Leading (batch, head) axes must broadcast against each other.
    mask : array_like of bool, optional
        Broadcastable to ``[..., n_q, n_k]``; True where query ``i`` may attend to
        key ``j``. A query with no allowed key outputs zeros. Must be boolean:
        a PyTorch-style additive mask (0 and -inf) converts with ``mask == 0``.

    Returns
    -------
    O : ndarray, shape ``[..., n_q, d_v]``
    cache : AttentionCache
        ``(Q, K, V, A)`` with ``A`` the attention weights ``[..., n_q, n_k]``.

    Raises
    ------
    ValueError
        If the shapes do not fit together, ``d_k`` or ``n_k`` is 0, or the mask
        is not boolean or does not broadcast; the message names them.

    Notes
    -----
    NaN and infinity are not hidden. A NaN or infinite entry of ``Q`` or
    ``K`` that reaches a score a query may see makes that query's weights
    (and output) NaN, as PyTorch does; scores at masked positions are never
    read. ``V`` enters ``A V`` with every key's weight, including the 0 of a
    masked key, so a NaN or infinite row of ``V`` makes the output NaN (``0 *
    nan`` is NaN), as in PyTorch. Finite scores so large that they overflow to
    ``+inf`` give NaN rows, never a finite wrong value.

    Examples
    --------
    >>> O, cache = attention([[1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]], [[1.0], [3.0]])
    >>> cache.A.round(4).tolist()
    [[0.6698, 0.3302]]
    >>> O.round(4).tolist()
    [[1.6605]]
    """
    Q, K, V = as_float64(Q, "Q"), as_float64(K, "K"), as_float64(V, "V")
    require(Q.ndim >= 2 and K.ndim >= 2 and V.ndim >= 2,
            lambda: f"Q {Q.shape}, K {K.shape}, V {V.shape} need at least 2 axes")
    require(Q.shape[-1] == K.shape[-1], lambda: f"Q {Q.shape} and K {K.shape} differ in d_k (last axis)")
    require(K.shape[-2] == V.shape[-2], lambda: f"K {K.shape} and V {V.shape} differ in n_k (second-to-last axis)")
    require(Q.shape[-1] >= 1, lambda: f"Q {Q.shape} and K {K.shape} have d_k = 0: the scores divide by sqrt(d_k)")
    require(K.shape[-2] >= 1, lambda: f"K {K.shape} and V {V.shape} have n_k = 0: every query needs a key to attend to")
    try:
        np.broadcast_shapes(Q.shape[:-2], K.shape[:-2], V.shape[:-2])
    except ValueError:
        raise ValueError(f"leading axes of Q {Q.shape}, K {K.shape}, V {V.shape} do not broadcast") from None
    with np.errstate(invalid="ignore", over="ignore"):
        scores = Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-1])
    if mask is not None:
        mask = as_mask(mask)
        try:
            np.broadcast_to(mask, scores.shape)
        except ValueError:
            raise ValueError(f"mask {mask.shape} does not broadcast to scores {scores.shape}") from None
    A, _ = softmax(scores, mask)
    return A @ V, AttentionCache(Q, K, V, A)


def attention_backward(dO, cache):
    """Backward pass of :func:`attention`.

    ``dV = A^T dO``, ``dA = dO V^T``, ``dS = A * (dA - rowsum(A * dA))``,
    ``dQ = dS K / sqrt(d_k)``, ``dK = dS^T Q / sqrt(d_k)``. Gradients of broadcast
    leading axes are summed back to each input's own shape (an input with
    fewer leading axes, or with size 1 where the others are larger, receives
    the sum over that axis).

    Parameters
    ----------
    dO : array_like, shape ``[..., n_q, d_v]``
    cache : AttentionCache
        From :func:`attention`.

    Returns
    -------
    dQ, dK, dV : ndarray
        Same shapes as ``Q``, ``K``, ``V``.

    Examples
    --------
    >>> O, cache = attention([[1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]], [[1.0], [3.0]])
    >>> dQ, dK, dV = attention_backward([[1.0]], cache)
    >>> dV.round(4).tolist()
    [[0.6698], [0.3302]]
    """
    Q, K, V, A = unpack_cache(cache, AttentionCache, "attention")
    dO = as_float64(dO, "dO")
    # the output's shape: A's leading axes broadcast with V's (V alone may carry a batch axis)
    expected = np.broadcast_shapes(A.shape[:-2], V.shape[:-2]) + (A.shape[-2], V.shape[-1])
    require(dO.shape == expected, lambda: f"dO {dO.shape} does not match the output shape {expected}")
    scale = 1.0 / np.sqrt(Q.shape[-1])
    dV = np.swapaxes(A, -1, -2) @ dO
    dA = dO @ np.swapaxes(V, -1, -2)
    dS = A * (dA - np.sum(A * dA, axis=-1, keepdims=True))
    dQ = dS @ K * scale
    dK = np.swapaxes(dS, -1, -2) @ Q * scale
    return _sum_to(dQ, Q.shape), _sum_to(dK, K.shape), _sum_to(dV, V.shape)


def _sum_to(grad, shape):
    """Sum a broadcast gradient back to ``shape`` (the adjoint of broadcasting)."""
    extra = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(extra))) if extra > 0 else grad
    axes = tuple(ax for ax, size in enumerate(shape) if size == 1 and grad.shape[ax] != 1)
    return grad.sum(axis=axes, keepdims=True) if axes else grad
