"""NumPy reference implementation, float64 throughout.

Every operation is a pair ``op(...) -> (out, cache)`` and
``op_backward(dout, cache) -> gradients in input order``; shapes are in the
docstrings and bad shapes raise ``ValueError`` naming them.
"""

from .attention import attention, attention_backward, softmax, softmax_backward
from .efficient_attention import memory_efficient_attention, memory_efficient_attention_backward
from .gradcheck import gradcheck, numerical_gradient, relative_error
from .layers import (
    cross_entropy,
    cross_entropy_backward,
    embedding,
    embedding_backward,
    gelu,
    gelu_backward,
    gelu_derivative_max_difference,
    layer_norm,
    layer_norm_backward,
    linear,
    linear_backward,
    positional_encoding,
    relu,
    relu_backward,
)
from .lstm import lstm_backward, lstm_cell, lstm_cell_backward, lstm_forward
from .multi_head import multi_head_attention, multi_head_attention_backward
from .optim import adam_init, adam_step, adamw_step, clip_grad_norm, momentum_init, momentum_step, sgd_step
from .patch import fold_patches, patch_embed, patch_embed_backward, unfold_patches
from .rnn import rnn_backward, rnn_forward
from .tanh import tanh, tanh_backward

__all__ = [
    "adam_init",
    "adam_step",
    "adamw_step",
    "attention",
    "attention_backward",
    "clip_grad_norm",
    "cross_entropy",
    "cross_entropy_backward",
    "embedding",
    "embedding_backward",
    "fold_patches",
    "gelu",
    "gelu_backward",
    "gelu_derivative_max_difference",
    "gradcheck",
    "layer_norm",
    "layer_norm_backward",
    "linear",
    "linear_backward",
    "lstm_backward",
    "lstm_cell",
    "lstm_cell_backward",
    "lstm_forward",
    "memory_efficient_attention",
    "memory_efficient_attention_backward",
    "momentum_init",
    "momentum_step",
    "multi_head_attention",
    "multi_head_attention_backward",
    "numerical_gradient",
    "patch_embed",
    "patch_embed_backward",
    "positional_encoding",
    "relative_error",
    "relu",
    "relu_backward",
    "rnn_backward",
    "rnn_forward",
    "sgd_step",
    "softmax",
    "softmax_backward",
    "tanh",
    "tanh_backward",
    "unfold_patches",
]
