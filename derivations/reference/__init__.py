"""NumPy reference implementation, float64 throughout.

Every operation is a pair ``op(...) -> (out, cache)`` and
``op_backward(dout, cache) -> gradients in input order``; shapes are in the
docstrings and bad shapes raise ``ValueError`` naming them.
"""

from .attention import attention, attention_backward, softmax, softmax_backward
from .gradcheck import gradcheck, numerical_gradient, relative_error

__all__ = [
    "attention",
    "attention_backward",
    "gradcheck",
    "numerical_gradient",
    "relative_error",
    "softmax",
    "softmax_backward",
]
