"""A long short-term memory (LSTM) cell and its backward pass, float64.

One step reads the input ``x``, the previous hidden state ``h`` and the previous
cell state ``c``, in the row-vector convention of :func:`~derivations.reference.linear`::

    z = [x, h] W + b                                  four blocks of d_h columns: i, f, g, o
    i = sigmoid(z_i)   f = sigmoid(z_f)   g = tanh(z_g)   o = sigmoid(z_o)
    c' = f * c + i * g                                the cell state: a sum, gated elementwise
    h' = o * tanh(c')

The gate order ``i, f, g, o`` is PyTorch's (``torch.nn.LSTM``), and ``W`` stacks
the input and recurrent maps: ``W = [W_ih^T; W_hh^T]``, ``[d_in + d_h, 4 d_h]``.

The cell state is what makes the LSTM's graph different from a plain RNN's:
backward, ``dc = dc' * f`` carries the gradient from one step to the previous
one through an elementwise product, with no weight matrix and no squashing
derivative on that path.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._checks import as_float64, require

__all__ = ["LSTMCellCache", "lstm_cell", "lstm_cell_backward", "lstm_forward", "lstm_backward"]


class LSTMCellCache(NamedTuple):
    """All that :func:`lstm_cell_backward` needs, by name (``[..., d]`` arrays unless said)."""

    x: np.ndarray  #: the input ``[..., d_in]``
    h: np.ndarray  #: the previous hidden state ``[..., d_h]``
    c: np.ndarray  #: the previous cell state ``[..., d_h]``
    W: np.ndarray  #: the stacked weights ``[d_in + d_h, 4 d_h]``
    i: np.ndarray  #: input gate
    f: np.ndarray  #: forget gate
    g: np.ndarray  #: candidate cell values
    o: np.ndarray  #: output gate
    tanh_c: np.ndarray  #: ``tanh(c')``


def _sigmoid(z):
    """Logistic function without overflow: only ever exponentiates a non-positive number."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _check_weights(W, b, d_h=None):
    W, b = as_float64(W, "W"), as_float64(b, "b")
    require(W.ndim == 2 and W.shape[1] % 4 == 0 and W.shape[1] > 0,
            f"W {W.shape} must be a matrix [d_in + d_h, 4 d_h]")
    d_h = W.shape[1] // 4
    require(W.shape[0] > d_h, f"W {W.shape} must have d_in + d_h > d_h = {d_h} rows")
    require(b.shape == (4 * d_h,), f"b {b.shape} must have shape ({4 * d_h},) to match W {W.shape}")
    return W, b, W.shape[0] - d_h, d_h


def lstm_cell(x, h, c, W, b):
    """One LSTM step: ``(h', c')`` from the input and the previous states.

    Parameters
    ----------
    x : array_like, shape ``[..., d_in]``
        Any number of leading (batch) axes.
    h, c : array_like, shape ``[..., d_h]``
        Previous hidden and cell states, with the same leading axes as ``x``.
    W : array_like, shape ``[d_in + d_h, 4 d_h]``
        Rows ``0 .. d_in - 1`` act on ``x``, the rest on ``h``; columns are the
        gate blocks ``i, f, g, o``.
    b : array_like, shape ``[4 d_h]``

    Returns
    -------
    (h_new, c_new) : pair of ndarray, shape ``[..., d_h]``
    cache : LSTMCellCache

    Raises
    ------
    ValueError
        If the shapes do not fit together; the message names them.

    Examples
    --------
    With zero weights every gate is ``sigmoid(0) = 1/2`` and ``g = 0``, so the
    cell state halves and ``h' = tanh(c') / 2``:

    >>> (h1, c1), _ = lstm_cell([[1.0]], [[0.0]], [[2.0]], np.zeros((2, 4)), np.zeros(4))
    >>> c1.tolist(), h1.round(6).tolist()
    ([[1.0]], [[0.380797]])
    """
    W, b, d_in, d_h = _check_weights(W, b)
    x, h, c = as_float64(x, "x"), as_float64(h, "h"), as_float64(c, "c")
    require(x.ndim >= 1 and x.shape[-1] == d_in, f"x {x.shape} must end in d_in = {d_in} of W {W.shape}")
    expected = x.shape[:-1] + (d_h,)
    require(h.shape == expected, f"h {h.shape} must be {expected}: the leading axes of x {x.shape}, then d_h")
    require(c.shape == expected, f"c {c.shape} must be {expected}: the leading axes of x {x.shape}, then d_h")
    z = x @ W[:d_in] + h @ W[d_in:] + b
    i, f, o = _sigmoid(z[..., :d_h]), _sigmoid(z[..., d_h:2 * d_h]), _sigmoid(z[..., 3 * d_h:])
    g = np.tanh(z[..., 2 * d_h:3 * d_h])
    c_new = f * c + i * g
    tanh_c = np.tanh(c_new)
    return (o * tanh_c, c_new), LSTMCellCache(x, h, c, W, i, f, g, o, tanh_c)


def lstm_cell_backward(dh_new, dc_new, cache):
    """Backward pass of :func:`lstm_cell`.

    With ``dC = dc' + dh' * o * (1 - tanh(c')^2)``, the total gradient reaching the
    new cell state: ``dc = dC * f`` (the cell-state path), and through the gates
    ``dz_i = dC g i (1 - i)``, ``dz_f = dC c f (1 - f)``, ``dz_g = dC i (1 - g^2)``,
    ``dz_o = dh' tanh(c') o (1 - o)``; then ``[dx, dh] = dz W^T``, ``dW = [x, h]^T dz``
    and ``db = sum(dz)`` over the leading axes.

    Parameters
    ----------
    dh_new, dc_new : array_like, shape ``[..., d_h]``
        Gradients of the loss with respect to the two outputs (``dc_new`` is what
        the next step sends back along the cell state; zeros after the last step).
    cache : LSTMCellCache
        From :func:`lstm_cell`.

    Returns
    -------
    dx : ndarray, shape ``[..., d_in]``
    dh, dc : ndarray, shape ``[..., d_h]``
    dW : ndarray, shape ``[d_in + d_h, 4 d_h]``
    db : ndarray, shape ``[4 d_h]``

    Examples
    --------
    Zero weights, ``c = 2``: the cell-state gradient is multiplied by ``f = 1/2``.

    >>> _, cache = lstm_cell([[1.0]], [[0.0]], [[2.0]], np.zeros((2, 4)), np.zeros(4))
    >>> dx, dh, dc, dW, db = lstm_cell_backward([[0.0]], [[1.0]], cache)
    >>> dc.tolist(), dx.tolist()
    ([[0.5]], [[0.0]])
    """
    x, h, c, W, i, f, g, o, tanh_c = cache
    dh_new, dc_new = as_float64(dh_new, "dh_new"), as_float64(dc_new, "dc_new")
    require(dh_new.shape == h.shape, f"dh_new {dh_new.shape} does not match the hidden state {h.shape}")
    require(dc_new.shape == c.shape, f"dc_new {dc_new.shape} does not match the cell state {c.shape}")
    d_in, d_h = x.shape[-1], h.shape[-1]
    dC = dc_new + dh_new * o * (1.0 - tanh_c**2)
    dz = np.concatenate([dC * g * i * (1.0 - i), dC * c * f * (1.0 - f),
                         dC * i * (1.0 - g**2), dh_new * tanh_c * o * (1.0 - o)], axis=-1)
    dxh = dz @ W.T
    rows = dz.reshape(-1, 4 * d_h)
    dW = np.concatenate([x.reshape(-1, d_in), h.reshape(-1, d_h)], axis=1).T @ rows
    return dxh[..., :d_in], dxh[..., d_in:], dC * f, dW, rows.sum(axis=0)


def lstm_forward(x, h0, c0, W, b):
    """Run :func:`lstm_cell` over a sequence, time first.

    Parameters
    ----------
    x : array_like, shape ``[T, ..., d_in]``
        The axes between time and ``d_in`` are batch axes.
    h0, c0 : array_like, shape ``[..., d_h]``
        Initial states, with the batch axes of ``x``.
    W : array_like, shape ``[d_in + d_h, 4 d_h]``
    b : array_like, shape ``[4 d_h]``

    Returns
    -------
    (hs, cs) : pair of ndarray, shape ``[T, ..., d_h]``
        ``hs[t - 1]`` is ``h_t``, ``cs[t - 1]`` is ``c_t``.
    cache : list of LSTMCellCache
        One per step: all that :func:`lstm_backward` needs.

    Examples
    --------
    >>> (hs, cs), _ = lstm_forward(np.zeros((3, 1)), [0.0], [8.0], np.zeros((2, 4)), np.zeros(4))
    >>> cs.ravel().tolist()  # the forget gate is 1/2 at every step
    [4.0, 2.0, 1.0]
    """
    x = as_float64(x, "x")
    require(x.ndim >= 2, f"x {x.shape} must be [T, ..., d_in]")
    h, c = as_float64(h0, "h0"), as_float64(c0, "c0")
    hs, cs, caches = [], [], []
    for t in range(x.shape[0]):
        (h, c), cache = lstm_cell(x[t], h, c, W, b)
        hs.append(h)
        cs.append(c)
        caches.append(cache)
    return (np.stack(hs), np.stack(cs)), caches


def lstm_backward(dhs, cache):
    """Backpropagation through time for :func:`lstm_forward`.

    Parameters
    ----------
    dhs : array_like, shape ``[T, ..., d_h]``
        The gradient the loss sends to each hidden state directly (zeros where it
        does not use one).
    cache : list of LSTMCellCache
        From :func:`lstm_forward`.

    Returns
    -------
    dx : ndarray, shape ``[T, ..., d_in]``
    dh0, dc0 : ndarray, shape ``[..., d_h]``
    dW : ndarray, shape ``[d_in + d_h, 4 d_h]``
    db : ndarray, shape ``[4 d_h]``
        Shared by every step, so summed over steps and batch entries.

    Raises
    ------
    ValueError
        If ``dhs`` does not have the shape of the hidden states.
    """
    dhs = as_float64(dhs, "dhs")
    T, h_shape = len(cache), cache[0].h.shape
    require(dhs.shape == (T,) + h_shape, f"dhs {dhs.shape} does not match the hidden states {(T,) + h_shape}")
    dxs = [None] * T
    dh, dc = np.zeros(h_shape), np.zeros(h_shape)
    dW, db = np.zeros_like(cache[0].W), np.zeros(cache[0].W.shape[1])
    for t in reversed(range(T)):
        dxs[t], dh, dc, dW_t, db_t = lstm_cell_backward(dhs[t] + dh, dc, cache[t])
        dW += dW_t
        db += db_t
    return np.stack(dxs), dh, dc, dW, db
