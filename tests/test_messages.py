"""Every array argument of every reference function, given text instead of numbers, raises a
ValueError that starts with that argument's name: the caller learns which input was wrong."""

from __future__ import annotations

import numpy as np
import pytest

from derivations import reference as ref
from derivations.reference.model import TransformerConfig, backward, forward, init_params
from derivations.reference.monitor import gradient_report

TEXT = np.array([["a", "b"], ["c", "d"]])
I2 = np.eye(2)


def _caches():
    return {
        "linear": ref.linear(I2, I2, np.zeros(2))[1],
        "relu": ref.relu(I2)[1],
        "gelu": ref.gelu(I2)[1],
        "layer_norm": ref.layer_norm(I2, np.ones(2), np.zeros(2))[1],
        "cross_entropy": ref.cross_entropy(I2, [0, 1])[1],
        "embedding": ref.embedding([0, 1], I2)[1],
        "softmax": ref.softmax(I2)[1],
        "attention": ref.attention(I2, I2, I2)[1],
        "multi_head": ref.multi_head_attention(I2, I2, I2, I2, I2, 1)[1],
        "rnn": ref.rnn_forward(np.zeros((1, 2, 2)), np.zeros((2, 2)), I2, I2, np.zeros(2))[1],
        "lstm_cell": ref.lstm_cell(np.zeros((2, 1)), np.zeros((2, 1)), np.zeros((2, 1)), np.zeros((2, 4)),
                                   np.zeros(4))[1],
        "lstm": ref.lstm_forward(np.zeros((1, 2, 1)), np.zeros((2, 1)), np.zeros((2, 1)), np.zeros((2, 4)),
                                 np.zeros(4))[1],
        "tanh": ref.tanh(I2)[1],
        "efficient_attention": ref.memory_efficient_attention(I2, I2, I2)[1],
    }


def _lstm_cell(x=np.zeros((2, 1)), h=np.zeros((2, 1)), c=np.zeros((2, 1)), W=np.zeros((2, 4)), b=np.zeros(4)):
    return ref.lstm_cell(x, h, c, W, b)


def _lstm_forward(x=np.zeros((1, 2, 1)), h0=np.zeros((2, 1)), c0=np.zeros((2, 1))):
    return ref.lstm_forward(x, h0, c0, np.zeros((2, 4)), np.zeros(4))


CALLS = {
    "x of linear": (lambda c: ref.linear(TEXT, I2), "x"),
    "W of linear": (lambda c: ref.linear(I2, TEXT), "W"),
    "b of linear": (lambda c: ref.linear(I2, I2, TEXT[0]), "b"),
    "dy of linear_backward": (lambda c: ref.linear_backward(TEXT, c["linear"]), "dy"),
    "x of relu": (lambda c: ref.relu(TEXT), "x"),
    "dy of relu_backward": (lambda c: ref.relu_backward(TEXT, c["relu"]), "dy"),
    "x of gelu": (lambda c: ref.gelu(TEXT), "x"),
    "dy of gelu_backward": (lambda c: ref.gelu_backward(TEXT, c["gelu"]), "dy"),
    "x of layer_norm": (lambda c: ref.layer_norm(TEXT, np.ones(2), np.zeros(2)), "x"),
    "gamma of layer_norm": (lambda c: ref.layer_norm(I2, TEXT[0], np.zeros(2)), "gamma"),
    "beta of layer_norm": (lambda c: ref.layer_norm(I2, np.ones(2), TEXT[0]), "beta"),
    "dy of layer_norm_backward": (lambda c: ref.layer_norm_backward(TEXT, c["layer_norm"]), "dy"),
    "logits of cross_entropy": (lambda c: ref.cross_entropy(TEXT, [0, 1]), "logits"),
    "targets of cross_entropy": (lambda c: ref.cross_entropy(I2, [0.0, 1.0]), "targets"),
    "dloss of cross_entropy_backward": (lambda c: ref.cross_entropy_backward("one", c["cross_entropy"]), "dloss"),
    "E of embedding": (lambda c: ref.embedding([0], TEXT), "E"),
    "tokens of embedding": (lambda c: ref.embedding([0.0], I2), "tokens"),
    "dout of embedding_backward": (lambda c: ref.embedding_backward(TEXT, c["embedding"]), "dout"),
    "x of softmax": (lambda c: ref.softmax(TEXT), "x"),
    "dy of softmax_backward": (lambda c: ref.softmax_backward(TEXT, c["softmax"]), "dy"),
    "Q of attention": (lambda c: ref.attention(TEXT, I2, I2), "Q"),
    "K of attention": (lambda c: ref.attention(I2, TEXT, I2), "K"),
    "V of attention": (lambda c: ref.attention(I2, I2, TEXT), "V"),
    "dO of attention_backward": (lambda c: ref.attention_backward(TEXT, c["attention"]), "dO"),
    "X of multi_head_attention": (lambda c: ref.multi_head_attention(TEXT, I2, I2, I2, I2, 1), "X"),
    "W_q of multi_head_attention": (lambda c: ref.multi_head_attention(I2, TEXT, I2, I2, I2, 1), "W_q"),
    "W_k of multi_head_attention": (lambda c: ref.multi_head_attention(I2, I2, TEXT, I2, I2, 1), "W_k"),
    "W_v of multi_head_attention": (lambda c: ref.multi_head_attention(I2, I2, I2, TEXT, I2, 1), "W_v"),
    "W_o of multi_head_attention": (lambda c: ref.multi_head_attention(I2, I2, I2, I2, TEXT, 1), "W_o"),
    "dout of multi_head_attention_backward": (lambda c: ref.multi_head_attention_backward(TEXT, c["multi_head"]),
                                              "dy"),  # the first step back is W_o's linear map
    "x of rnn_forward": (lambda c: ref.rnn_forward(TEXT[None], np.zeros((2, 2)), I2, I2, np.zeros(2)), "x"),
    "h0 of rnn_forward": (lambda c: ref.rnn_forward(np.zeros((1, 2, 2)), TEXT, I2, I2, np.zeros(2)), "h0"),
    "W_xh of rnn_forward": (lambda c: ref.rnn_forward(np.zeros((1, 2, 2)), np.zeros((2, 2)), TEXT, I2, np.zeros(2)),
                            "W_xh"),
    "W_hh of rnn_forward": (lambda c: ref.rnn_forward(np.zeros((1, 2, 2)), np.zeros((2, 2)), I2, TEXT, np.zeros(2)),
                            "W_hh"),
    "b of rnn_forward": (lambda c: ref.rnn_forward(np.zeros((1, 2, 2)), np.zeros((2, 2)), I2, I2, TEXT[0]), "b"),
    "dhs of rnn_backward": (lambda c: ref.rnn_backward(TEXT[None], c["rnn"]), "dhs"),
    "x of lstm_cell": (lambda c: _lstm_cell(x=TEXT[:, :1]), "x"),
    "h of lstm_cell": (lambda c: _lstm_cell(h=TEXT[:, :1]), "h"),
    "c of lstm_cell": (lambda c: _lstm_cell(c=TEXT[:, :1]), "c"),
    "W of lstm_cell": (lambda c: _lstm_cell(W=np.full((2, 4), "w")), "W"),
    "b of lstm_cell": (lambda c: _lstm_cell(b=np.full(4, "b")), "b"),
    "dh_new of lstm_cell_backward": (lambda c: ref.lstm_cell_backward(TEXT[:, :1], np.zeros((2, 1)), c["lstm_cell"]),
                                     "dh_new"),
    "dc_new of lstm_cell_backward": (lambda c: ref.lstm_cell_backward(np.zeros((2, 1)), TEXT[:, :1], c["lstm_cell"]),
                                     "dc_new"),
    "x of lstm_forward": (lambda c: _lstm_forward(x=TEXT[None, :, :1]), "x"),
    "h0 of lstm_forward": (lambda c: _lstm_forward(h0=TEXT[:, :1]), "h0"),
    "c0 of lstm_forward": (lambda c: _lstm_forward(c0=TEXT[:, :1]), "c0"),
    "dhs of lstm_backward": (lambda c: ref.lstm_backward(TEXT[None, :, :1], c["lstm"]), "dhs"),
    "x of tanh": (lambda c: ref.tanh(TEXT), "x"),
    "dy of tanh_backward": (lambda c: ref.tanh_backward(TEXT, c["tanh"]), "dy"),
    "images of unfold_patches": (lambda c: ref.unfold_patches(TEXT[None, None], 1), "images"),
    "images of patch_embed": (lambda c: ref.patch_embed(TEXT[None, None], I2[:1], None, 1), "images"),
    "W of patch_embed": (lambda c: ref.patch_embed(np.zeros((1, 1, 2, 2)), TEXT[:1], None, 1), "W"),
    "patches of fold_patches": (lambda c: ref.fold_patches(TEXT[None], (1, 2, 1, 1), 1), "patches"),
    "Q of memory_efficient_attention": (lambda c: ref.memory_efficient_attention(TEXT, I2, I2), "Q"),
    "K of memory_efficient_attention": (lambda c: ref.memory_efficient_attention(I2, TEXT, I2), "K"),
    "V of memory_efficient_attention": (lambda c: ref.memory_efficient_attention(I2, I2, TEXT), "V"),
    "dO of memory_efficient_attention_backward": (
        lambda c: ref.memory_efficient_attention_backward(TEXT, c["efficient_attention"]), "dO"),
    "params of sgd_step": (lambda c: ref.sgd_step({"w": TEXT}, {"w": I2}, lr=0.1), "params['w']"),
    "grads of sgd_step": (lambda c: ref.sgd_step({"w": I2}, {"w": TEXT}, lr=0.1), "grads['w']"),
    "velocity of momentum_step": (lambda c: ref.momentum_step({"w": I2}, {"w": I2}, {"velocity": {"w": TEXT}}, lr=0.1),
                                  "state['velocity']['w']"),
    "m of adam_step": (lambda c: ref.adam_step({"w": I2}, {"w": I2}, {"t": 0, "m": {"w": TEXT}, "v": {"w": I2}}),
                       "state['m']['w']"),
    "v of adam_step": (lambda c: ref.adam_step({"w": I2}, {"w": I2}, {"t": 0, "m": {"w": I2}, "v": {"w": TEXT}}),
                       "state['v']['w']"),
    "params of momentum_init": (lambda c: ref.momentum_init({"w": TEXT}), "params['w']"),
    "params of adam_init": (lambda c: ref.adam_init({"w": TEXT}), "params['w']"),
    "grads of clip_grad_norm": (lambda c: ref.clip_grad_norm({"w": TEXT}, 1.0), "grads['w']"),
    "grads of clip_grad_norm (list)": (lambda c: ref.clip_grad_norm([I2, TEXT], 1.0), "grads[1]"),
    "grads of gradient_report": (lambda c: gradient_report({"w": TEXT}), "grads['w']"),
    "inputs of gradcheck": (lambda c: ref.gradcheck(lambda x: 0.0, [TEXT], [I2]), "inputs[0]"),
    "inputs of numerical_gradient": (lambda c: ref.numerical_gradient(lambda x, y: 0.0, [I2, TEXT], 0), "inputs[1]"),
    "analytic of relative_error": (lambda c: ref.relative_error(TEXT, I2), "analytic"),
    "numeric of relative_error": (lambda c: ref.relative_error(I2, TEXT), "numeric"),
}


@pytest.mark.parametrize("case", list(CALLS))
def test_a_non_numeric_argument_is_named_first(case):
    call, name = CALLS[case]
    caches = _caches()
    with pytest.raises(ValueError) as info:
        call(caches)
    message = str(info.value)
    assert message.startswith(f"{name} must be"), message


def test_model_arguments_are_named():
    config = TransformerConfig(n_layers=1, d_model=4, n_heads=2, d_ff=4)
    params = init_params(config)
    with pytest.raises(ValueError, match=r"^params\['W_out'\] must be an array of real numbers"):
        forward({**params, "W_out": np.full((4, 20), "x")}, [[1, 2]], config)
    logits, cache = forward(params, [[1, 2]], config)
    with pytest.raises(ValueError, match=r"^dlogits must be an array of real numbers"):
        backward(np.full(logits.shape, "x"), cache)
    with pytest.raises(ValueError, match=r"^params must be a dict of arrays, got list"):
        forward([params], [[1, 2]], config)
