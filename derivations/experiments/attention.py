"""The experiments of the attention-gradients chapter, shared by its page and its figures.

A page and the figure it shows call the same function here: change an experiment
and both change together. Everything is float64 and seeded; experiments drawn at
random take their seeds as arguments, so the page can state a conclusion over many
seeds and show its spread.

- the worked example: :func:`attention_worked_example`
- saturation of the softmax: :func:`saturation_draw`, :func:`softmax_jacobian_norms`,
  :func:`saturation_curves`, :func:`half_point`
- the numerical check: :func:`gradcheck_case`, :func:`attention_gradcheck`

Gradients come from the reference backward passes (:func:`softmax_backward`,
:func:`attention_backward`), or from a backward the caller passes in to be checked.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from ..reference._checks import require
from ..reference.attention import attention, attention_backward, softmax, softmax_backward
from ..reference.gradcheck import numerical_gradient, relative_error
from .memo import shared

__all__ = [
    "AttentionExample",
    "SATURATION_D_K",
    "SATURATION_MULTIPLIERS",
    "SATURATION_SEEDS",
    "SATURATION_QUERIES",
    "SATURATION_KEYS",
    "SaturationCurves",
    "GRADCHECK_SEEDS",
    "GradcheckCase",
    "GradcheckResult",
    "attention_worked_example",
    "saturation_draw",
    "softmax_jacobian_norms",
    "saturation_curves",
    "half_point",
    "gradcheck_case",
    "attention_gradcheck",
]

#: Key widths compared in the saturation experiment (``softmax_saturation`` figure), increasing.
SATURATION_D_K = (16, 64, 256)
#: Score multipliers ``c`` of the saturation experiment: 10^-2 to 10^2, with ``c = 1`` among them.
SATURATION_MULTIPLIERS = np.logspace(-2, 2, 49)
#: Seeds of the saturation experiment; each seed draws its own queries and keys for every width.
SATURATION_SEEDS = tuple(range(10))
#: Queries and keys per draw of the saturation experiment.
SATURATION_QUERIES, SATURATION_KEYS = 128, 16
#: Seeds of the numerical check of ``attention_backward``.
GRADCHECK_SEEDS = tuple(range(10))


# ----------------------------------------------------------------------------- the worked example


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


# ----------------------------------------------------------------------------- saturation


def saturation_draw(d_k: int, seed: int = 0, n_queries: int = SATURATION_QUERIES,
                    n_keys: int = SATURATION_KEYS) -> tuple[np.ndarray, np.ndarray]:
    """Queries ``[n_queries, d_k]`` and keys ``[n_keys, d_k]`` with independent standard normal entries.

    Zero mean and unit variance, so every raw dot product ``Q[i] @ K[j]`` has mean 0 and
    variance ``d_k``. The draw depends on ``seed`` and ``d_k`` only.

    Examples
    --------
    >>> Q, K = saturation_draw(64, seed=1)
    >>> Q.shape, K.shape
    ((128, 64), (16, 64))
    """
    require(d_k >= 1 and n_queries >= 1 and n_keys >= 1,
            f"d_k, n_queries and n_keys must be positive, got {d_k}, {n_queries}, {n_keys}")
    rng = np.random.default_rng([seed, d_k])
    return rng.standard_normal((n_queries, d_k)), rng.standard_normal((n_keys, d_k))


def softmax_jacobian_norms(d_k: int, multipliers, scaled: bool, n_queries: int = SATURATION_QUERIES,
                           n_keys: int = SATURATION_KEYS, seed: int = 0) -> np.ndarray:
    """Mean Frobenius norm of the softmax Jacobian of attention scores, per score multiplier.

    Takes the queries and keys of :func:`saturation_draw` (the same for every
    multiplier), forms the scores ``c * Q K^T`` (divided by ``sqrt(d_k)`` when
    ``scaled``) for every multiplier ``c``, and returns, for each ``c``, the norm of
    the Jacobian of each query's softmax row averaged over the queries.

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
    Q, K = saturation_draw(d_k, seed, n_queries, n_keys)
    scores = Q @ K.T / (np.sqrt(d_k) if scaled else 1.0)
    c = np.asarray(multipliers, dtype=np.float64).reshape(-1, 1, 1)
    A, softmax_cache = softmax(c * scores)  # A: [n_c, n_queries, n_keys]
    # Column n of every row's Jacobian, for all multipliers and queries at once, is the backward of e_n;
    # the squared Frobenius norm is the sum of the columns' squared lengths.
    squared = sum(np.sum(softmax_backward(np.broadcast_to(e_n, A.shape), softmax_cache) ** 2, axis=-1)
                  for e_n in np.eye(n_keys))
    return np.sqrt(squared).mean(axis=-1)


class SaturationCurves(NamedTuple):
    """Mean softmax-Jacobian norms over seeds, key widths and score multipliers."""

    multipliers: np.ndarray  # [n_c]
    d_k: tuple  # the key widths, increasing
    seeds: tuple
    scaled: np.ndarray  # [n_seeds, n_widths, n_c], scores Q K^T / sqrt(d_k)
    unscaled: np.ndarray  # [n_seeds, n_widths, n_c], scores Q K^T


@shared  # the page and the figure run in separate processes: computed once, read by both
def saturation_curves(seeds=SATURATION_SEEDS, d_ks=SATURATION_D_K, multipliers=SATURATION_MULTIPLIERS,
                      n_queries: int = SATURATION_QUERIES, n_keys: int = SATURATION_KEYS) -> SaturationCurves:
    """:func:`softmax_jacobian_norms` for every seed and key width, with and without the scale.

    Seed ``s`` and width ``d_k`` use the same draw with and without the scale, so the two
    curves of one seed differ only by the factor ``1/sqrt(d_k)`` on the scores.
    The arrays are read-only: :func:`~.memo.shared` keeps the result for every caller with the
    same arguments.

    Examples
    --------
    >>> curves = saturation_curves(seeds=(0, 1), d_ks=(4, 8), multipliers=[1.0, 10.0])
    >>> curves.scaled.shape, curves.unscaled.shape
    ((2, 2, 2), (2, 2, 2))
    """
    d_ks = tuple(int(d) for d in d_ks)
    require(len(seeds) >= 1 and len(d_ks) >= 1, "saturation_curves needs at least one seed and one width")
    require(list(d_ks) == sorted(set(d_ks)), f"key widths must be distinct and increasing, got {d_ks}")
    multipliers = np.asarray(multipliers, dtype=np.float64)
    norms = {scaled: np.array([[softmax_jacobian_norms(d_k, multipliers, scaled, n_queries, n_keys, seed)
                                for d_k in d_ks] for seed in seeds])
             for scaled in (True, False)}
    return SaturationCurves(multipliers, d_ks, tuple(seeds), norms[True], norms[False])


def half_point(multipliers, norms) -> float:
    """The first multiplier at which ``norms`` has fallen below half its value at the first multiplier.

    ``multipliers`` increasing; a curve that never falls that far raises ``ValueError``.

    Examples
    --------
    >>> half_point([0.1, 1.0, 10.0], [0.4, 0.3, 0.1])
    10.0
    """
    multipliers, norms = np.asarray(multipliers, dtype=np.float64), np.asarray(norms, dtype=np.float64)
    require(multipliers.ndim == 1 and multipliers.shape == norms.shape,
            f"multipliers {multipliers.shape} and norms {norms.shape} must be 1-D and of the same shape")
    require(bool(np.all(np.diff(multipliers) > 0)), "multipliers must be increasing")
    below = np.flatnonzero(norms < norms[0] / 2)
    require(below.size > 0, f"the norms never fall below half of {norms[0]:.3g}")
    return float(multipliers[below[0]])


# ----------------------------------------------------------------------------- the numerical check


class GradcheckCase(NamedTuple):
    """A random attention call whose four sizes all differ, and the weights ``G`` of its loss."""

    Q: np.ndarray  # [n_q, d_k]
    K: np.ndarray  # [n_k, d_k]
    V: np.ndarray  # [n_k, d_v]
    G: np.ndarray  # [n_q, d_v]: the loss is L = sum(G * O), so dL/dO = G


def gradcheck_case(seed: int = 0, n_q: int = 4, n_k: int = 5, d_k: int = 3, d_v: int = 2) -> GradcheckCase:
    """Standard normal ``Q, K, V, G`` from ``np.random.default_rng(seed)``, drawn in that order.

    The default sizes all differ, so a transposed or swapped operand cannot keep its shape.

    Examples
    --------
    >>> [x.shape for x in gradcheck_case()]
    [(4, 3), (5, 3), (5, 2), (4, 2)]
    """
    require(min(n_q, n_k, d_k, d_v) >= 1, f"sizes must be positive, got n_q={n_q}, n_k={n_k}, d_k={d_k}, d_v={d_v}")
    rng = np.random.default_rng(seed)
    return GradcheckCase(*(rng.standard_normal(shape) for shape in [(n_q, d_k), (n_k, d_k), (n_k, d_v), (n_q, d_v)]))


class GradcheckResult(NamedTuple):
    """A backward pass against central differences, one entry per input ``Q, K, V``."""

    loss: float  # L = sum(G * O) at the case's inputs
    relative: np.ndarray  # [3] largest entrywise relative error (reference.gradcheck.relative_error)
    absolute: np.ndarray  # [3] largest entrywise absolute error
    smallest: np.ndarray  # [3] smallest |entry| of the gradient under test
    largest: np.ndarray  # [3] largest |entry| of the gradient under test


def attention_gradcheck(seed: int = 0, backward: Callable = attention_backward, h: float = 1e-6) -> GradcheckResult:
    """Compare ``backward(G, cache)`` with central differences of ``attention`` on :func:`gradcheck_case`.

    ``backward`` has the signature of :func:`attention_backward` (the default) and
    returns ``dQ, dK, dV``; pass a deliberately wrong one to see what a check reports.
    Every entry of every input is perturbed, with step ``h``.

    Examples
    --------
    >>> bool(attention_gradcheck(seed=0).relative.max() < 1e-6)
    True
    """
    case = gradcheck_case(seed)
    inputs = [case.Q, case.K, case.V]
    _, cache = attention(*inputs)
    grads = [np.asarray(g, dtype=np.float64) for g in backward(case.G, cache)]
    require(len(grads) == 3, f"backward must return dQ, dK, dV, got {len(grads)} arrays")
    for name, x, g in zip("QKV", inputs, grads):
        require(g.shape == x.shape, f"d{name} has shape {g.shape}, {name} has shape {x.shape}")

    def loss(*xs):
        return float(np.sum(case.G * attention(*xs)[0]))

    numeric = [numerical_gradient(loss, inputs, index, h) for index in range(3)]
    return GradcheckResult(
        loss=loss(*inputs),
        relative=np.array([relative_error(g, n).max() for g, n in zip(grads, numeric)]),
        absolute=np.array([np.abs(g - n).max() for g, n in zip(grads, numeric)]),
        smallest=np.array([np.abs(g).min() for g in grads]),
        largest=np.array([np.abs(g).max() for g in grads]),
    )
