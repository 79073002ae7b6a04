"""The tanh RNN of ``derivations.reference.rnn`` against PyTorch and central differences.

Expected values come from ``torch.nn.RNN`` (an independent implementation of the same
recurrence), from torch autograd, or from finite differences; never from the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from derivations.reference import gradcheck
from derivations.reference.rnn import rnn_backward, rnn_forward

RTOL = 1e-10
GRADCHECK_TOL = 1e-6  # central differences reach ~1e-8 here; a wrong gradient is off by >1e-2


def assert_close(actual, expected, rtol=RTOL):
    """Entrywise ``rtol`` with an absolute floor of ``rtol`` times the largest expected entry."""
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    actual = np.asarray(actual)
    assert actual.shape == expected.shape
    scale = float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def random_case(rng, T, batch_shape, d_in, d_h, scale=1.0):
    return (rng.standard_normal((T, *batch_shape, d_in)), rng.standard_normal((*batch_shape, d_h)),
            rng.standard_normal((d_in, d_h)) * scale / np.sqrt(d_in),
            rng.standard_normal((d_h, d_h)) * scale / np.sqrt(d_h), rng.standard_normal(d_h) * 0.1)


def torch_rnn(x, h0, W_xh, W_hh, b):
    """``torch.nn.RNN`` (tanh) with our weights: it computes ``x W_ih^T + b_ih + h W_hh^T + b_hh``."""
    x, h0 = np.asarray(x), np.asarray(h0)
    T, d_in, d_h = x.shape[0], x.shape[-1], h0.shape[-1]
    batch = int(np.prod(x.shape[1:-1], dtype=int))
    net = torch.nn.RNN(d_in, d_h, nonlinearity="tanh", dtype=torch.float64)
    with torch.no_grad():
        net.weight_ih_l0.copy_(torch.tensor(W_xh.T))
        net.weight_hh_l0.copy_(torch.tensor(W_hh.T))
        net.bias_ih_l0.copy_(torch.tensor(b))
        net.bias_hh_l0.zero_()
    xt = torch.tensor(x.reshape(T, batch, d_in), requires_grad=True)
    h0t = torch.tensor(h0.reshape(1, batch, d_h), requires_grad=True)
    hs, _ = net(xt, h0t)
    return net, xt, h0t, hs


@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 3)])
def test_forward_and_backward_match_torch_rnn(batch_shape):
    rng = np.random.default_rng(1)
    T, d_in, d_h = 6, 3, 5
    x, h0, W_xh, W_hh, b = random_case(rng, T, batch_shape, d_in, d_h, scale=1.5)
    dhs = rng.standard_normal((T, *batch_shape, d_h))  # the loss uses every hidden state

    hs, cache = rnn_forward(x, h0, W_xh, W_hh, b)
    dx, dh0, dW_xh, dW_hh, db = rnn_backward(dhs, cache)

    net, xt, h0t, hs_t = torch_rnn(x, h0, W_xh, W_hh, b)
    assert_close(hs, hs_t.detach().numpy().reshape(hs.shape))
    (hs_t * torch.tensor(dhs.reshape(hs_t.shape))).sum().backward()
    assert_close(dx, xt.grad.numpy().reshape(x.shape))
    assert_close(dh0, h0t.grad.numpy().reshape(h0.shape))
    assert_close(dW_xh, net.weight_ih_l0.grad.T)
    assert_close(dW_hh, net.weight_hh_l0.grad.T)
    assert_close(db, net.bias_ih_l0.grad)


def test_backward_matches_autograd_of_an_explicit_loop():
    """A second, hand-written torch recurrence (row-vector form), with a loss that reads only some steps."""
    rng = np.random.default_rng(2)
    T, batch, d_in, d_h = 7, 4, 2, 3
    x, h0, W_xh, W_hh, b = random_case(rng, T, (batch,), d_in, d_h, scale=2.0)
    dhs = np.zeros((T, batch, d_h))
    dhs[[2, 6]] = rng.standard_normal((2, batch, d_h))

    leaves = [torch.tensor(a, requires_grad=True) for a in (x, h0, W_xh, W_hh, b)]
    xt, h, Wx, Wh, bt = leaves
    loss = 0.0
    for t in range(T):
        h = torch.tanh(xt[t] @ Wx + h @ Wh + bt)
        loss = loss + (h * torch.tensor(dhs[t])).sum()
    loss.backward()

    _, cache = rnn_forward(x, h0, W_xh, W_hh, b)
    for ours, leaf in zip(rnn_backward(dhs, cache), leaves):
        assert_close(ours, leaf.grad)


@pytest.mark.parametrize("T", [1, 4])
def test_backward_matches_central_differences(T):
    rng = np.random.default_rng(3)
    inputs = list(random_case(rng, T, (2,), 3, 4))
    G = rng.standard_normal((T, 2, 4))

    def loss_and_grads(*args):
        hs, cache = rnn_forward(*args)
        return float(np.sum(G * hs)), rnn_backward(G, cache)

    assert max(gradcheck(loss_and_grads, inputs)) < GRADCHECK_TOL


def test_gradcheck_catches_a_missing_tanh_derivative():
    """The check is sharp enough to see the classic mistake: forgetting ``1 - h^2``."""
    rng = np.random.default_rng(4)
    inputs = list(random_case(rng, 3, (2,), 2, 3, scale=1.5))
    G = rng.standard_normal((3, 2, 3))

    def wrong(*args):
        hs, cache = rnn_forward(*args)
        W_hh = cache[4]
        dh = np.zeros_like(G[0])
        for t in reversed(range(len(G))):
            dh = (G[t] + dh) @ W_hh.T  # as if tanh' were 1
        return float(np.sum(G * hs)), [None, dh, None, None, None]

    assert gradcheck(wrong, inputs)[1] > 1e-2


def test_inputs_are_not_modified():
    rng = np.random.default_rng(5)
    case = random_case(rng, 3, (2,), 2, 3)
    copies = [a.copy() for a in case]
    hs, cache = rnn_forward(*case)
    dhs = np.ones_like(hs)
    rnn_backward(dhs, cache)
    for original, copy in zip(case, copies):
        np.testing.assert_array_equal(original, copy)
    np.testing.assert_array_equal(dhs, np.ones_like(hs))


BAD_SHAPES = {
    "W_hh not square": (dict(W_hh=np.zeros((3, 4))), "W_hh"),
    "b of the wrong size": (dict(b=np.zeros(4)), "b"),
    "x with the wrong d_in": (dict(x=np.zeros((5, 2, 3))), "x"),
    "x without a time axis": (dict(x=np.zeros(2)), "x"),
    "h0 with the wrong batch": (dict(h0=np.zeros((3, 3))), "h0"),
    "W_xh not a matrix": (dict(W_xh=np.zeros(6)), "W_xh"),
}


@pytest.mark.parametrize("case", sorted(BAD_SHAPES))
def test_shape_errors_name_the_argument(case):
    good = dict(x=np.zeros((5, 2, 2)), h0=np.zeros((2, 3)), W_xh=np.zeros((2, 3)), W_hh=np.zeros((3, 3)),
                b=np.zeros(3))
    change, name = BAD_SHAPES[case]
    with pytest.raises(ValueError, match=name):
        rnn_forward(**{**good, **change})


def test_backward_rejects_a_wrong_upstream_shape():
    hs, cache = rnn_forward(np.zeros((5, 2, 2)), np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="dhs"):
        rnn_backward(np.zeros((4, 2, 3)), cache)


def test_shape_messages_give_the_expected_shapes():
    good = dict(x=np.zeros((5, 2, 2)), h0=np.zeros((2, 3)), W_xh=np.zeros((2, 3)), W_hh=np.zeros((3, 3)),
                b=np.zeros(3))
    with pytest.raises(ValueError) as info:
        rnn_forward(**{**good, "h0": np.zeros((3, 3))})
    assert str(info.value) == "h0 (3, 3) must be (2, 3): the batch axes of x (5, 2, 2), then d_h = 3"
    with pytest.raises(ValueError) as info:
        rnn_forward(**{**good, "x": np.zeros((5, 2, 4, 2)), "h0": np.zeros((2, 3))})
    assert str(info.value) == "h0 (2, 3) must be (2, 4, 3): the batch axes of x (5, 2, 4, 2), then d_h = 3"


def test_an_empty_sequence_passes_the_initial_state_through():
    h0 = np.array([[0.5, -0.5]])
    hs, cache = rnn_forward(np.zeros((0, 1, 3)), h0, np.ones((3, 2)), np.eye(2), np.zeros(2))
    assert hs.shape == (0, 1, 2)
    dx, dh0, dW_xh, dW_hh, db = rnn_backward(np.zeros((0, 1, 2)), cache)
    assert dx.shape == (0, 1, 3) and dh0.tolist() == [[0.0, 0.0]] and not dW_hh.any()
