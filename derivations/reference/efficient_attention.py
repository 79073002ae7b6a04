"""Attention whose backward pass keeps no ``n_q x n_k`` matrix between the passes.

:func:`~derivations.reference.attention` saves the attention weights ``A``
for its backward pass: ``n_q n_k`` numbers per head, the only saved tensor that
grows quadratically with the sequence. This pair saves instead, per query row,
one number: the log of the softmax's normaliser, ``lse^i = log sum_j exp(S^{ij})``.
The backward pass recomputes ``A^{ij} = exp(S^{ij} - lse^i)`` from ``Q`` and ``K``,
a block of query rows at a time, and replaces the row sums over ``A * dA`` that
the softmax backward needs by the row-sum identity (the attention chapter's)::

    sum_j A^{ij} dA^{ij} = sum_j A^{ij} sum_b dO^{ib} V^{jb} = sum_b dO^{ib} O^{ib}

which needs only ``dO`` and the saved output ``O``: each block of rows is then
independent of every other. This is the idea FlashAttention's backward pass is
built on (it also tiles the keys, to stay in fast on-chip memory); here it is
written for clarity, with the same results as :func:`~derivations.reference.attention_backward`.
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import numpy as np

from ._checks import as_float64, as_mask, require
from .attention import _sum_to

__all__ = ["EfficientAttentionCache", "memory_efficient_attention", "memory_efficient_attention_backward"]


class EfficientAttentionCache(NamedTuple):
    """All that :func:`memory_efficient_attention_backward` needs: nothing of size ``n_q x n_k``
    except the mask, when one is given (as given, not broadcast)."""

    Q: np.ndarray  #: ``[..., n_q, d_k]``
    K: np.ndarray  #: ``[..., n_k, d_k]``
    V: np.ndarray  #: ``[..., n_k, d_v]``
    O: np.ndarray  #: the output ``[..., n_q, d_v]``
    lse: np.ndarray  #: ``log sum_j exp(S^{ij})`` per query row ``[..., n_q]``; ``-inf`` for a fully masked row
    mask: np.ndarray | None  #: as passed to the forward pass
    block_size: int  #: query rows recomputed at a time


def _block_size(block_size, n_q):
    if block_size is None:
        return max(n_q, 1)
    try:
        block_size = operator.index(block_size)
    except TypeError:
        raise ValueError(f"block_size must be an integer, got {block_size!r}") from None
    require(block_size >= 1, f"block_size must be >= 1, got {block_size}")
    return block_size


def _weights(Q_rows, K, lse_rows, mask_rows):
    """``A = exp(S - lse)`` for a block of query rows (0 where masked, and on fully masked rows;
    NaN on the rows whose ``lse`` is NaN, those the forward pass found undefined)."""
    with np.errstate(invalid="ignore", over="ignore"):
        scores = Q_rows @ np.swapaxes(K, -1, -2) / np.sqrt(Q_rows.shape[-1])
    finite = np.isfinite(lse_rows)[..., None]
    keep = finite if mask_rows is None else finite & mask_rows
    # Masked entries become -inf before exponentiating (exp(-inf) == 0 exactly), never after:
    # a masked score may be far above the row's lse and overflow.
    A = np.exp(np.where(keep, scores, -np.inf) - np.where(finite, lse_rows[..., None], 0.0))
    return np.where(np.isnan(lse_rows)[..., None], np.nan, A)


def memory_efficient_attention(Q, K, V, mask=None, block_size=None):
    """Scaled dot-product attention ``O = softmax(Q K^T / sqrt(d_k)) V``, saving ``lse`` instead of ``A``.

    Parameters
    ----------
    Q : array_like, shape ``[..., n_q, d_k]``
    K : array_like, shape ``[..., n_k, d_k]``
    V : array_like, shape ``[..., n_k, d_v]``
        Leading axes must broadcast against each other.
    mask : array_like of bool, optional
        Broadcastable to ``[..., n_q, n_k]``; True where query ``i`` may attend to
        key ``j``. A query with no allowed key outputs zeros.
        Must be boolean, as for :func:`~derivations.reference.attention`: a
        PyTorch-style additive mask (0 and -inf) converts with ``mask == 0``.
    block_size : int, optional
        Query rows computed at a time (default: all at once). Changes the peak
        memory of a pass, never the result.

    Returns
    -------
    O : ndarray, shape ``[..., n_q, d_v]``
    cache : EfficientAttentionCache

    Raises
    ------
    ValueError
        If the shapes do not fit together, ``d_k`` or ``n_k`` is 0, or the mask
        is not boolean or does not broadcast; the message names them.

    Notes
    -----
    Non-finite values as in :func:`~derivations.reference.attention`: a query
    that sees a NaN or ``+inf`` score (or only ``-inf`` scores it may see) gets
    a NaN output and a NaN ``lse``, never a finite wrong value; a fully masked
    query gets zeros and ``lse = -inf``.

    Examples
    --------
    >>> O, cache = memory_efficient_attention([[1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]], [[1.0], [3.0]])
    >>> O.round(4).tolist(), cache.lse.shape
    ([[1.6605]], (1,))
    """
    Q, K, V = as_float64(Q, "Q"), as_float64(K, "K"), as_float64(V, "V")
    require(Q.ndim >= 2 and K.ndim >= 2 and V.ndim >= 2, f"Q {Q.shape}, K {K.shape}, V {V.shape} need at least 2 axes")
    require(Q.shape[-1] == K.shape[-1], f"Q {Q.shape} and K {K.shape} differ in d_k (last axis)")
    require(K.shape[-2] == V.shape[-2], f"K {K.shape} and V {V.shape} differ in n_k (second-to-last axis)")
    require(Q.shape[-1] >= 1, f"Q {Q.shape} and K {K.shape} have d_k = 0: the scores divide by sqrt(d_k)")
    require(K.shape[-2] >= 1, f"K {K.shape} and V {V.shape} have n_k = 0: every query needs a key to attend to")
    try:
        lead = np.broadcast_shapes(Q.shape[:-2], K.shape[:-2], V.shape[:-2])
    except ValueError:
        raise ValueError(f"leading axes of Q {Q.shape}, K {K.shape}, V {V.shape} do not broadcast") from None
    n_q, n_k = Q.shape[-2], K.shape[-2]
    scores_shape = lead + (n_q, n_k)
    full_mask = None
    if mask is not None:
        mask = as_mask(mask)
        try:
            full_mask = np.broadcast_to(mask, scores_shape)
        except ValueError:
            raise ValueError(f"mask {mask.shape} does not broadcast to scores {scores_shape}") from None
    block_size = _block_size(block_size, n_q)
    O = np.zeros(lead + (n_q, V.shape[-1]))
    lse = np.empty(lead + (n_q,))
    for start in range(0, n_q, block_size):
        rows = slice(start, start + block_size)
        with np.errstate(invalid="ignore", over="ignore"):
            scores = Q[..., rows, :] @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-1])
        if full_mask is not None:
            scores = np.where(full_mask[..., rows, :], scores, -np.inf)
        row_max = np.max(scores, axis=-1)  # NaN if the row sees a NaN, +inf if it sees +inf
        finite = np.isfinite(row_max)
        # NaN or +inf seen, or nothing but -inf where keys are allowed: undefined (NaN), as in softmax
        undefined = ~finite if full_mask is None else ~finite & np.any(full_mask[..., rows, :], axis=-1)
        shift = np.where(finite, row_max, 0.0)
        e = np.exp(np.where(finite[..., None], scores - shift[..., None], -np.inf))  # exp(-inf) == 0 exactly
        total = e.sum(axis=-1)
        lse[..., rows] = np.where(finite, shift + np.log(np.where(finite, total, 1.0)),
                                  np.where(undefined, np.nan, -np.inf))
        O_rows = np.divide(e, total[..., None], out=np.zeros_like(e), where=total[..., None] > 0) @ V
        O[..., rows, :] = np.where(undefined[..., None], np.nan, O_rows)
    return O, EfficientAttentionCache(Q, K, V, O, lse, mask, block_size)


def memory_efficient_attention_backward(dO, cache):
    """Backward pass of :func:`memory_efficient_attention`, recomputing ``A`` a block of rows at a time.

    Per block of query rows: ``A = exp(S - lse)``, ``D = rowsum(dO * O)`` (the
    row-sum identity), ``dS = A * (dO V^T - D)``, ``dQ = dS K / sqrt(d_k)``, and the
    block's contributions ``dK += dS^T Q / sqrt(d_k)``, ``dV += A^T dO``.

    Parameters
    ----------
    dO : array_like, shape ``[..., n_q, d_v]``
    cache : EfficientAttentionCache
        From :func:`memory_efficient_attention`.

    Returns
    -------
    dQ, dK, dV : ndarray
        Same shapes as ``Q``, ``K``, ``V``; equal to
        :func:`~derivations.reference.attention_backward`'s up to rounding.

    Examples
    --------
    >>> O, cache = memory_efficient_attention([[1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]], [[1.0], [3.0]])
    >>> dQ, dK, dV = memory_efficient_attention_backward([[1.0]], cache)
    >>> dV.round(4).tolist()
    [[0.6698], [0.3302]]
    """
    Q, K, V, O, lse, mask, block_size = cache
    dO = as_float64(dO, "dO")
    require(dO.shape == O.shape, f"dO {dO.shape} does not match the output shape {O.shape}")
    lead, n_q = O.shape[:-2], O.shape[-2]
    full_mask = None if mask is None else np.broadcast_to(mask, lead + (n_q, K.shape[-2]))
    scale = 1.0 / np.sqrt(Q.shape[-1])
    D = np.sum(dO * O, axis=-1)  # the row-sum identity: sum_j A^{ij} dA^{ij}, without A
    Q_full = np.broadcast_to(Q, lead + Q.shape[-2:])
    dQ = np.zeros(lead + Q.shape[-2:])
    dK = np.zeros(lead + K.shape[-2:])
    dV = np.zeros(lead + V.shape[-2:])
    for start in range(0, n_q, block_size):
        rows = slice(start, start + block_size)
        A = _weights(Q_full[..., rows, :], K, lse[..., rows], None if full_mask is None else full_mask[..., rows, :])
        dA = dO[..., rows, :] @ np.swapaxes(V, -1, -2)
        dS = A * (dA - D[..., rows, None])
        dQ[..., rows, :] = dS @ K * scale
        dK += np.swapaxes(dS, -1, -2) @ Q_full[..., rows, :] * scale
        dV += np.swapaxes(A, -1, -2) @ dO[..., rows, :]
    return _sum_to(dQ, Q.shape), _sum_to(dK, K.shape), _sum_to(dV, V.shape)
