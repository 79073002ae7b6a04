"""A small define-by-run autodiff engine whose rules are the reference's backward passes.

Write a computation with :class:`Var` values and the ops of :mod:`.ops`; every
op applied to a value that requires a gradient is recorded. Then:

>>> import numpy as np
>>> from derivations.autodiff import Var, Graph, backward, jvp, ops
>>> x = Var([1.0, 2.0], requires_grad=True, name="x")
>>> y = ops.tanh(x * x).sum()
>>> [row["op"] for row in Graph(y).rows()]
['mul', 'tanh', 'sum']
>>> [node.op.name for node in backward(y)]          # the order the backward pass visits them
['sum', 'tanh', 'mul']
>>> bool(np.allclose(x.grad, 2 * x.value * (1 - np.tanh(x.value**2) ** 2)))
True
>>> value, tangent = jvp(lambda v: ops.tanh(v * v).sum(), (x.value,), (np.array([1.0, 0.0]),))
>>> bool(np.isclose(tangent, x.grad[0]))              # forward mode: J u, one direction at a time
True

- :mod:`.engine`: values, nodes, the backward and forward passes, graph inspection.
- :mod:`.ops`: every op with its VJP rule (a reference backward function for
  the layers) and its JVP rule, one line per op.
- :mod:`.transformer`: the reference transformer written with the ops.
"""

from . import ops
from .engine import (
    Graph,
    Node,
    Op,
    Saved,
    SavedTensor,
    Var,
    apply,
    backward,
    count_flops,
    grad,
    is_recording,
    jacfwd,
    jacrev,
    jvp,
    linearize,
    no_grad,
    sum_to,
    vjp,
    zero_grad,
)
from .transformer import loss_and_grads, record_transformer, transformer_loss

__all__ = [
    "Graph",
    "Node",
    "Op",
    "Saved",
    "SavedTensor",
    "Var",
    "apply",
    "backward",
    "count_flops",
    "grad",
    "is_recording",
    "jacfwd",
    "jacrev",
    "jvp",
    "linearize",
    "loss_and_grads",
    "no_grad",
    "ops",
    "record_transformer",
    "sum_to",
    "transformer_loss",
    "vjp",
    "zero_grad",
]
