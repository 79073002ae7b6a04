"""The transformer's other layers: forward/backward pairs in float64.

Linear map, ReLU, GELU (exact and tanh), LayerNorm, softmax cross-entropy,
token embedding, and the fixed sinusoidal positional encoding. As in
:mod:`derivations.reference.attention`, every ``op(...)`` returns
``(out, cache)`` and ``op_backward(dout, cache)`` returns the gradients of its
inputs in input order; the cache holds exactly what the backward pass needs.
"""

from __future__ import annotations

import math
import operator

import numpy as np

from ._checks import as_float64, require

__all__ = [
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
    cache : tuple
        ``(x, W, has_bias)``, all that :func:`linear_backward` needs.

    Raises
    ------
    ValueError
        If the shapes do not fit together; the message names them.

    Examples
    --------
    >>> y, _ = linear([[1.0, 2.0]], [[1.0, 0.0], [0.0, 1.0]], [10.0, 20.0])
    >>> y.tolist()
    [[11.0, 22.0]]
    """
    x, W = as_float64(x, "x"), as_float64(W, "W")
    require(W.ndim == 2, f"W {W.shape} must be a matrix [d_in, d_out]")
    require(x.ndim >= 1 and x.shape[-1] == W.shape[0],
            f"x {x.shape} does not end in d_in = {W.shape[0]} of W {W.shape}")
    y = x @ W
    if b is not None:
        b = as_float64(b, "b")
        require(b.shape == (W.shape[1],), f"b {b.shape} must have shape ({W.shape[1]},) to match W {W.shape}")
        y = y + b
    return y, (x, W, b is not None)


def linear_backward(dy, cache):
    """Backward pass of :func:`linear`: ``dx = dy W^T``, ``dW = x^T dy``, ``db = sum(dy)``.

    The weight and bias are shared by every leading position, so their
    gradients sum over all leading axes.

    Parameters
    ----------
    dy : array_like, shape ``[..., d_out]``
    cache : tuple
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
    x, W, has_bias = cache
    dy = as_float64(dy, "dy")
    expected = x.shape[:-1] + (W.shape[1],)
    require(dy.shape == expected, f"dy {dy.shape} does not match the output shape {expected}")
    dx = dy @ W.T
    rows_x, rows_dy = x.reshape(-1, W.shape[0]), dy.reshape(-1, W.shape[1])
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
    cache : tuple
        ``(x > 0,)``: the only thing the derivative depends on.

    Examples
    --------
    >>> y, _ = relu([-1.0, 2.0])
    >>> y.tolist()
    [0.0, 2.0]
    """
    x = as_float64(x, "x")
    positive = x > 0
    return np.where(positive, x, 0.0), (positive,)


def relu_backward(dy, cache):
    """Backward pass of :func:`relu`: ``dx = dy`` where ``x > 0``, else 0.

    At ``x = 0`` the derivative is taken as 0, as PyTorch does.

    Parameters
    ----------
    dy : array_like, same shape as ``x``
    cache : tuple
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
    (positive,) = cache
    dy = as_float64(dy, "dy")
    require(dy.shape == positive.shape, f"dy {dy.shape} does not match x {positive.shape}")
    return np.where(positive, dy, 0.0)


def _normal_cdf(x):
    # erfc(-x/sqrt2)/2 rather than (1 + erf(x/sqrt2))/2: no cancellation for x << 0.
    return 0.5 * _erfc(-x / math.sqrt(2.0))


def _normal_pdf(x):
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _sigmoid(z):
    """Logistic function without overflow: only ever exponentiates a non-positive number."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _gelu_tanh_parts(x):
    """``u`` and ``(1 + tanh u) / 2 = sigmoid(2u)`` of the tanh approximation.

    The sigmoid form keeps full relative accuracy where ``tanh u`` is close to
    -1 (large negative ``x``), where ``1 + tanh(u)`` would cancel.
    """
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
    cache : tuple
        ``(x, approximate)``.

    Raises
    ------
    ValueError
        If ``approximate`` is not one of the two modes.

    Examples
    --------
    >>> y, _ = gelu([0.0, 40.0, -40.0])
    >>> y.tolist()
    [0.0, 40.0, -0.0]
    """
    require(approximate in _APPROXIMATIONS, f"approximate must be 'none' or 'tanh', got {approximate!r}")
    x = as_float64(x, "x")
    if approximate == "none":
        y = x * _normal_cdf(x)
    else:
        y = x * _gelu_tanh_parts(x)[1]
    return y, (x, approximate)


def _gelu_derivative(x, approximate):
    if approximate == "none":
        return _normal_cdf(x) + x * _normal_pdf(x)
    u, half_one_plus_tanh = _gelu_tanh_parts(x)
    # sech^2 u = 4 sigmoid(2u) sigmoid(-2u): accurate on both tails, unlike 1 - tanh^2 u.
    sech2 = 4.0 * half_one_plus_tanh * _sigmoid(-2.0 * u)
    du_dx = _SQRT_2_OVER_PI * (1.0 + 3.0 * _TANH_CUBIC * x * x)
    return half_one_plus_tanh + 0.5 * x * sech2 * du_dx


def gelu_backward(dy, cache):
    """Backward pass of :func:`gelu`: ``dx = dy * GELU'(x)``.

    Exact: ``GELU'(x) = Phi(x) + x phi(x)`` with ``phi`` the standard normal
    density. Tanh: ``(1 + tanh u)/2 + (x/2) sech^2(u) du/dx`` with
    ``du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)``.

    Parameters
    ----------
    dy : array_like, same shape as ``x``
    cache : tuple
        From :func:`gelu`.

    Returns
    -------
    dx : ndarray, same shape as ``x``

    Examples
    --------
    >>> _, cache = gelu([0.0])
    >>> gelu_backward([1.0], cache).tolist()  # Phi(0) = 1/2
    [0.5]
    """
    x, approximate = cache
    dy = as_float64(dy, "dy")
    require(dy.shape == x.shape, f"dy {dy.shape} does not match x {x.shape}")
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
        Right end of the searched interval ``[0, x_max]``.
    step : float
        Spacing of the coarse grid.

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
        Added to the variance; must be positive for a constant row to be defined.

    Returns
    -------
    y : ndarray, shape ``[..., D]``
    cache : tuple
        ``(x_hat, sigma, gamma)`` with ``x_hat`` the normalised input ``[..., D]``
        and ``sigma`` ``[..., 1]``.

    Raises
    ------
    ValueError
        If ``gamma`` or ``beta`` does not have shape ``[D]``.

    Examples
    --------
    >>> y, _ = layer_norm([1.0, 3.0], [1.0, 1.0], [0.0, 0.0], eps=0.0)
    >>> y.tolist()
    [-1.0, 1.0]
    """
    x, gamma, beta = as_float64(x, "x"), as_float64(gamma, "gamma"), as_float64(beta, "beta")
    require(x.ndim >= 1 and x.shape[-1] >= 1, f"x {x.shape} needs a non-empty last axis")
    D = x.shape[-1]
    require(gamma.shape == (D,), f"gamma {gamma.shape} must have shape ({D},) to match x {x.shape}")
    require(beta.shape == (D,), f"beta {beta.shape} must have shape ({D},) to match x {x.shape}")
    centred = x - x.mean(axis=-1, keepdims=True)
    sigma = np.sqrt(np.mean(centred**2, axis=-1, keepdims=True) + eps)
    x_hat = centred / sigma
    return gamma * x_hat + beta, (x_hat, sigma, gamma)


def layer_norm_backward(dy, cache):
    """Backward pass of :func:`layer_norm`.

    With ``g = dy * gamma``, means over the last axis:
    ``dx = (g - mean(g) - x_hat * mean(g * x_hat)) / sigma``; the scale and shift
    are shared by every leading position, so ``dgamma = sum(dy * x_hat)`` and
    ``dbeta = sum(dy)`` over all leading axes.

    Parameters
    ----------
    dy : array_like, shape ``[..., D]``
    cache : tuple
        From :func:`layer_norm`.

    Returns
    -------
    dx : ndarray, shape ``[..., D]``
    dgamma : ndarray, shape ``[D]``
    dbeta : ndarray, shape ``[D]``

    Examples
    --------
    >>> _, cache = layer_norm([1.0, 3.0], [1.0, 1.0], [0.0, 0.0], eps=0.0)
    >>> dx, dgamma, dbeta = layer_norm_backward([1.0, 1.0], cache)
    >>> dx.tolist(), dgamma.tolist(), dbeta.tolist()  # a uniform shift changes nothing
    ([0.0, 0.0], [-1.0, 1.0], [1.0, 1.0])
    """
    x_hat, sigma, gamma = cache
    dy = as_float64(dy, "dy")
    require(dy.shape == x_hat.shape, f"dy {dy.shape} does not match x {x_hat.shape}")
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
    cache : tuple
        ``(p, targets)`` with ``p`` the softmax probabilities ``[N, C]``.

    Raises
    ------
    ValueError
        If the shapes do not fit, ``targets`` is not integer, or a target lies
        outside ``[0, C)``.

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
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    loss = -float(np.mean(log_p[np.arange(N), targets]))
    return loss, (np.exp(log_p), targets)


def cross_entropy_backward(dloss, cache):
    """Backward pass of :func:`cross_entropy`: ``dlogits = dloss * (p - onehot(y)) / N``.

    Parameters
    ----------
    dloss : float
        Gradient of the final objective with respect to the loss (1 if the loss
        is the objective).
    cache : tuple
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
    p, targets = cache
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
    cache : tuple
        ``(tokens, vocab)``; the rows of ``E`` are not needed backward.

    Raises
    ------
    ValueError
        If ``E`` is not a matrix, ``tokens`` is not integer, or a token lies
        outside ``[0, vocab)``.

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
    require(bool(np.all((tokens >= 0) & (tokens < vocab))),
            f"tokens {tokens.shape} must lie in [0, {vocab}) for E {E.shape}; "
            f"got min {tokens.min(initial=0)}, max {tokens.max(initial=0)}")
    return E[tokens], (tokens, E.shape)


def embedding_backward(dout, cache):
    """Backward pass of :func:`embedding`: scatter-add ``dE[v] = sum of dout[t] over tokens[t] == v``.

    ``np.add.at`` is unbuffered, so a token that occurs several times receives
    the sum of its rows (``dE[tokens] += dout`` would keep only one of them).

    Parameters
    ----------
    dout : array_like, shape ``[..., d]``
    cache : tuple
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
    tokens, E_shape = cache
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
    try:
        seq_len, d_model = operator.index(seq_len), operator.index(d_model)
    except TypeError:
        raise ValueError(f"seq_len {seq_len!r} and d_model {d_model!r} must be integers") from None
    require(seq_len >= 0 and d_model >= 1, f"need seq_len >= 0 and d_model >= 1, got {seq_len}, {d_model}")
    columns = np.arange(d_model)
    even_index = columns - columns % 2  # the "2i" shared by a sine column and the cosine after it
    angles = np.arange(seq_len)[:, None] / np.power(10000.0, even_index / d_model)
    return np.where(columns % 2 == 0, np.sin(angles), np.cos(angles))
