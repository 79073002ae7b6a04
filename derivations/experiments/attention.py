"""Seeded inputs shared by the pages and the figures, so the two cannot drift.

A page and the figure it shows call the same function here: change the example
and both change together.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..reference.attention import softmax, softmax_backward

__all__ = [
    "AttentionExample",
    "SATURATION_D_K",
    "attention_worked_example",
    "softmax_jacobian_norms",
]

#: Key widths compared in the saturation experiment (``softmax_saturation`` figure).
SATURATION_D_K = (16, 64, 256)


class AttentionExample(NamedTuple):
    """Inputs of one attention call and the upstream gradient ``dO`` of a loss."""

    Q: np.ndarray  # [n_q, d_k]
    K: np.ndarray  # [n_k, d_k]
    V: np.ndarray  # [n_k, d_v]
    dO: np.ndarray  # [n_q, d_v]


def attention_worked_example(seed: int = 5) -> AttentionExample:
    """The attention-gradients chapter's worked example: ``n_q=2, n_k=3, d_k=2, d_v=2``.

    Entries are standard normal draws from ``np.random.default_rng(seed)``,
    drawn in the order ``Q, K, V, dO``.

    Returns
    -------
    AttentionExample
        ``Q [2, 2]``, ``K [3, 2]``, ``V [3, 2]``, ``dO [2, 2]``, float64.

    Examples
    --------
    >>> Q, K, V, dO = attention_worked_example()
    >>> Q.shape, K.shape, V.shape, dO.shape
    ((2, 2), (3, 2), (3, 2), (2, 2))
    >>> bool(np.array_equal(attention_worked_example().K, K))
    True
    """
    n_q, n_k, d_k, d_v = 2, 3, 2, 2
    rng = np.random.default_rng(seed)
    Q = rng.standard_normal((n_q, d_k))
    K = rng.standard_normal((n_k, d_k))
    V = rng.standard_normal((n_k, d_v))
    dO = rng.standard_normal((n_q, d_v))
    return AttentionExample(Q, K, V, dO)


def softmax_jacobian_norms(d_k: int, multipliers, scaled: bool, n_queries: int = 128, n_keys: int = 16,
                           seed: int = 0) -> np.ndarray:
    """Mean Frobenius norm of the softmax Jacobian of attention scores, per score multiplier.

    Draws standard normal queries ``[n_queries, d_k]`` and keys ``[n_keys, d_k]``
    (the draw depends on ``seed`` and ``d_k`` only, not on ``multipliers``), forms
    the scores ``c * Q K^T`` (divided by ``sqrt(d_k)`` when ``scaled``) for every
    multiplier ``c``, and returns, for each ``c``, the norm of the Jacobian of each
    query's softmax row averaged over the queries.

    The Jacobian is built column by column with :func:`softmax_backward`: the
    backward of softmax applied to the basis vector ``e_n`` is column ``n`` of the
    (symmetric) Jacobian.

    Returns
    -------
    ndarray, shape ``[len(multipliers)]``

    Examples
    --------
    >>> norms = softmax_jacobian_norms(16, [0.0, 1e4], scaled=True, n_keys=4)
    >>> bool(np.isclose(norms[0], np.sqrt(1 / 4 - 1 / 16)))  # uniform weights
    True
    >>> bool(norms[1] < 1e-12)  # saturated: one weight is 1, the rest 0
    True
    """
    rng = np.random.default_rng([seed, d_k])
    Q = rng.standard_normal((n_queries, d_k))
    K = rng.standard_normal((n_keys, d_k))
    scores = Q @ K.T / (np.sqrt(d_k) if scaled else 1.0)
    c = np.asarray(multipliers, dtype=np.float64).reshape(-1, 1, 1)
    A, _ = softmax(c * scores)  # [n_c, n_queries, n_keys]
    shape = A.shape + (n_keys,)
    rows = np.broadcast_to(A[..., None, :], shape)  # one copy of each row per basis vector
    basis = np.broadcast_to(np.eye(n_keys), shape)
    jacobians = softmax_backward(basis, (rows,))  # [n_c, n_queries, n_keys, n_keys]
    return np.sqrt(np.sum(jacobians**2, axis=(-2, -1))).mean(axis=-1)
