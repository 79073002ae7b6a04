"""The transformer's other layers: forward/backward pairs in float64.

Linear map, ReLU, GELU (exact and tanh), LayerNorm, softmax cross-entropy,
token embedding, and the fixed sinusoidal positional encoding. As in
:mod:`derivations.reference.attention`, every ``op(...)`` returns
``(out, cache)`` and ``op_backward(dout, cache)`` returns the gradients of its
inputs in input order; the cache, a named tuple (``cache.x_hat``; it still
unpacks and indexes like a plain tuple), holds exactly what the backward pass needs.

NaN and infinity are never turned into a finite number: each function's
"Notes" say what it returns for them, which is what PyTorch returns unless the
notes say otherwise.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ._checks import as_float64, as_int, as_real, require, unpack_cache

__all__ = [
    "LinearCache",
    "ReluCache",
    "GeluCache",
    "LayerNormCache",
    "CrossEntropyCache",
    "EmbeddingCache",
    "linear",
    "linear_backward",
    "relu",
    "relu_backward",
    "gelu",
    "gelu_backward",
    "gelu_derivative_max_difference",
    "layer_norm",
    "layer_norm_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "embedding",
    "embedding_backward",
    "positional_encoding",
]

# NumPy has no erf. math.erfc is accurate to a few ulp; mapping it entrywise is slow
# for large arrays but exact enough for a reference, and needs no SciPy.
_erfc = np.vectorize(math.erfc, otypes=[np.float64])

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_TANH_CUBIC = 0.044715  # the constant of Hendrycks & Gimpel's tanh approximation


class LinearCache(NamedTuple):
    """What :func:`linear_backward` needs."""

    x: np.ndarray  # the input [..., d_in]
    W: np.ndarray  # the weight [d_in, d_out]
    has_bias: bool  # whether the forward pass added a bias (then db is returned)


class ReluCache(NamedTuple):
    """What :func:`relu_backward` needs."""

    passes: np.ndarray  # bool, same shape as x: True where x > 0 or x is NaN (the gradient passes)


class GeluCache(NamedTuple):
    """What :func:`gelu_backward` needs."""

    x: np.ndarray  # the input
    approximate: str  # "none" or "tanh"


class LayerNormCache(NamedTuple):
    """What :func:`layer_norm_backward` needs."""

    x_hat: np.ndarray  # the normalised input (x - mean) / sigma, [..., D]
    sigma: np.ndarray  # sqrt(var + eps) per row, [..., 1]
    gamma: np.ndarray  # the scale [D]


class CrossEntropyCache(NamedTuple):
    """What :func:`cross_entropy_backward` needs."""

    p: np.ndarray  # softmax probabilities of the logits [N, C]
    targets: np.ndarray  # int [N]


class EmbeddingCache(NamedTuple):
    """What :func:`embedding_backward` needs (the rows of ``E`` are not needed)."""

    tokens: np.ndarray  # int, any shape
    E_shape: tuple  # (vocab, d)


# ----------------------------------------------------------------------------- linear


def linear(x, W, b=None):
    """Affine map ``y = x W + b`` applied to the last axis of ``x``.

    Parameters
    ----------
    x : array_like, shape ``[..., d_in]``
        Any number of leading (batch, position) axes.
    W : array_like, shape ``[d_in, d_out]``
    b : array_like, shape ``[d_out]``, optional
        Omitted means no bias.

    Returns
    -------
    y : ndarray, shape ``[..., d_out]``
    cache : LinearCache
        ``(x, W, has_bias)``, all that :func:`linear_backward` needs.

    Raises
    ------
    ValueError
        If the shapes do not fit together or an input is not real numbers; the
        message names them.

    Notes
    -----
    NaN and infinity follow IEEE arithmetic through the product, as in
    PyTorch: an output entry is NaN if its sum reads a NaN, or an infinity
    times 0, or infinities of both signs.

    Examples
    --------
    >>> y, _ = linear([[1.0, 2.0]], [[1.0, 0.0], [0.0, 1.0]], [10.0, 20.0])
    >>> y.tolist()
    [[11.0, 22.0]]
    """
    x, W = as_float64(x, "x"), as_float64(W, "W")
    require(W.ndim == 2, lambda: f"W {W.shape} must be a matrix [d_in, d_out]")
    require(x.ndim >= 1 and x.shape[-1] == W.shape[0],
            lambda: f"x {x.shape} does not end in d_in = {W.shape[0]} of W {W.shape}")
    if b is not None:
        b = as_float64(b, "b")
        require(b.shape == (W.shape[1],), lambda: f"b {b.shape} must have shape ({W.shape[1]},) to match W {W.shape}")
    with np.errstate(invalid="ignore", over="ignore"):
        y = _last_axis_matmul(x, W)
        if b is not None:
            y += b  # y is the product's own new array: adding in place saves a second one of its size
    return y, LinearCache(x, W, b is not None)


def _last_axis_matmul(x, M):
    """``x @ M`` for ``x`` of shape ``[..., k]`` and a matrix ``M`` ``[k, m]``, as one matrix product.

    With leading axes, ``x @ M`` makes NumPy loop over them, one small product each;
    the rows ``[N, k]`` make a single product, several times faster for a batch of
    sequences. Each output entry is the same dot product (BLAS may add its terms in
    another order, which can change the last bits).
    """
    if x.ndim <= 2:
        return x @ M
    rows = math.prod(x.shape[:-1])  # not -1: that cannot be inferred when k = 0
    return (x.reshape(rows, x.shape[-1]) @ M).reshape(x.shape[:-1] + (M.shape[1],))


def linear_backward(dy, cache):
    """Backward pass of :func:`linear`: ``dx = dy W^T``, ``dW = x^T dy``, ``db = sum(dy)``.

    The weight and bias are shared by every leading position, so their
    gradients sum over all leading axes.

    Parameters
    ----------
    dy : array_like, shape ``[..., d_out]``
    cache : LinearCache
        From :func:`linear`.

    Returns
    -------
    dx : ndarray, shape ``[..., d_in]``
    dW : ndarray, shape ``[d_in, d_out]``
    db : ndarray, shape ``[d_out]``, or None
        None when the forward pass had no bias.

    Examples
    --------
    >>> _, cache = linear([[1.0, 2.0], [3.0, 4.0]], [[1.0], [1.0]], [0.0])
    >>> dx, dW, db = linear_backward([[1.0], [1.0]], cache)
    >>> dx.tolist(), dW.tolist(), db.tolist()
    ([[1.0, 1.0], [1.0, 1.0]], [[4.0], [6.0]], [2.0])
    """
    x, W, has_bias = unpack_cache(cache, LinearCache, "linear")
    dy = as_float64(dy, "dy")
    expected = x.shape[:-1] + (W.shape[1],)
    require(dy.shape == expected, lambda: f"dy {dy.shape} does not match the output shape {expected}")
    rows_x, rows_dy = x.reshape(-1, W.shape[0]), dy.reshape(-1, W.shape[1])
    dx = _last_axis_matmul(dy, W.T)
    dW = rows_x.T @ rows_dy
    db = rows_dy.sum(axis=0) if has_bias else None
    return dx, dW, db


# ----------------------------------------------------------------------------- activations


def relu(x):
    """Rectified linear unit ``max(x, 0)``, entrywise.

    Parameters
    ----------
    x : array_like, any shape

    Returns
    -------
    y : ndarray, same shape as ``x``
    cache : ReluCache
        ``(passes,)``, True where ``x > 0`` or ``x`` is NaN: the only thing the
        derivative depends on.

    Notes
    -----
    NaN in, NaN out, and the backward pass lets the gradient through at a
    NaN input, both as ``torch.relu`` does (PyTorch zeroes the gradient only
    where ``x <= 0``, which is false for NaN). ``+inf`` gives ``+inf``, ``-inf`` 0.

    Examples
    --------
    >>> y, _ = relu([-1.0, 2.0, float("nan")])
    >>> y.tolist()
    [0.0, 2.0, nan]
    """
    x = as_float64(x, "x")
    passes = ~(x <= 0)
    # max(x, 0) propagates NaN and maps -inf to 0; + 0.0 turns the -0.0 that max(-0.0, 0.0) keeps
    # into 0.0. The same values as np.where(passes, x, 0.0), several times faster: that select
    # branches on every entry of a random mask.
    return np.maximum(x, 0.0) + 0.0, ReluCache(passes)


def relu_backward(dy, cache):
    """Backward pass of :func:`relu`: ``dx = dy`` where ``x > 0``, else 0.

    At ``x = 0`` the derivative is taken as 0, as PyTorch does; at a NaN ``x``
    the gradient passes unchanged (also as PyTorch does).

    Parameters
    ----------
    dy : array_like, same shape as ``x``
    cache : ReluCache
        From :func:`relu`.

    Returns
    -------
    dx : ndarray, same shape as ``x``

    Examples
    --------
    >>> _, cache = relu([-1.0, 0.0, 2.0])
    >>> relu_backward([5.0, 5.0, 5.0], cache).tolist()
    [0.0, 0.0, 5.0]
    """
    (passes,) = unpack_cache(cache, ReluCache, "relu")
    dy = as_float64(dy, "dy")
    require(dy.shape == passes.shape, lambda: f"dy {dy.shape} does not match x {passes.shape}")
    if not np.isfinite(dy).all():  # inf * 0 would be NaN where the gradient is blocked: select instead
        return np.where(passes, dy, 0.0)
    # Finite dy: multiplying by the mask is the select without its branches; + 0.0 makes the
    # blocked entries 0.0 whatever dy's sign (a passed -0.0 becomes 0.0, which compares equal).
    return dy * passes + 0.0


def _normal_cdf(x):
    # erfc(-x/sqrt2)/2 rather than (1 + erf(x/sqrt2))/2: no cancellation for x << 0.
    return 0.5 * _erfc(-x / math.sqrt(2.0))


def _normal_pdf(x):
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)  # x * x = inf far out: exp(-inf) = 0 is right


def _sigmoid(z):
    """Logistic function without overflow: only ever exponentiates a non-positive number."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _gelu_tanh_parts(x):
    """``u`` and ``(1 + tanh u) / 2 = sigmoid(2u)`` of the tanh approximation.

    The sigmoid form keeps full relative accuracy where ``tanh u`` is close to
    -1 (large negative ``x``), where ``1 + tanh(u)`` would cancel.
    """
    with np.errstate(over="ignore"):  # x^3 overflows beyond 1e102: u = +-inf is right
        u = _SQRT_2_OVER_PI * (x + _TANH_CUBIC * x**3)
    return u, _sigmoid(2.0 * u)


_APPROXIMATIONS = ("none", "tanh")


def gelu(x, approximate="none"):
    """Gaussian error linear unit ``x Phi(x)``, entrywise.

    Parameters
    ----------
    x : array_like, any shape
    approximate : {"none", "tanh"}
        ``"none"``: exact, ``Phi`` the standard normal CDF (via the error function).
        ``"tanh"``: ``x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``, PyTorch's
        ``approximate="tanh"``.

    Returns
    -------
    y : ndarray, same shape as ``x``
    cache : GeluCache
        ``(x, approximate)``.

    Raises
    ------
    ValueError
        If ``approximate`` is not one of the two strings.

    Notes
    -----
    As ``torch.nn.functional.gelu``: NaN gives NaN, ``+inf`` gives ``+inf`` and
    ``-inf`` gives NaN (``-inf * Phi(-inf) = -inf * 0``). Every finite input,
    however large, gives a finite value.

    Examples
    --------
    >>> y, _ = gelu([0.0, 40.0, -40.0])
    >>> y.tolist()
    [0.0, 40.0, -0.0]
    """
    require(isinstance(approximate, str) and approximate in _APPROXIMATIONS,
            f"approximate must be 'none' or 'tanh', got {approximate!r}")
    x = as_float64(x, "x")
    with np.errstate(invalid="ignore"):  # -inf * 0 is NaN, as documented
        if approximate == "none":
            y = x * _normal_cdf(x)
        else:
            y = x * _gelu_tanh_parts(x)[1]
    return y, GeluCache(x, approximate)


def _gelu_derivative(x, approximate):
    with np.errstate(over="ignore", invalid="ignore"):
        if approximate == "none":
            slope = _normal_cdf(x) + x * _normal_pdf(x)
        else:
            u, half_one_plus_tanh = _gelu_tanh_parts(x)
            # sech^2 u = 4 sigmoid(2u) sigmoid(-2u): accurate on both tails, unlike 1 - tanh^2 u.
            sech2 = 4.0 * half_one_plus_tanh * _sigmoid(-2.0 * u)
            du_dx = _SQRT_2_OVER_PI * (1.0 + 3.0 * _TANH_CUBIC * x * x)
            # Far out sech^2 u is exactly 0 while x^2 has overflowed: the term is 0, not 0 * inf.
            slope = half_one_plus_tanh + np.where(sech2 == 0.0, 0.0, 0.5 * x * sech2 * du_dx)
    return np.where(np.isinf(x), np.nan, slope)


def gelu_backward(dy, cache):
    """Backward pass of :func:`gelu`: ``dx = dy * GELU'(x)``.

    Exact: ``GELU'(x) = Phi(x) + x phi(x)`` with ``phi`` the standard normal
    density. Tanh: ``(1 + tanh u)/2 + (x/2) sech^2(u) du/dx`` with
    ``du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)``.

    Parameters
    ----------
    dy : array_like, same shape as ``x``
    cache : GeluCache
        From :func:`gelu`.

    Notes
    -----
    NaN where ``x`` is NaN or infinite (PyTorch gives NaN there too). For
    finite ``x`` the derivative is finite in both modes, also where ``x^2``
    overflows (PyTorch's tanh mode gives NaN there; the limit is 1 or 0).

    Returns
    -------
    dx : ndarray, same shape as ``x``

    Examples
    --------
    >>> _, cache = gelu([0.0])
    >>> gelu_backward([1.0], cache).tolist()  # Phi(0) = 1/2
    [0.5]
    """
    x, approximate = unpack_cache(cache, GeluCache, "gelu")
    dy = as_float64(dy, "dy")
    require(dy.shape == x.shape, f"dy {dy.shape} does not match x {x.shape}")
    require(isinstance(approximate, str) and approximate in _APPROXIMATIONS,
            f"cache.approximate must be 'none' or 'tanh', got {approximate!r}")
    return dy * _gelu_derivative(x, approximate)


def gelu_derivative_max_difference(x_max: float = 10.0, step: float = 1e-3):
    """Largest ``|GELU'(x) - GELU_tanh'(x)|`` over the real line, and where it occurs.

    ``GELU'(x) + GELU'(-x) = 1`` for both forms (claim ``gelu.derivative-symmetry``),
    so the difference is odd and its absolute value is even: it suffices to search
    ``x >= 0``. Beyond ``x_max`` both derivatives equal 1 to float64 precision.
    A grid with spacing ``step`` locates the peak; golden-section search on the
    bracketing interval then refines it.

    Parameters
    ----------
    x_max : float
        Right end of the searched interval ``[0, x_max]``, positive.
    step : float
        Spacing of the coarse grid, positive and at most ``x_max``.

    Returns
    -------
    x_at_max : float
        The non-negative location of the peak (``-x_at_max`` is the other one).
    value : float
        ``|GELU'(x_at_max) - GELU_tanh'(x_at_max)|``.

    Examples
    --------
    >>> x, value = gelu_derivative_max_difference()
    >>> exact = gelu_backward([1.0], gelu([x])[1])[0]
    >>> approx = gelu_backward([1.0], gelu([x], approximate="tanh")[1])[0]
    >>> bool(value == abs(exact - approx)) and x > 0
    True
    """
    x_max = as_real(x_max, "x_max", low=0.0, low_open=True)
    step = as_real(step, "step", low=0.0, low_open=True, high=x_max)

    def gap(x):
        x = np.asarray(x, dtype=np.float64)
        return np.abs(_gelu_derivative(x, "none") - _gelu_derivative(x, "tanh"))

    grid = np.arange(0.0, x_max + step, step)
    k = int(np.argmax(gap(grid)))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    inv_phi = (math.sqrt(5.0) - 1.0) / 2.0
    while hi - lo > 1e-12:
        left, right = hi - inv_phi * (hi - lo), lo + inv_phi * (hi - lo)
        if gap(left) >= gap(right):
            hi = right
        else:
            lo = left
    x_at_max = 0.5 * (lo + hi)
    return float(x_at_max), float(gap(x_at_max))


# ----------------------------------------------------------------------------- layer norm


def layer_norm(x, gamma, beta, eps=1e-5):
    """Layer normalisation over the last axis, ``y = gamma * (x - mean) / sigma + beta``.

    ``sigma = sqrt(var + eps)`` with the biased variance (divide by ``D``), as in
    PyTorch's ``layer_norm``.

    Parameters
    ----------
    x : array_like, shape ``[..., D]``
    gamma : array_like, shape ``[D]``
        Scale.
    beta : array_like, shape ``[D]``
        Shift.
    eps : float
        Added to the variance; positive and finite, so that a constant row is
        defined. The default, ``1e-5``, is PyTorch's.

    Returns
    -------
    y : ndarray, shape ``[..., D]``
    cache : LayerNormCache
        ``(x_hat, sigma, gamma)`` with ``x_hat`` the normalised input ``[..., D]``
        and ``sigma`` ``[..., 1]``.

    Raises
    ------
    ValueError
        If ``gamma`` or ``beta`` does not have shape ``[D]``, or ``eps`` is not a
        positive finite number.

    Notes
    -----
    A row holding NaN or an infinity gives a NaN row (``inf - inf``), as in
    PyTorch; NaN in ``gamma`` or ``beta`` gives NaN in that column. Finite rows
    so large that their variance overflows (entries beyond about 1e154) are
    normalised after dividing by their largest magnitude, so they still give
    ``x_hat`` of unit variance: PyTorch returns ``beta`` there, as if the row
    were constant.

    Examples
    --------
    >>> y, _ = layer_norm([1.0, 3.0], [1.0, 1.0], [0.0, 0.0], eps=1e-12)
    >>> y.round(9).tolist()
    [-1.0, 1.0]
    """
    x, gamma, beta = as_float64(x, "x"), as_float64(gamma, "gamma"), as_float64(beta, "beta")
    require(x.ndim >= 1 and x.shape[-1] >= 1, lambda: f"x {x.shape} needs a non-empty last axis")
    D = x.shape[-1]
    require(gamma.shape == (D,), lambda: f"gamma {gamma.shape} must have shape ({D},) to match x {x.shape}")
    require(beta.shape == (D,), lambda: f"beta {beta.shape} must have shape ({D},) to match x {x.shape}")
    eps = as_real(eps, "eps", low=0.0, low_open=True)
    with np.errstate(over="ignore", invalid="ignore"):
        centred = x - x.mean(axis=-1, keepdims=True)
        sigma = np.sqrt(np.mean(centred**2, axis=-1, keepdims=True) + eps)
        x_hat = centred / sigma
        # Only a row whose sigma is not finite can have overflowed: look at x only then.
        overflowed = ~np.isfinite(sigma)
        if np.any(overflowed):
            overflowed &= np.all(np.isfinite(x), axis=-1, keepdims=True)
        if np.any(overflowed):
            # Divide each row by its largest magnitude s: sigma = s sqrt(var(x/s) + eps/s^2).
            s = np.max(np.abs(x), axis=-1, keepdims=True)
            scaled = x / s
            scaled_centred = scaled - scaled.mean(axis=-1, keepdims=True)
            root = np.sqrt(np.mean(scaled_centred**2, axis=-1, keepdims=True) + eps / s**2)
            x_hat = np.where(overflowed, scaled_centred / root, x_hat)
            sigma = np.where(overflowed, s * root, sigma)
        y = gamma * x_hat + beta
    return y, LayerNormCache(x_hat, sigma, gamma)


def layer_norm_backward(dy, cache):
    """Backward pass of :func:`layer_norm`.

    With ``g = dy * gamma``, means over the last axis:
    ``dx = (g - mean(g) - x_hat * mean(g * x_hat)) / sigma``; the scale and shift
    are shared by every leading position, so ``dgamma = sum(dy * x_hat)`` and
    ``dbeta = sum(dy)`` over all leading axes.

    Parameters
    ----------
    dy : array_like, shape ``[..., D]``
    cache : LayerNormCache
        From :func:`layer_norm`.

    Returns
    -------
    dx : ndarray, shape ``[..., D]``
    dgamma : ndarray, shape ``[D]``
    dbeta : ndarray, shape ``[D]``

    Examples
    --------
    >>> _, cache = layer_norm([1.0, 3.0], [1.0, 1.0], [0.0, 0.0], eps=1e-12)
    >>> dx, dgamma, dbeta = layer_norm_backward([1.0, 1.0], cache)
    >>> dx.tolist(), dgamma.round(9).tolist(), dbeta.tolist()  # a uniform shift changes nothing
    ([0.0, 0.0], [-1.0, 1.0], [1.0, 1.0])
    """
    x_hat, sigma, gamma = unpack_cache(cache, LayerNormCache, "layer_norm")
    dy = as_float64(dy, "dy")
    require(dy.shape == x_hat.shape, lambda: f"dy {dy.shape} does not match x {x_hat.shape}")
    g = dy * gamma
    dx = (g - g.mean(axis=-1, keepdims=True) - x_hat * np.mean(g * x_hat, axis=-1, keepdims=True)) / sigma
    D = x_hat.shape[-1]
    dgamma = (dy * x_hat).reshape(-1, D).sum(axis=0)
    dbeta = dy.reshape(-1, D).sum(axis=0)
    return dx, dgamma, dbeta


# ----------------------------------------------------------------------------- loss


def _as_indices(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.size == 0:  # np.asarray([]) is float64; an empty index array is still valid
        return array.astype(np.intp)
    require(
        np.issubdtype(array.dtype, np.integer),
        f"{name} must be an integer array, got dtype {array.dtype} with shape {array.shape}",
    )
    return array


def cross_entropy(logits, targets):
    """Mean softmax cross-entropy ``L = -(1/N) sum_i log softmax(z_i)[y_i]``.

    Computed as ``log-sum-exp(z_i) - z_i[y_i]`` with the row maximum subtracted,
    so any finite logits (``+-1000`` included) give a finite loss.

    Parameters
    ----------
    logits : array_like, shape ``[N, C]``
    targets : array_like of int, shape ``[N]``
        Class indices in ``[0, C)``.

    Returns
    -------
    loss : float
    cache : CrossEntropyCache
        ``(p, targets)`` with ``p`` the softmax probabilities ``[N, C]``.

    Raises
    ------
    ValueError
        If the shapes do not fit, ``targets`` is not integer, or a target lies
        outside ``[0, C)``.

    Notes
    -----
    As ``torch.nn.functional.cross_entropy``: a NaN or ``+inf`` logit makes
    its row's probabilities and the loss NaN; a ``-inf`` logit is a
    probability of exactly 0, so the loss is ``+inf`` if it is the target's
    and unaffected otherwise (a row of nothing but ``-inf`` is NaN).

    Examples
    --------
    >>> loss, _ = cross_entropy([[0.0, 0.0]], [1])
    >>> round(loss, 6)  # log 2
    0.693147
    """
    logits = as_float64(logits, "logits")
    targets = _as_indices(targets, "targets")
    require(logits.ndim == 2 and logits.shape[0] >= 1 and logits.shape[1] >= 1,
            f"logits {logits.shape} must be [N, C] with N, C >= 1")
    N, C = logits.shape
    require(targets.shape == (N,), f"targets {targets.shape} must have shape ({N},) to match logits {logits.shape}")
    require(bool(np.all((targets >= 0) & (targets < C))),
            f"targets must lie in [0, {C}) for logits {logits.shape}; got min {targets.min()}, max {targets.max()}")
    with np.errstate(invalid="ignore"):  # inf - inf where a row holds +inf or only -inf: NaN, as documented
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
        loss = -float(np.mean(log_p[np.arange(N), targets]))
    return loss, CrossEntropyCache(np.exp(log_p), targets)


def cross_entropy_backward(dloss, cache):
    """Backward pass of :func:`cross_entropy`: ``dlogits = dloss * (p - onehot(y)) / N``.

    Parameters
    ----------
    dloss : float
        Gradient of the final objective with respect to the loss (1 if the loss
        is the objective). NaN or infinity propagates into every entry.
    cache : CrossEntropyCache
        From :func:`cross_entropy`.

    Returns
    -------
    dlogits : ndarray, shape ``[N, C]``

    Examples
    --------
    >>> _, cache = cross_entropy([[0.0, 0.0]], [1])
    >>> cross_entropy_backward(1.0, cache).tolist()
    [[0.5, -0.5]]
    """
    p, targets = unpack_cache(cache, CrossEntropyCache, "cross_entropy")
    dloss = as_float64(dloss, "dloss")
    require(dloss.shape == (), f"dloss {dloss.shape} must be a scalar (the loss is one number)")
    N = p.shape[0]
    dlogits = p.copy()
    dlogits[np.arange(N), targets] -= 1.0
    return dloss * dlogits / N


# ----------------------------------------------------------------------------- embeddings


def embedding(tokens, E):
    """Token embedding lookup ``out[t] = E[tokens[t]]``.

    Parameters
    ----------
    tokens : array_like of int, any shape ``[...]``
        Indices in ``[0, vocab)``.
    E : array_like, shape ``[vocab, d]``

    Returns
    -------
    out : ndarray, shape ``[..., d]``
    cache : EmbeddingCache
        ``(tokens, E_shape)``; the rows of ``E`` are not needed backward.

    Raises
    ------
    ValueError
        If ``E`` is not a matrix, ``tokens`` is not integer, or a token lies
        outside ``[0, vocab)``.

    Notes
    -----
    A row of ``E`` is copied as it is: NaN or infinity in it reaches exactly
    the positions whose token reads that row.

    Examples
    --------
    >>> out, _ = embedding([1, 1, 0], [[1.0, 2.0], [3.0, 4.0]])
    >>> out.tolist()
    [[3.0, 4.0], [3.0, 4.0], [1.0, 2.0]]
    """
    E = as_float64(E, "E")
    tokens = _as_indices(tokens, "tokens")
    require(E.ndim == 2, f"E {E.shape} must be a matrix [vocab, d]")
    vocab = E.shape[0]
    if not np.all((tokens >= 0) & (tokens < vocab)):  # then tokens is not empty: min and max exist
        raise ValueError(f"tokens {tokens.shape} must lie in [0, {vocab}) for E {E.shape}; "
                         f"got min {tokens.min()}, max {tokens.max()}")
    return E[tokens], EmbeddingCache(tokens, E.shape)


def embedding_backward(dout, cache):
    """Backward pass of :func:`embedding`: scatter-add ``dE[v] = sum of dout[t] over tokens[t] == v``.

    ``np.add.at`` is unbuffered, so a token that occurs several times receives
    the sum of its rows (``dE[tokens] += dout`` would keep only one of them).

    Parameters
    ----------
    dout : array_like, shape ``[..., d]``
    cache : EmbeddingCache
        From :func:`embedding`.

    Returns
    -------
    dE : ndarray, shape ``[vocab, d]``
        Zero in the rows of tokens that do not occur.

    Examples
    --------
    >>> _, cache = embedding([1, 1, 0], [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    >>> embedding_backward([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]], cache).tolist()
    [[1.0, 1.0], [2.0, 2.0], [0.0, 0.0]]
    """
    tokens, E_shape = unpack_cache(cache, EmbeddingCache, "embedding")
    dout = as_float64(dout, "dout")
    expected = tokens.shape + (E_shape[1],)
    require(dout.shape == expected, f"dout {dout.shape} does not match the output shape {expected}")
    dE = np.zeros(E_shape)
    np.add.at(dE, tokens, dout)
    return dE


def positional_encoding(seq_len, d_model):
    """Fixed sinusoidal positional encoding of "Attention Is All You Need".

    ``PE[pos, 2i] = sin(pos / 10000^(2i/d_model))`` and
    ``PE[pos, 2i+1] = cos(pos / 10000^(2i/d_model))``; an odd ``d_model`` ends
    with a sine column. It has no parameters, so no backward pass.

    Parameters
    ----------
    seq_len : int
        Number of positions, ``>= 0``.
    d_model : int
        Number of features, ``>= 1``.

    Returns
    -------
    PE : ndarray, shape ``[seq_len, d_model]``

    Raises
    ------
    ValueError
        If a size is not an integer or is out of range.

    Examples
    --------
    >>> positional_encoding(2, 3).round(4).tolist()  # sin 1 = 0.8415, cos 1 = 0.5403
    [[0.0, 1.0, 0.0], [0.8415, 0.5403, 0.0022]]
    """
    seq_len, d_model = as_int(seq_len, "seq_len", minimum=0), as_int(d_model, "d_model", minimum=1)
    columns = np.arange(d_model)
    even_index = columns - columns % 2  # the "2i" shared by a sine column and the cosine after it
    angles = np.arange(seq_len)[:, None] / np.power(10000.0, even_index / d_model)
    return np.where(columns % 2 == 0, np.sin(angles), np.cos(angles))
