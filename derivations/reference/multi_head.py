"""Multi-head self-attention: forward/backward pair in float64.

Four linear maps around :func:`~derivations.reference.attention.attention`.
The heads are not separate weights: ``Q = X W_q`` is computed once and its
``d_model`` columns are split into ``n_heads`` blocks of ``d_head`` columns,
head ``h`` taking columns ``h d_head ... (h+1) d_head - 1``. Attention runs on
all heads at once along a head axis, and the head outputs are concatenated
back in the same order before the output map ``W_o``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._checks import as_float64, as_int, as_mask, require, unpack_cache
from .attention import AttentionCache, attention, attention_backward
from .layers import LinearCache, linear, linear_backward

__all__ = ["MultiHeadCache", "multi_head_attention", "multi_head_attention_backward"]


class MultiHeadCache(NamedTuple):
    """What :func:`multi_head_attention_backward` needs: the caches of the five steps, and ``n_heads``."""

    linear_q: LinearCache  # Q = X W_q
    linear_k: LinearCache  # K = X W_k
    linear_v: LinearCache  # V = X W_v
    attention: AttentionCache  # all heads at once; .A is [..., n_heads, n, n]
    linear_o: LinearCache  # out = concat(heads) W_o
    n_heads: int


def _split_heads(M, n_heads):
    """``[..., n, d_model] -> [..., n_heads, n, d_head]``."""
    *lead, n, d_model = M.shape
    return np.swapaxes(M.reshape(*lead, n, n_heads, d_model // n_heads), -2, -3)


def _merge_heads(M):
    """``[..., n_heads, n, d_head] -> [..., n, d_model]``: the inverse of :func:`_split_heads`."""
    *lead, n_heads, n, d_head = M.shape
    return np.swapaxes(M, -2, -3).reshape(*lead, n, n_heads * d_head)


def multi_head_attention(X, W_q, W_k, W_v, W_o, n_heads, mask=None):
    """Multi-head self-attention without biases.

    ``Q, K, V = X W_q, X W_k, X W_v``; each is split into ``n_heads`` heads of
    ``d_head = d_model / n_heads`` columns; head ``h`` computes
    ``softmax(Q_h K_h^T / sqrt(d_head)) V_h``; the heads are concatenated and
    mapped by ``W_o``.

    Parameters
    ----------
    X : array_like, shape ``[..., n, d_model]``
        Any number of leading (batch) axes.
    W_q, W_k, W_v, W_o : array_like, shape ``[d_model, d_model]``
    n_heads : int
        Must divide ``d_model``.
    mask : array_like of bool, optional
        Broadcastable to ``[..., n, n]``; True where query ``i`` may attend to
        key ``j``. The same mask applies to every head. Must be boolean (an
        additive mask of 0 and -inf converts with ``mask == 0``).

    Returns
    -------
    out : ndarray, shape ``[..., n, d_model]``
    cache : MultiHeadCache
        The caches of the four linear maps and of attention, and ``n_heads``.

    Raises
    ------
    ValueError
        If the shapes do not fit, ``n`` or ``d_model`` is 0, ``n_heads`` is not a
        positive integer dividing ``d_model``, or the mask is not boolean.

    Notes
    -----
    NaN and infinity propagate as in :func:`~.attention.attention`: a NaN
    entry of ``W_k`` (or of ``X``) reaches every score of the heads that read
    it, so their outputs, and every output position mixing them through
    ``W_o``, are NaN.

    Examples
    --------
    With one token every head attends only to itself, so ``out = X W_v W_o``:

    >>> I = [[1.0, 0.0], [0.0, 1.0]]
    >>> out, _ = multi_head_attention([[1.0, 2.0]], I, I, I, I, n_heads=2)
    >>> out.tolist()
    [[1.0, 2.0]]
    """
    X = as_float64(X, "X")
    require(X.ndim >= 2 and X.shape[-2] >= 1 and X.shape[-1] >= 1,
            f"X {X.shape} must be [..., n, d_model] with n >= 1 and d_model >= 1")
    d_model = X.shape[-1]
    for name, W in (("W_q", W_q), ("W_k", W_k), ("W_v", W_v), ("W_o", W_o)):
        shape = as_float64(W, name).shape
        require(shape == (d_model, d_model), f"{name} {shape} must be ({d_model}, {d_model}) to match X {X.shape}")
    n_heads = as_int(n_heads, "n_heads")
    require(n_heads >= 1 and d_model % n_heads == 0,
            f"n_heads = {n_heads} must be positive and divide d_model = {d_model} of X {X.shape}")
    n = X.shape[-2]
    if mask is not None:
        mask = as_mask(mask)
        scores_shape = X.shape[:-2] + (n, n)
        try:
            mask = np.broadcast_to(mask, scores_shape)
        except ValueError:
            raise ValueError(f"mask {mask.shape} does not broadcast to [..., n, n] = {scores_shape}") from None
        mask = mask[..., None, :, :]  # one mask for every head

    Q, cache_q = linear(X, W_q)
    K, cache_k = linear(X, W_k)
    V, cache_v = linear(X, W_v)
    heads, cache_attention = attention(_split_heads(Q, n_heads), _split_heads(K, n_heads),
                                       _split_heads(V, n_heads), mask)
    out, cache_o = linear(_merge_heads(heads), W_o)
    return out, MultiHeadCache(cache_q, cache_k, cache_v, cache_attention, cache_o, n_heads)


def multi_head_attention_backward(dout, cache):
    """Backward pass of :func:`multi_head_attention`.

    Back through ``W_o``, split the gradient of the concatenated heads into
    heads (the adjoint of concatenation is slicing), back through attention
    per head, merge the head gradients (the adjoint of splitting is
    concatenation), and back through the three input maps. ``X`` feeds all
    three, so ``dX`` is the sum of their contributions.

    Parameters
    ----------
    dout : array_like, shape ``[..., n, d_model]``
    cache : MultiHeadCache
        From :func:`multi_head_attention`.

    Returns
    -------
    dX : ndarray, shape ``[..., n, d_model]``
    dW_q, dW_k, dW_v, dW_o : ndarray, shape ``[d_model, d_model]``
        Summed over all leading axes.

    Examples
    --------
    With one token ``out = X W_v W_o``, so with identity weights ``dX = dout``
    and the query and key maps get no gradient:

    >>> I = [[1.0, 0.0], [0.0, 1.0]]
    >>> _, cache = multi_head_attention([[1.0, 2.0]], I, I, I, I, n_heads=2)
    >>> dX, dW_q, dW_k, dW_v, dW_o = multi_head_attention_backward([[3.0, 4.0]], cache)
    >>> dX.tolist(), dW_q.tolist()
    ([[3.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]])
    """
    cache_q, cache_k, cache_v, cache_attention, cache_o, n_heads = unpack_cache(
        cache, MultiHeadCache, "multi_head_attention")
    d_heads, dW_o, _ = linear_backward(dout, cache_o)
    dQ, dK, dV = attention_backward(_split_heads(d_heads, n_heads), cache_attention)
    dX_q, dW_q, _ = linear_backward(_merge_heads(dQ), cache_q)
    dX_k, dW_k, _ = linear_backward(_merge_heads(dK), cache_k)
    dX_v, dW_v, _ = linear_backward(_merge_heads(dV), cache_v)
    return dX_q + dX_k + dX_v, dW_q, dW_k, dW_v, dW_o
