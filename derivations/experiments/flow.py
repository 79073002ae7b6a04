"""The experiments of the gradient-flow chapter, shared by its page and its figures.

Every function here is seeded, float64 and deterministic, and returns plain
arrays, so the page prints exactly what the figures draw. Each experiment takes
its ``seed``; :func:`~.evidence.over_seeds` (re-exported here) runs one over many
seeds, the seed becoming the first axis, and :func:`~.evidence.spread` summarises
that axis, so every conclusion the page draws can be stated over :data:`SEEDS` with
its range. The sections follow the chapter:

- chains: :func:`deep_chain_gradient_norms`
- recurrent networks: :func:`rnn_gradient_horizon`, :func:`growth_per_step`
- residual connections: :func:`residual_gradient_norms`
- attention: :func:`peaked_attention`, :func:`score_statistics`, :func:`score_scale_sweep`
- normalisation placement: :func:`norm_placement_profiles`
- monitoring: :func:`head_scores`
- clipping: :func:`train_rnn_memory`
- initialisation: :func:`init_profile`, :func:`residual_scaling_profile`
- debugging: :func:`train_mlp`, :func:`train_attention_selector`

Gradients come from the reference backward passes (:mod:`derivations.reference`,
and the ``tanh`` pair of :mod:`derivations.reference.tanh`), never from finite
differences and never from a derivative written out here. The only derivatives
written here are those of the two things the reference has no operation for: a
multiplication by a constant, and the squared-error loss, ``d(r^2/2)/dr = r``.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from ..reference._checks import require
from ..reference.attention import attention, attention_backward, softmax, softmax_backward
from ..reference.layers import linear, linear_backward, relu, relu_backward
from ..reference.model import TransformerConfig, forward_backward, init_params, loss_and_grads
from ..reference.optim import clip_grad_norm, sgd_step
from ..reference.rnn import rnn_backward, rnn_forward
from ..reference.tanh import tanh, tanh_backward
from ..reference.task import make_split
from .evidence import geometric_mean, over_seeds, spread
from .memo import shared

__all__ = [
    "SEEDS",
    "over_seeds",
    "spread",
    "geometric_mean",
    "CHAIN_DEPTH",
    "CHAIN_SCALES",
    "deep_chain_gradient_norms",
    "RNN_WIDTH",
    "RNN_HORIZONS",
    "shift_matrix",
    "scaled_orthogonal",
    "spectral_radius",
    "recurrent_examples",
    "rnn_gradient_horizon",
    "growth_per_step",
    "RESIDUAL_DEPTHS",
    "residual_gradient_norms",
    "SATURATED",
    "peaked_attention",
    "score_statistics",
    "score_scale_sweep",
    "PLACEMENT",
    "norm_placement_profiles",
    "head_scores",
    "train_rnn_memory",
    "INITS",
    "init_profile",
    "residual_scaling_profile",
    "train_mlp",
    "train_attention_selector",
]

#: The seeds every random experiment of the chapter is run with, unless a page says otherwise.
SEEDS = tuple(range(10))


def _norm(x) -> float:
    return float(np.sqrt(np.sum(np.square(x))))


# ----------------------------------------------------------------------------- plain stacks

#: The entrywise non-linearities of the plain stacks, as reference forward/backward pairs.
_ACTIVATIONS = {"linear": None, "tanh": (tanh, tanh_backward), "relu": (relu, relu_backward)}


def _stack_forward(h, weights, activation: str):
    """``h_l = f(h_{l-1} W_l)`` for every ``W_l``; returns the activations ``h_0 ... h_L`` and the caches."""
    require(activation in _ACTIVATIONS, f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    pair = _ACTIVATIONS[activation]
    hs, caches = [h], []
    for W in weights:
        z, linear_cache = linear(hs[-1], W)
        h, act_cache = pair[0](z) if pair else (z, None)
        hs.append(h)
        caches.append((linear_cache, act_cache))
    return hs, caches


def _stack_backward(g, caches, activation: str):
    """``dL/dh_l`` for ``l = L ... 0``, from ``g = dL/dh_L``, through the reference backward passes."""
    pair = _ACTIVATIONS[activation]
    grads = [g]
    for linear_cache, act_cache in reversed(caches):
        dz = pair[1](grads[-1], act_cache) if pair else grads[-1]
        grads.append(linear_backward(dz, linear_cache)[0])
    return grads[::-1]


# ----------------------------------------------------------------------------- 1. chains

#: Sizes the page and the figures share.
CHAIN_DEPTH = 50
CHAIN_SCALES = (0.5, 0.9, 1.0, 1.5, 3.0)


@shared  # the page and the figure run in separate processes: computed once, read by both
def deep_chain_gradient_norms(depth: int, weight_scale: float, activation: str = "tanh", width: int = 64,
                              batch: int = 16, seed: int = 0) -> np.ndarray:
    """Gradient norm at every layer of a plain stack ``h_l = f(h_{l-1} W_l)``.

    ``W_l`` has i.i.d. entries ``N(0, weight_scale^2 / width)``; the input
    ``h_0`` is standard normal ``[batch, width]``; ``f`` is the identity
    (``"linear"``), ``tanh`` or ReLU; the loss is ``L = sum(G * h_depth)`` for a
    standard normal ``G``, so the gradient arriving at the top is ``G`` whatever
    the forward pass did. The backward pass is :func:`~derivations.reference.linear_backward`
    after the activation's own backward.

    Returns
    -------
    ndarray, shape ``[depth + 1]``
        ``||dL/dh_l||`` (Frobenius, over the batch) for ``l = 0 ... depth``; read-only, as
        :func:`~.memo.shared` keeps it for every caller with the same arguments.

    Examples
    --------
    A linear stack with weight scale 1 keeps the norm, roughly:

    >>> norms = deep_chain_gradient_norms(10, 1.0, "linear")
    >>> bool(0.3 < norms[0] / norms[-1] < 3)
    True
    """
    rng = np.random.default_rng(seed)
    h0 = rng.standard_normal((batch, width))
    weights = [rng.standard_normal((width, width)) * weight_scale / math.sqrt(width) for _ in range(depth)]
    hs, caches = _stack_forward(h0, weights, activation)
    G = rng.standard_normal(hs[-1].shape)
    return np.array([_norm(g) for g in _stack_backward(G, caches, activation)])


# ----------------------------------------------------------------------------- 2. recurrent networks

RNN_WIDTH = 16
RNN_HORIZONS = (1, 2, 5, 10, 15, 16, 20, 30, 50, 70, 100, 150, 200)


def shift_matrix(n: int) -> np.ndarray:
    """The ``n x n`` matrix with ones just above the diagonal: nilpotent, ``S^n = 0``.

    Examples
    --------
    >>> S = shift_matrix(3)
    >>> S.tolist(), bool(np.all(np.linalg.matrix_power(S, 3) == 0))
    ([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]], True)
    """
    return np.eye(n, k=1)


def scaled_orthogonal(n: int, radius: float, seed: int = 0) -> np.ndarray:
    """``radius`` times a random orthogonal matrix: every eigenvalue and every singular value is ``radius``."""
    Q, R = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return radius * Q * np.sign(np.diag(R))  # the sign fix makes the draw Haar-distributed


def spectral_radius(W) -> float:
    """Largest eigenvalue modulus. For a triangular matrix, read off the diagonal exactly.

    Eigenvalues of strongly non-normal matrices are ill-conditioned: a rounding
    error of ``1e-16`` can move them by far more than that, so for the
    triangular examples of the chapter the diagonal is used instead.

    Examples
    --------
    >>> spectral_radius(0.5 * np.eye(4) + 3 * shift_matrix(4))
    0.5
    """
    W = np.asarray(W, dtype=np.float64)
    if np.all(np.tril(W, -1) == 0) or np.all(np.triu(W, 1) == 0):
        return float(np.max(np.abs(np.diag(W))))
    return float(np.max(np.abs(np.linalg.eigvals(W))))


def recurrent_examples(d_h: int = RNN_WIDTH) -> dict[str, np.ndarray]:
    """The recurrent matrices the chapter compares, by label: three normal ones and two non-normal ones.

    - ``orthogonal × r``: every eigenvalue and every singular value has modulus ``r``
      (one orthogonal matrix, drawn with seed 0, scaled three ways).
    - ``0.5·I + 3·shift``: upper triangular, so its eigenvalues are its diagonal (all 0.5),
      while its norm is about 3.5.
    - ``10·shift (nilpotent)``: every eigenvalue is 0, the norm is 10, and its ``d_h``-th power is 0.

    Examples
    --------
    >>> [round(spectral_radius(W), 6) for W in recurrent_examples().values()]
    [0.9, 1.5, 3.0, 0.5, 0.0]
    """
    return {
        "orthogonal × 0.9": scaled_orthogonal(d_h, 0.9),
        "orthogonal × 1.5": scaled_orthogonal(d_h, 1.5),
        "orthogonal × 3": scaled_orthogonal(d_h, 3.0),
        "0.5·I + 3·shift": 0.5 * np.eye(d_h) + 3.0 * shift_matrix(d_h),
        "10·shift (nilpotent)": 10.0 * shift_matrix(d_h),
    }


@shared  # the page and the figure run in separate processes: computed once, read by both
def rnn_gradient_horizon(W_hh, horizons, input_scale: float, seeds=SEEDS, batch: int = 8) -> np.ndarray:
    """How much of a gradient at ``h_T`` reaches ``h_0``, for each horizon ``T`` and each seed.

    A tanh RNN (:func:`~derivations.reference.rnn.rnn_forward`) with the given
    recurrent matrix, ``W_xh = I``, zero bias and ``h_0 = 0`` runs over inputs
    whose entries are standard normal times ``input_scale``: each step adds
    such a vector to the pre-activation. With ``input_scale = 0`` every hidden
    state stays exactly 0, so every ``tanh'`` is exactly 1 and the backward pass
    multiplies by ``W_hh^T`` alone. For horizon ``T`` the network runs ``T``
    steps and the loss is ``sum(G * h_T)`` with a standard normal ``G``; the
    gradient comes from :func:`~derivations.reference.rnn.rnn_backward`.

    Seed ``s`` draws its own inputs and ``G`` (``np.random.default_rng(s)``,
    inputs first). The seeds run side by side, as a batch axis of the one
    reference RNN, since nothing else differs between them.

    Returns
    -------
    ndarray, shape ``[len(seeds), len(horizons)]``
        ``||dL/dh_0|| / ||dL/dh_T||`` for every seed (the norms over that seed's batch); read-only,
        as :func:`~.memo.shared` keeps it for every caller with the same arguments (``W_hh`` named
        by its content).
    """
    W_hh = np.asarray(W_hh, dtype=np.float64)
    horizons = [int(T) for T in horizons]
    require(len(horizons) >= 1 and min(horizons) >= 1, f"horizons {horizons} must be positive step counts")
    require(W_hh.ndim == 2 and W_hh.shape[0] == W_hh.shape[1], f"W_hh {W_hh.shape} must be square")
    seeds = tuple(int(s) for s in seeds)
    require(len(seeds) >= 1 and len(set(seeds)) == len(seeds), f"seeds {seeds} must be distinct, at least one")
    d_h, longest = W_hh.shape[0], max(horizons)
    draws = [np.random.default_rng(seed) for seed in seeds]
    x = np.stack([rng.standard_normal((longest, batch, d_h)) for rng in draws], axis=1) * input_scale
    G = np.stack([rng.standard_normal((batch, d_h)) for rng in draws])  # [seed, batch, d_h]
    ratios = []
    for T in horizons:
        hs, cache = rnn_forward(x[:T], np.zeros(G.shape), np.eye(d_h), W_hh, np.zeros(d_h))
        dhs = np.zeros_like(hs)
        dhs[-1] = G
        dh0 = rnn_backward(dhs, cache)[1]
        ratios.append(np.sqrt(np.sum(dh0**2, axis=(1, 2)) / np.sum(G**2, axis=(1, 2))))
    return np.array(ratios).T


def growth_per_step(ratios, horizons, start: int) -> np.ndarray:
    """The factor per step by which ``ratios`` change from horizon ``start`` to the last horizon.

    ``(r_last / r_start) ** (1 / (T_last - T_start))`` along the last axis; exactly
    0 where the last ratio is exactly 0 (a gradient that has been annihilated).

    Examples
    --------
    >>> growth_per_step([[1.0, 0.5, 0.125], [1.0, 1.0, 0.0]], horizons=(1, 2, 4), start=2).tolist()
    [0.5, 0.0]
    """
    ratios = np.asarray(ratios, dtype=np.float64)
    horizons = list(horizons)
    require(start in horizons and start != horizons[-1],
            f"start = {start} must be one of the horizons {horizons}, before the last")
    first, last = ratios[..., horizons.index(start)], ratios[..., -1]
    steps = horizons[-1] - start
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(last == 0, 0.0, (last / first) ** (1.0 / steps))


# ----------------------------------------------------------------------------- 3. residual connections

RESIDUAL_DEPTHS = (2, 4, 8, 16, 32, 64)


def residual_gradient_norms(depths, residual: bool, branch_scale: str = "1", weight_scale: float = 0.5,
                            width: int = 64, batch: int = 16, seed: int = 0) -> np.ndarray:
    """``||dL/dh_0|| / ||dL/dh_L||`` for stacks of ``L`` layers, with or without residual connections.

    The layer (branch) is ``f(h) = c tanh(h W)`` with ``W ~ N(0, weight_scale^2 / width)``,
    a contracting map for ``weight_scale < 1``. Without residuals the stack is
    ``h_l = f(h_{l-1})``; with them ``h_l = h_{l-1} + f(h_{l-1})``. The branch
    multiplier ``c`` is 1 (``branch_scale="1"``) or ``1 / sqrt(L)``
    (``branch_scale="1/sqrt(L)"``). The loss is ``sum(G * h_L)`` with a random
    ``G``. Backward, the branch goes through the reference ``tanh`` and linear
    backward passes; the skip connection adds the gradient arriving at the sum.

    Returns
    -------
    ndarray, shape ``[len(depths)]``
    """
    require(branch_scale in ("1", "1/sqrt(L)"), f"branch_scale must be '1' or '1/sqrt(L)', got {branch_scale!r}")
    ratios = []
    for L in depths:
        rng = np.random.default_rng(seed)
        c = 1.0 if branch_scale == "1" else 1.0 / math.sqrt(L)
        h = rng.standard_normal((batch, width))
        weights = [rng.standard_normal((width, width)) * weight_scale / math.sqrt(width) for _ in range(L)]
        caches = []
        for W in weights:
            z, linear_cache = linear(h, W)
            t, tanh_cache = tanh(z)
            caches.append((linear_cache, tanh_cache))
            h = h + c * t if residual else c * t
        G = rng.standard_normal(h.shape)
        g = G
        for linear_cache, tanh_cache in reversed(caches):
            through_branch = linear_backward(tanh_backward(c * g, tanh_cache), linear_cache)[0]
            g = g + through_branch if residual else through_branch  # (I + J_f)^T g, or J_f^T g
        ratios.append(_norm(g) / _norm(G))
    return np.array(ratios)


# ----------------------------------------------------------------------------- 4. attention

#: A query counts as saturated when its largest attention weight exceeds this.
SATURATED = 0.99


class PeakedAttention(NamedTuple):
    """One query against ``n_keys`` keys, per score multiplier ``c`` (first axis)."""

    weights: np.ndarray  # [n_c, n_keys]   attention weights A
    dV_norms: np.ndarray  # [n_c, n_keys]  ||dL/dV_j||, one per key
    dS_norms: np.ndarray  # [n_c]          ||dL/dS|| of the query's score row
    top_key: int  # the key with the largest score


def peaked_attention(multipliers, n_keys: int = 6, d_k: int = 4, d_v: int = 4, seed: int = 0) -> PeakedAttention:
    """Sharpen one query's attention by multiplying its scores by ``c``; measure the gradients.

    The query, keys, values and upstream gradient ``dO`` are standard normal.
    Multiplying the query by ``c`` multiplies every score by ``c``. ``dV`` comes
    from :func:`~derivations.reference.attention_backward`; the weights and the
    score gradient ``dS`` from the reference softmax pair applied to the same
    scores ``c q K^T / sqrt(d_k)``, with ``dL/dA = dO V^T``.
    """
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((1, d_k))
    K = rng.standard_normal((n_keys, d_k))
    V = rng.standard_normal((n_keys, d_v))
    dO = rng.standard_normal((1, d_v))
    weights, dV_norms, dS_norms = [], [], []
    for c in multipliers:
        _, attention_cache = attention(c * q, K, V)
        dV = attention_backward(dO, attention_cache)[2]
        A, softmax_cache = softmax(c * q @ K.T / math.sqrt(d_k))
        dS = softmax_backward(dO @ V.T, softmax_cache)
        weights.append(A[0])
        dV_norms.append(np.linalg.norm(dV, axis=1))
        dS_norms.append(_norm(dS))
    top_key = int(np.argmax(q @ K.T))
    return PeakedAttention(np.array(weights), np.array(dV_norms), np.array(dS_norms), top_key)


def _score_draw(d_k: int, n_queries: int, n_keys: int, d_v: int, seed: int):
    rng = np.random.default_rng([seed, d_k])
    return (rng.standard_normal((n_queries, d_k)), rng.standard_normal((n_keys, d_k)),
            rng.standard_normal((n_keys, d_v)), rng.standard_normal((n_queries, d_v)))


def _scores_and_gradients(Q, K, V, dO, c: float):
    """Weights, ``dS`` and ``dQ`` (with respect to the unmultiplied ``Q``) for scores ``c Q K^T / sqrt(d_k)``."""
    _, attention_cache = attention(c * Q, K, V)
    dQ = attention_backward(dO, attention_cache)[0] * c  # chain rule through the multiplication by c
    A, softmax_cache = softmax(c * Q @ K.T / math.sqrt(Q.shape[-1]))
    dS = softmax_backward(dO @ V.T, softmax_cache)
    return A, dS, dQ


class ScoreStatistics(NamedTuple):
    """Attention statistics over many random queries, for one key width."""

    raw_mean: float  # mean of the unscaled dot products q . k
    raw_variance: float  # their variance
    max_weight: float  # mean over queries of the largest attention weight
    saturated: float  # fraction of queries whose largest weight exceeds SATURATED
    dS_median: float  # median over queries of ||dL/dS_i|| (one row of the score gradient)
    dQ_median: float  # median over queries of ||dL/dQ_i||
    dQ_total: float  # ||dL/dQ|| over all queries
    dQ_top_share: float  # share of ||dL/dQ||^2 carried by the tenth of the queries with the largest gradients


def score_statistics(d_k: int, scaled: bool, n_queries: int = 256, n_keys: int = 16, d_v: int = 16,
                     seed: int = 0) -> ScoreStatistics:
    """Attention on standard normal queries and keys, with or without the ``1/sqrt(d_k)`` factor.

    The reference :func:`~derivations.reference.attention` always divides by
    ``sqrt(d_k)``; multiplying the queries by ``sqrt(d_k)`` undoes it, which
    gives unscaled scores ``Q K^T``. ``dQ`` is the gradient with respect to the
    original (unmultiplied) queries, so both settings are compared on the same variable.
    """
    Q, K, V, dO = _score_draw(d_k, n_queries, n_keys, d_v, seed)
    raw = Q @ K.T
    A, dS, dQ = _scores_and_gradients(Q, K, V, dO, 1.0 if scaled else math.sqrt(d_k))
    top = A.max(axis=1)
    per_query = np.sort(np.sum(dQ**2, axis=1))[::-1]
    top_share = float(per_query[: max(1, n_queries // 10)].sum() / per_query.sum())
    return ScoreStatistics(float(raw.mean()), float(raw.var()), float(top.mean()), float(np.mean(top > SATURATED)),
                           float(np.median(np.linalg.norm(dS, axis=1))),
                           float(np.median(np.linalg.norm(dQ, axis=1))), _norm(dQ), top_share)


def score_scale_sweep(d_k: int, multipliers, n_queries: int = 256, n_keys: int = 16, d_v: int = 16,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Median per-query ``||dL/dS_i||`` and ``||dL/dQ_i||`` for scores ``c Q K^T / sqrt(d_k)``, per ``c``.

    Returns
    -------
    dS_median, dQ_median : ndarray, shape ``[len(multipliers)]``
    """
    Q, K, V, dO = _score_draw(d_k, n_queries, n_keys, d_v, seed)
    dS_median, dQ_median = [], []
    for c in multipliers:
        _, dS, dQ = _scores_and_gradients(Q, K, V, dO, c)
        dS_median.append(np.median(np.linalg.norm(dS, axis=1)))
        dQ_median.append(np.median(np.linalg.norm(dQ, axis=1)))
    return np.array(dS_median), np.array(dQ_median)


# ----------------------------------------------------------------------------- 5. pre-norm and post-norm

#: The model and batch of the placement experiment: small enough to run at every build.
PLACEMENT = {
    "d_model": 32,
    "n_heads": 4,
    "d_ff": 128,
    "batch": 4,
    "depths": (2, 6, 12, 24, 48),
    "seeds": SEEDS,
}


def _block_gradient_norms(grads, n_layers: int) -> np.ndarray:
    """``sqrt(sum of g^2)`` over all parameters named ``block{l}.*``, per block ``l``."""
    totals = np.zeros(n_layers)
    for name, g in grads.items():
        if name.startswith("block"):
            totals[int(name[len("block"):name.index(".")])] += float(np.sum(np.square(g)))
    return np.sqrt(totals)


@functools.lru_cache(maxsize=None)
def _placement_batch(batch: int):
    """The first ``batch`` training examples of the task (seed 0), read-only: shared by every run."""
    data, _ = make_split(n_train=batch, n_held_out=0, seed=0)
    for array in data:
        array.setflags(write=False)
    return data.tokens, data.targets


def _placement_config(norm: str, depth: int) -> TransformerConfig:
    return TransformerConfig(d_model=PLACEMENT["d_model"], n_heads=PLACEMENT["n_heads"], d_ff=PLACEMENT["d_ff"],
                             n_layers=depth, norm=norm)


@shared  # the page and the figure run in separate processes: computed once, read by both
def norm_placement_profiles() -> dict[tuple[str, int], np.ndarray]:
    """Per-block parameter-gradient norm at initialisation, for both LayerNorm placements.

    For every ``norm`` in ``("post", "pre")`` and every depth of
    :data:`PLACEMENT`, the reference transformer
    (:mod:`derivations.reference.model`, its own initialisation) is initialised
    with each seed and run on the same batch of task examples; the norm of the
    gradient of each block's parameters is recorded.

    Returns
    -------
    dict
        ``{(norm, depth): ndarray [n_seeds, depth]}``, seeds in the order of
        ``PLACEMENT["seeds"]``, block 0 (next to the embedding) first. The arrays
        are read-only: the result is computed once per build (:func:`~.memo.shared`)
        and shared by the page and the figure.
    """
    tokens, targets = _placement_batch(PLACEMENT["batch"])
    norms = ("post", "pre")
    per_seed: dict[tuple[str, int], list] = {(norm, depth): [] for norm in norms for depth in PLACEMENT["depths"]}
    for depth in PLACEMENT["depths"]:
        configs = {norm: _placement_config(norm, depth) for norm in norms}
        for seed in PLACEMENT["seeds"]:
            # One initialisation serves both placements: pre-norm adds the final LayerNorm,
            # whose scale and shift are ones and zeros, not drawn, so every other parameter is the same.
            pre = init_params(configs["pre"], seed)
            params = {"post": {k: v for k, v in pre.items() if not k.startswith("ln_final.")}, "pre": pre}
            for norm, config in configs.items():
                _, grads = loss_and_grads(params[norm], tokens, targets, config)
                per_seed[norm, depth].append(_block_gradient_norms(grads, depth))
    profiles = {}
    for key, rows in per_seed.items():  # (post, 2), (post, 6), ..., (pre, 48): the order of the loops above
        profile = np.array(rows)
        profile.setflags(write=False)
        profiles[key] = profile
    return profiles


# ----------------------------------------------------------------------------- 6. monitoring


def head_scores(x, W_q, W_k, n_heads: int) -> np.ndarray:
    """The scaled attention scores of every head, ``Q_h K_h^T / sqrt(d_head)``, as the model computes them.

    ``Q = x W_q`` and ``K = x W_k`` (reference :func:`~derivations.reference.linear`)
    are split into ``n_heads`` contiguous slices of the feature axis, as
    :func:`~derivations.reference.multi_head_attention` splits them.

    Parameters
    ----------
    x : array_like, shape ``[batch, T, d_model]``
        The attention layer's input.
    W_q, W_k : array_like, shape ``[d_model, d_model]``
    n_heads : int
        Divides ``d_model``.

    Returns
    -------
    ndarray, shape ``[batch, n_heads, T, T]``

    Examples
    --------
    One head of width 2 and two positions: the scores are ``x x^T / sqrt(2)``.

    >>> head_scores([[[1.0, 1.0], [2.0, 0.0]]], np.eye(2), np.eye(2), 1)[0, 0] * np.sqrt(2)
    array([[2., 2.],
           [2., 4.]])
    """
    Q, _ = linear(x, W_q)
    K, _ = linear(x, W_k)
    require(Q.ndim == 3, f"x {np.shape(x)} must be [batch, T, d_model]")
    batch, T, d_model = Q.shape
    require(n_heads >= 1 and d_model % n_heads == 0, f"n_heads = {n_heads} must divide d_model = {d_model}")
    d_head = d_model // n_heads

    def split(M):
        return M.reshape(batch, T, n_heads, d_head).transpose(0, 2, 1, 3)

    return split(Q) @ split(K).transpose(0, 1, 3, 2) / math.sqrt(d_head)


# ----------------------------------------------------------------------------- 7. clipping


class TrainingRun(NamedTuple):
    losses: np.ndarray  # [steps], the loss before each step
    grad_norms: np.ndarray  # [steps], the global gradient norm before clipping


def train_rnn_memory(max_norm: float | None, steps: int = 50, lr: float = 1.0, radius: float = 2.0,
                     T: int = 20, batch: int = 32, d_in: int = 4, d_h: int = 16, seed: int = 0) -> TrainingRun:
    """Plain SGD on a memory task for a tanh RNN whose ``W_hh`` starts with spectral radius ``radius``.

    The target is the sign of the first feature of the first input; the
    prediction is ``h_T W_hy`` read after ``T`` steps (reference ``linear``); the
    loss is half the mean squared error. ``W_hh`` starts as ``radius`` times a
    random orthogonal matrix. With ``max_norm`` the gradient is clipped by its
    global norm (:func:`~derivations.reference.clip_grad_norm`) before each step.
    Overflow is allowed to happen (and to produce ``inf`` and ``nan``): that is
    what the experiment shows.
    """
    rng = np.random.default_rng(seed)
    params = {
        "W_xh": rng.standard_normal((d_in, d_h)) / math.sqrt(d_in),
        "W_hh": scaled_orthogonal(d_h, radius, seed),
        "b": np.zeros(d_h),
        "W_hy": rng.standard_normal((d_h, 1)) / math.sqrt(d_h),
    }
    x = rng.standard_normal((T, batch, d_in))
    y = np.sign(x[0, :, :1])
    losses, norms = [], []
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            hs, rnn_cache = rnn_forward(x, np.zeros((batch, d_h)), params["W_xh"], params["W_hh"], params["b"])
            prediction, head_cache = linear(hs[-1], params["W_hy"])
            residual = prediction - y
            losses.append(0.5 * float(np.mean(residual**2)))
            dh_last, dW_hy, _ = linear_backward(residual / batch, head_cache)
            dhs = np.zeros_like(hs)
            dhs[-1] = dh_last
            _, _, dW_xh, dW_hh, db = rnn_backward(dhs, rnn_cache)
            grads = {"W_xh": dW_xh, "W_hh": dW_hh, "b": db, "W_hy": dW_hy}
            if max_norm is None:
                norms.append(math.sqrt(sum(float(np.sum(g * g)) for g in grads.values())))
            else:
                grads, total = clip_grad_norm(grads, max_norm)
                norms.append(total)
            params = sgd_step(params, grads, lr)
    return TrainingRun(np.array(losses), np.array(norms))


# ----------------------------------------------------------------------------- 8. initialisation

INITS = {
    "xavier": lambda fan_in, fan_out: math.sqrt(2.0 / (fan_in + fan_out)),
    "he": lambda fan_in, fan_out: math.sqrt(2.0 / fan_in),
}


def init_profile(init: str, activation: str, depth: int = 50, width: int = 128, batch: int = 16,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Activation and gradient second moments at every layer of a deep MLP ``h_l = f(h_{l-1} W_l)``.

    ``W_l ~ N(0, std^2)`` with ``std`` from ``init`` (``"xavier"``:
    ``sqrt(2 / (fan_in + fan_out))``, ``"he"``: ``sqrt(2 / fan_in)``); ``f`` is
    ``"tanh"`` or ``"relu"`` (or ``"linear"``); the input is standard normal; the
    loss is ``sum(G * h_depth)`` with standard normal ``G``.

    Returns
    -------
    activation_var, gradient_var : ndarray, shape ``[depth + 1]``
        ``mean(h_l^2)`` and ``mean((dL/dh_l)^2)`` for ``l = 0 ... depth``.
    """
    require(init in INITS, f"init must be one of {sorted(INITS)}, got {init!r}")
    rng = np.random.default_rng(seed)
    std = INITS[init](width, width)
    h0 = rng.standard_normal((batch, width))
    weights = [rng.standard_normal((width, width)) * std for _ in range(depth)]
    hs, caches = _stack_forward(h0, weights, activation)
    G = rng.standard_normal(hs[-1].shape)
    gradients = _stack_backward(G, caches, activation)
    return np.array([float(np.mean(h**2)) for h in hs]), np.array([float(np.mean(g**2)) for g in gradients])


@functools.lru_cache(maxsize=None)
def residual_scaling_profile(n_layers: int, scaled: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Residual-stream second moment and per-block gradient norm of the pre-norm reference transformer.

    The model of :data:`PLACEMENT` with ``norm="pre"`` and ``n_layers`` blocks,
    initialised by :func:`~derivations.reference.model.init_params`; with
    ``scaled`` the two residual output projections of every block
    (``attn.W_o`` and ``ffn.W2``) are divided by ``sqrt(2 n_layers)``, GPT-2's
    rule (there: standard deviation ``0.02 / sqrt(2 n_layers)``).

    Returns
    -------
    stream_var : ndarray, shape ``[n_layers + 1]``
        ``mean(x^2)`` of the residual stream entering each block, then leaving the last one.
    block_grad : ndarray, shape ``[n_layers]``
        Norm of each block's parameter gradient.
    """
    config = _placement_config("pre", n_layers)
    params = init_params(config, seed)
    if scaled:
        for name in params:
            if name.endswith(("attn.W_o", "ffn.W2")):
                params[name] = params[name] / math.sqrt(2 * n_layers)
    tokens, targets = _placement_batch(PLACEMENT["batch"])
    _, grads, trace = forward_backward(params, tokens, targets, config, record=True)
    acts = trace["activations"]
    stream = [acts[f"block{l}.in"] for l in range(n_layers)] + [acts[f"block{n_layers - 1}.out"]]
    stream_var = np.array([float(np.mean(s**2)) for s in stream])
    block_grad = _block_gradient_norms(grads, n_layers)
    for array in (stream_var, block_grad):
        array.setflags(write=False)
    return stream_var, block_grad


# ----------------------------------------------------------------------------- 9. debugging


def _regression_data(n: int = 64, d: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    return X, np.sin(X @ rng.standard_normal((d, 1)))


def _mlp_loss_and_grads(params, X, y):
    z, cache1 = linear(X, params["W1"], params["b1"])
    a, cache_relu = relu(z)
    out, cache2 = linear(a, params["W2"], params["b2"])
    residual = out - y
    loss = 0.5 * float(np.mean(residual**2))
    da, dW2, db2 = linear_backward(residual / len(X), cache2)
    _, dW1, db1 = linear_backward(relu_backward(da, cache_relu), cache1)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


class MLPRun(NamedTuple):
    losses: np.ndarray  # [steps], the loss before each step
    first_grads: dict  # the gradients of the first step


def train_mlp(init: str, lr: float, steps: int = 200, hidden: int = 32, seed: int = 0) -> MLPRun:
    """Plain SGD on a small regression, a one-hidden-layer ReLU MLP (reference linear and ReLU pairs).

    The data: 64 standard normal inputs of 8 features, target ``sin(x . u)`` for
    a random ``u`` (drawn with ``seed``). ``init="zero"`` sets every parameter
    to 0; ``init="he"`` draws ``W1 ~ N(0, 2/8)``, ``W2 ~ N(0, 1/hidden)``, biases 0.
    Overflow is allowed (the loss may become ``inf`` or ``nan``).
    """
    require(init in ("zero", "he"), f"init must be 'zero' or 'he', got {init!r}")
    X, y = _regression_data(seed=seed)
    d = X.shape[1]
    rng = np.random.default_rng([seed, 1])
    if init == "zero":
        params = {"W1": np.zeros((d, hidden)), "b1": np.zeros(hidden), "W2": np.zeros((hidden, 1)), "b2": np.zeros(1)}
    else:
        params = {"W1": rng.standard_normal((d, hidden)) * math.sqrt(2.0 / d), "b1": np.zeros(hidden),
                  "W2": rng.standard_normal((hidden, 1)) / math.sqrt(hidden), "b2": np.zeros(1)}
    losses, first = [], None
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            loss, grads = _mlp_loss_and_grads(params, X, y)
            first = grads if first is None else first
            losses.append(loss)
            params = sgd_step(params, grads, lr)
    return MLPRun(np.array(losses), first)


class SelectorRun(NamedTuple):
    losses: np.ndarray  # [steps], the loss before each step
    accuracy: float  # fraction of queries whose largest weight is on their target key, after training
    saturated: float  # fraction of queries whose largest weight exceeds SATURATED, at the start


def train_attention_selector(scaled: bool, steps: int = 200, lr: float = 0.5, n: int = 64, d: int = 64,
                             n_keys: int = 8, seed: int = 0) -> SelectorRun:
    """Learn a query map ``W_q`` so that each input attends to its target key; plain SGD.

    Inputs ``X [n, d]`` and keys ``K [n_keys, d]`` are standard normal and fixed;
    the values are one-hot (``V = I``), so the output is the weight row itself;
    each input has a random target key ``t`` and the loss is
    ``sum((A V - onehot(t))^2) / (2 n)``. ``W_q ~ N(0, 1/d)``. The scores are
    ``X W_q K^T``, divided by ``sqrt(d)`` when ``scaled``. The forward pass is the
    reference ``linear`` then ``attention`` (whose own ``1/sqrt(d)`` is undone by
    multiplying the queries by ``sqrt(d)`` when ``scaled`` is false); the gradient
    of ``W_q`` comes from their backward passes.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    K = rng.standard_normal((n_keys, d))
    targets = rng.integers(0, n_keys, n)
    V = Y = np.eye(n_keys)
    Y = Y[targets]
    W = rng.standard_normal((d, d)) / math.sqrt(d)
    c = 1.0 if scaled else math.sqrt(d)

    def weights_and_caches(W):
        Q, query_cache = linear(X, W)
        A, attention_cache = attention(c * Q, K, V)
        return A, query_cache, attention_cache

    losses, saturated = [], None
    for _ in range(steps):
        A, query_cache, attention_cache = weights_and_caches(W)
        saturated = float(np.mean(A.max(axis=1) > SATURATED)) if saturated is None else saturated
        residual = A - Y
        losses.append(0.5 * float(np.sum(residual**2)) / n)
        dQ = attention_backward(residual / n, attention_cache)[0] * c
        W = W - lr * linear_backward(dQ, query_cache)[1]
    A, _, _ = weights_and_caches(W)
    return SelectorRun(np.array(losses), float(np.mean(A.argmax(axis=1) == targets)), saturated)
