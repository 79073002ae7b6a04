"""A tanh recurrent network and its backward pass through time (BPTT), float64.

One step maps the previous hidden state and the current input to the next
hidden state, in the row-vector convention of :func:`~derivations.reference.linear`::

    h_t = tanh(x_t W_xh + h_{t-1} W_hh + b),    t = 1 ... T

Time is the first axis; any axes between time and features are batch axes.
The backward pass walks the steps in reverse. The gradient reaching ``h_{t-1}``
is the one arriving at ``h_t`` multiplied by the step's Jacobian (claim
``rnn.step.vjp``)::

    da_t = dh_t * (1 - h_t^2)          dh_{t-1} = da_t W_hh^T  (+ what the loss sends to h_{t-1})

so a gradient that crosses ``T`` steps is multiplied by ``T`` such Jacobians.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._checks import as_float64, require, unpack_cache

__all__ = ["RNNCache", "rnn_forward", "rnn_backward"]


class RNNCache(NamedTuple):
    """What :func:`rnn_backward` needs from :func:`rnn_forward`."""

    x: np.ndarray  # inputs [T, ..., d_in]
    h0: np.ndarray  # initial state [..., d_h]
    hs: np.ndarray  # hidden states h_1 ... h_T [T, ..., d_h]
    W_xh: np.ndarray  # [d_in, d_h]
    W_hh: np.ndarray  # [d_h, d_h]


def rnn_forward(x, h0, W_xh, W_hh, b):
    """Run a tanh RNN over a sequence: ``h_t = tanh(x_t W_xh + h_{t-1} W_hh + b)``.

    Parameters
    ----------
    x : array_like, shape ``[T, ..., d_in]``
        Inputs, time first; the axes between time and ``d_in`` are batch axes.
    h0 : array_like, shape ``[..., d_h]``
        Initial hidden state, with the same batch axes as ``x``.
    W_xh : array_like, shape ``[d_in, d_h]``
    W_hh : array_like, shape ``[d_h, d_h]``
    b : array_like, shape ``[d_h]``

    Returns
    -------
    hs : ndarray, shape ``[T, ..., d_h]``
        The hidden states ``h_1 ... h_T`` (``hs[t - 1]`` is ``h_t``).
    cache : RNNCache
        ``(x, h0, hs, W_xh, W_hh)``, all that :func:`rnn_backward` needs.

    Raises
    ------
    ValueError
        If the shapes do not fit together; the message names them.

    Notes
    -----
    NaN propagates, as in ``torch.nn.RNN``: ``tanh(nan)`` is NaN, and a NaN
    hidden state makes every later state of that sequence NaN (it is
    multiplied by ``W_hh``). Infinity follows IEEE arithmetic through the
    products (infinity times a zero weight is NaN) and ``tanh(+-inf) = +-1``.

    Examples
    --------
    With ``W_hh = 0`` each step only sees its own input:

    >>> hs, _ = rnn_forward(np.zeros((3, 1)), [0.5], [[1.0]], [[0.0]], [0.0])
    >>> hs.ravel().tolist()
    [0.0, 0.0, 0.0]
    >>> hs, _ = rnn_forward(np.zeros((2, 1)), [0.5], [[1.0]], [[2.0]], [0.0])
    >>> hs.ravel().round(6).tolist()  # tanh(1), then tanh(2 tanh(1))
    [0.761594, 0.909252]
    """
    x, h0 = as_float64(x, "x"), as_float64(h0, "h0")
    W_xh, W_hh, b = as_float64(W_xh, "W_xh"), as_float64(W_hh, "W_hh"), as_float64(b, "b")
    require(W_xh.ndim == 2, f"W_xh {W_xh.shape} must be a matrix [d_in, d_h]")
    d_in, d_h = W_xh.shape
    require(W_hh.shape == (d_h, d_h), f"W_hh {W_hh.shape} must be ({d_h}, {d_h}) to match W_xh {W_xh.shape}")
    require(b.shape == (d_h,), f"b {b.shape} must be ({d_h},) to match W_xh {W_xh.shape}")
    require(x.ndim >= 2 and x.shape[-1] == d_in,
            f"x {x.shape} must be [T, ..., d_in] with d_in = {d_in} of W_xh {W_xh.shape}")
    require(h0.shape == x.shape[1:-1] + (d_h,),
            f"h0 {h0.shape} must be {x.shape[1:-1] + (d_h,)}: the batch axes of x {x.shape}, then d_h = {d_h}")
    hs = np.empty(x.shape[:-1] + (d_h,))
    h = h0
    for t in range(x.shape[0]):
        h = np.tanh(x[t] @ W_xh + h @ W_hh + b)
        hs[t] = h
    return hs, RNNCache(x, h0, hs, W_xh, W_hh)


def rnn_backward(dhs, cache):
    """Backpropagation through time for :func:`rnn_forward`.

    Parameters
    ----------
    dhs : array_like, shape ``[T, ..., d_h]``
        The gradient of the loss with respect to every hidden state ``h_1 ... h_T``
        as the loss uses them directly (zeros where it does not).
    cache : RNNCache
        From :func:`rnn_forward`.

    Returns
    -------
    dx : ndarray, shape ``[T, ..., d_in]``
    dh0 : ndarray, shape ``[..., d_h]``
    dW_xh : ndarray, shape ``[d_in, d_h]``
    dW_hh : ndarray, shape ``[d_h, d_h]``
    db : ndarray, shape ``[d_h]``
        The weights are shared by every step and every batch entry, so their
        gradients are summed over both.

    Raises
    ------
    ValueError
        If ``dhs`` does not have the shape of the hidden states.

    Examples
    --------
    One step, one unit, at a point where ``tanh' = 1``: every gradient is the
    upstream gradient times the input of its weight.

    >>> _, cache = rnn_forward([[[0.0]]], [[0.0]], [[1.0]], [[3.0]], [0.0])
    >>> dx, dh0, dW_xh, dW_hh, db = rnn_backward([[[2.0]]], cache)
    >>> dx.tolist(), dh0.tolist(), dW_xh.tolist(), dW_hh.tolist(), db.tolist()
    ([[[2.0]]], [[6.0]], [[0.0]], [[0.0]], [2.0])
    """
    x, h0, hs, W_xh, W_hh = unpack_cache(cache, RNNCache, "rnn_forward")
    dhs = as_float64(dhs, "dhs")
    require(dhs.shape == hs.shape, f"dhs {dhs.shape} does not match the hidden states {hs.shape}")
    d_in, d_h = W_xh.shape
    dx = np.empty_like(x)
    dW_xh, dW_hh, db = np.zeros_like(W_xh), np.zeros_like(W_hh), np.zeros(d_h)
    dh_next = np.zeros_like(h0)  # the gradient h_t receives from step t + 1
    for t in reversed(range(x.shape[0])):
        h_prev = hs[t - 1] if t > 0 else h0
        da = (dhs[t] + dh_next) * (1.0 - hs[t] ** 2)  # through tanh: tanh' = 1 - tanh^2
        dx[t] = da @ W_xh.T
        dh_next = da @ W_hh.T
        rows = da.reshape(-1, d_h)
        dW_xh += x[t].reshape(-1, d_in).T @ rows
        dW_hh += h_prev.reshape(-1, d_h).T @ rows
        db += rows.sum(axis=0)
    return dx, dh_next, dW_xh, dW_hh, db
