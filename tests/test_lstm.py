"""The LSTM of ``derivations.reference.lstm`` against PyTorch (float64) and central differences.

``torch.nn.LSTM`` computes the same cell with gate order (i, f, g, o), weights
``weight_ih [4 d_h, d_in]`` and ``weight_hh [4 d_h, d_h]`` and two biases; ours stacks
``W = [weight_ih^T; weight_hh^T]`` and uses one bias ``b = b_ih + b_hh``. Expected values come
from torch, its autograd, or finite differences; never from the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from derivations import autodiff as ad
from derivations.autodiff import Var, ops
from derivations.reference import gradcheck, lstm_backward, lstm_cell, lstm_cell_backward, lstm_forward

RTOL = 1e-10
GRADCHECK_TOL = 1e-6


def assert_close(actual, expected, rtol=RTOL):
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    actual = np.asarray(actual)
    assert actual.shape == expected.shape
    scale = float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def random_cell(rng, batch_shape, d_in, d_h):
    W = rng.standard_normal((d_in + d_h, 4 * d_h)) / np.sqrt(d_in + d_h) * 1.5
    return (rng.standard_normal((*batch_shape, d_in)), rng.standard_normal((*batch_shape, d_h)),
            rng.standard_normal((*batch_shape, d_h)), W, rng.standard_normal(4 * d_h) * 0.5)


def torch_lstm(d_in, d_h, W, b):
    net = torch.nn.LSTM(d_in, d_h, dtype=torch.float64)
    with torch.no_grad():
        net.weight_ih_l0.copy_(torch.tensor(W[:d_in].T))
        net.weight_hh_l0.copy_(torch.tensor(W[d_in:].T))
        net.bias_ih_l0.copy_(torch.tensor(b))
        net.bias_hh_l0.zero_()
    return net


@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 3)])
def test_cell_matches_torch_forward_and_backward(batch_shape):
    rng = np.random.default_rng(len(batch_shape))
    d_in, d_h = 3, 4
    x, h, c, W, b = random_cell(rng, batch_shape, d_in, d_h)
    dh_new, dc_new = rng.standard_normal(h.shape), rng.standard_normal(c.shape)
    (h_new, c_new), cache = lstm_cell(x, h, c, W, b)
    dx, dh, dc, dW, db = lstm_cell_backward(dh_new, dc_new, cache)

    net = torch_lstm(d_in, d_h, W, b)
    batch = int(np.prod(batch_shape, dtype=int))
    xt = torch.tensor(x.reshape(1, batch, d_in), requires_grad=True)
    ht = torch.tensor(h.reshape(1, batch, d_h), requires_grad=True)
    ct = torch.tensor(c.reshape(1, batch, d_h), requires_grad=True)
    _, (h_t, c_t) = net(xt, (ht, ct))
    torch.autograd.backward([h_t, c_t], [torch.tensor(dh_new.reshape(1, batch, d_h)),
                                         torch.tensor(dc_new.reshape(1, batch, d_h))])
    assert_close(h_new.reshape(batch, d_h), h_t[0])
    assert_close(c_new.reshape(batch, d_h), c_t[0])
    assert_close(dx.reshape(batch, d_in), xt.grad[0])
    assert_close(dh.reshape(batch, d_h), ht.grad[0])
    assert_close(dc.reshape(batch, d_h), ct.grad[0])
    assert_close(dW[:d_in], net.weight_ih_l0.grad.T)
    assert_close(dW[d_in:], net.weight_hh_l0.grad.T)
    assert_close(db, net.bias_ih_l0.grad)


def test_sequence_matches_torch():
    rng = np.random.default_rng(7)
    T, batch, d_in, d_h = 6, 2, 3, 5
    x = rng.standard_normal((T, batch, d_in))
    h0, c0 = rng.standard_normal((batch, d_h)), rng.standard_normal((batch, d_h))
    W = rng.standard_normal((d_in + d_h, 4 * d_h)) / np.sqrt(d_in + d_h)
    b = rng.standard_normal(4 * d_h) * 0.3
    dhs = rng.standard_normal((T, batch, d_h))
    (hs, cs), cache = lstm_forward(x, h0, c0, W, b)
    dx, dh0, dc0, dW, db = lstm_backward(dhs, cache)

    net = torch_lstm(d_in, d_h, W, b)
    xt, h0t, c0t = (torch.tensor(a, requires_grad=True) for a in (x, h0[None], c0[None]))
    out, _ = net(xt, (h0t, c0t))
    out.backward(torch.tensor(dhs))
    assert_close(hs, out)
    assert_close(dx, xt.grad)
    assert_close(dh0, h0t.grad[0])
    assert_close(dc0, c0t.grad[0])
    assert_close(dW, torch.cat([net.weight_ih_l0.grad.T, net.weight_hh_l0.grad.T]))
    assert_close(db, net.bias_ih_l0.grad)
    assert cs.shape == hs.shape


def test_cell_gradients_match_central_differences():
    rng = np.random.default_rng(3)
    x, h, c, W, b = random_cell(rng, (2,), 3, 4)
    r_h, r_c = rng.standard_normal((2, 4)), rng.standard_normal((2, 4))

    def loss(x, h, c, W, b):
        (h_new, c_new), _ = lstm_cell(x, h, c, W, b)
        return float(np.sum(r_h * h_new) + np.sum(r_c * c_new))

    _, cache = lstm_cell(x, h, c, W, b)
    grads = lstm_cell_backward(r_h, r_c, cache)
    assert max(gradcheck(loss, [x, h, c, W, b], list(grads))) < GRADCHECK_TOL


def test_sequence_gradients_match_central_differences():
    rng = np.random.default_rng(5)
    T, d_in, d_h = 5, 2, 3
    x = rng.standard_normal((T, d_in))
    h0, c0 = rng.standard_normal(d_h), rng.standard_normal(d_h)
    W = rng.standard_normal((d_in + d_h, 4 * d_h))
    b = rng.standard_normal(4 * d_h)
    r = rng.standard_normal((T, d_h))

    def loss(x, h0, c0, W, b):
        (hs, _), _ = lstm_forward(x, h0, c0, W, b)
        return float(np.sum(r * hs))

    _, cache = lstm_forward(x, h0, c0, W, b)
    assert max(gradcheck(loss, [x, h0, c0, W, b], list(lstm_backward(r, cache)))) < GRADCHECK_TOL


def test_the_cell_state_path_multiplies_by_the_forget_gate():
    """With dh' = 0, the gradient reaching c is dc' * f exactly (no weight, no tanh')."""
    rng = np.random.default_rng(0)
    x, h, c, W, b = random_cell(rng, (3,), 2, 4)
    (_, _), cache = lstm_cell(x, h, c, W, b)
    dc_new = rng.standard_normal(c.shape)
    _, _, dc, _, _ = lstm_cell_backward(np.zeros_like(h), dc_new, cache)
    z = x @ W[:2] + h @ W[2:] + b
    forget = 1.0 / (1.0 + np.exp(-z[:, 4:8]))
    np.testing.assert_allclose(dc, dc_new * forget, rtol=1e-14)


def test_engine_lstm_from_elementary_ops_equals_the_reference_cell():
    """The same cell written with the engine's elementary ops gets the reference cell's gradients."""
    rng = np.random.default_rng(11)
    x, h, c, W, b = random_cell(rng, (2,), 3, 4)
    r_h, r_c = rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    leaves = [Var(a, requires_grad=True) for a in (x, h, c, W, b)]
    xv, hv, cv, Wv, bv = leaves
    z = ops.matmul(ops.concat([xv, hv], axis=-1), Wv) + bv
    i, f, g, o = ops.sigmoid(z[:, :4]), ops.sigmoid(z[:, 4:8]), ops.tanh(z[:, 8:12]), ops.sigmoid(z[:, 12:])
    c_new = f * cv + i * g
    h_new = o * ops.tanh(c_new)
    ad.backward((h_new * r_h).sum() + (c_new * r_c).sum())
    _, cache = lstm_cell(x, h, c, W, b)
    for leaf, expected in zip(leaves, lstm_cell_backward(r_h, r_c, cache)):
        assert_close(leaf.grad, expected, rtol=1e-12)


@pytest.mark.parametrize("args, message", [
    (dict(W=np.zeros((5, 6))), r"W \(5, 6\) must be a matrix \[d_in \+ d_h, 4 d_h\]"),
    (dict(b=np.zeros(7)), r"b \(7,\) must have shape \(8,\)"),
    (dict(x=np.zeros((2, 4))), r"x \(2, 4\) must end in d_in = 3"),
    (dict(h=np.zeros((3, 2))), r"h \(3, 2\) must be \(2, 2\)"),
    (dict(c=np.zeros(2)), r"c \(2,\) must be \(2, 2\)"),
    (dict(W=np.zeros((5, 0)), b=np.zeros(0)), r"W \(5, 0\) must be a matrix"),  # d_h = 0: no state at all
    (dict(x=np.zeros((2, 0)), W=np.zeros((2, 8))), r"W \(2, 8\) must have d_in \+ d_h > d_h = 2 rows"),
])
def test_cell_rejects_bad_shapes(args, message):
    good = dict(x=np.zeros((2, 3)), h=np.zeros((2, 2)), c=np.zeros((2, 2)), W=np.zeros((5, 8)), b=np.zeros(8))
    with pytest.raises(ValueError, match=message):
        lstm_cell(**{**good, **args})


def test_backward_rejects_a_gradient_of_the_wrong_shape():
    (_, _), cache = lstm_cell(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((5, 8)), np.zeros(8))
    with pytest.raises(ValueError, match=r"dh_new \(2,\) does not match the hidden state \(2, 2\)"):
        lstm_cell_backward(np.zeros(2), np.zeros((2, 2)), cache)
    with pytest.raises(ValueError, match=r"dc_new \(1, 2\) does not match the cell state \(2, 2\)"):
        lstm_cell_backward(np.zeros((2, 2)), np.zeros((1, 2)), cache)
    with pytest.raises(ValueError, match=r"x \(3,\) must be \[T, \.\.\., d_in\]"):
        lstm_forward(np.zeros(3), np.zeros(2), np.zeros(2), np.zeros((5, 8)), np.zeros(8))
    _, seq_cache = lstm_forward(np.zeros((4, 3)), np.zeros(2), np.zeros(2), np.zeros((5, 8)), np.zeros(8))
    with pytest.raises(ValueError, match=r"dhs \(3, 2\) does not match the hidden states \(4, 2\)"):
        lstm_backward(np.zeros((3, 2)), seq_cache)


def test_a_one_step_sequence_is_one_cell():
    """T = 1: the sequence's backward pass is the cell's with nothing coming back along the cell state."""
    rng = np.random.default_rng(13)
    x, h, c, W, b = random_cell(rng, (2,), 3, 2)
    dh_new = rng.standard_normal(h.shape)
    (hs, cs), cache = lstm_forward(x[None], h, c, W, b)
    (h_new, c_new), cell_cache = lstm_cell(x, h, c, W, b)
    np.testing.assert_array_equal(hs[0], h_new)
    np.testing.assert_array_equal(cs[0], c_new)
    dx, dh0, dc0, dW, db = lstm_backward(dh_new[None], cache)
    expected = lstm_cell_backward(dh_new, np.zeros_like(c), cell_cache)
    for actual, wanted in zip((dx[0], dh0, dc0, dW, db), expected):
        np.testing.assert_allclose(actual, wanted, rtol=1e-14, atol=1e-15)
