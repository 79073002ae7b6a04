"""The engine's operations: each forward function with its VJP and JVP rules, one line per op.

Two kinds of op:

- **Layers** (``linear``, ``layer_norm``, ``attention``, ...): the forward
  function is the reference implementation's, and the VJP rule *is* its backward
  function, run on the very cache the forward function returned. The JVP rules
  are written here; where a Jacobian is symmetric (an elementwise function,
  softmax) the JVP rule is the backward function itself, because then
  ``J u = J^T u``.
- **Elementary operations** (``add``, ``mul``, ``matmul``, ``tanh``, ...) for
  small functions, each with a rule for every input and a count of the
  floating-point operations every rule performs.

Costs count what the rule's NumPy code computes: a product of ``[r, n]`` and
``[n, k]`` matrices is ``r k`` dot products of ``n`` multiplications and
``n - 1`` additions, counted ``2 r n k`` (a multiply-add is 2); an elementwise
addition, multiplication or function value is 1 per element; moving entries
(slicing, reshaping, concatenating) is free.
"""

from __future__ import annotations

import builtins

import numpy as np

from .. import reference as ref
from ..reference._checks import as_float64, require
from ..reference.multi_head import _merge_heads, _split_heads
from ..reference.patch import unfold_patches
from .engine import Op, Saved, Var, apply, sum_to

__all__ = [
    "add", "sub", "mul", "div", "neg", "matmul", "tanh", "sigmoid", "exp", "log", "sin", "cos",
    "sum", "getitem", "reshape", "concat",
    "linear", "relu", "gelu", "layer_norm", "softmax", "attention", "multi_head_attention",
    "embedding", "cross_entropy", "lstm_cell", "patch_embed",
    "OPS",
]


def _ref(backward):
    """A reference backward function as a VJP rule: it computes every input's gradient."""
    return lambda g, cache, needs: backward(g, cache)


def _total(terms, shape):
    """The sum of the terms that are present, broadcast to ``shape``; None if none is."""
    terms = [t for t in terms if t is not None]
    if not terms:
        return None
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total if np.shape(total) == tuple(shape) else total + np.zeros(shape)


def _n(a) -> int:
    return int(np.size(a))


_how_many = builtins.sum  # of the flags that are true (the module's ``sum`` is the engine's op)


# ----------------------------------------------------------------------------- elementary forward functions


def _binary(a, b, out, keep):
    a, b = as_float64(a, "a"), as_float64(b, "b")
    return out(a, b), Saved(a_shape=a.shape, b_shape=b.shape, **({"a": a, "b": b} if keep else {}))


def _matmul(x, W):
    x, W = as_float64(x, "x"), as_float64(W, "W")
    require(W.ndim == 2, f"W {W.shape} must be a matrix: matmul is x @ W on the last axis of x")
    require(x.ndim >= 1 and x.shape[-1] == W.shape[0], f"x {x.shape} does not end in {W.shape[0]} rows of W {W.shape}")
    return x @ W, Saved(x=x, W=W)


def _unary(function, keep_input):
    def forward(x):
        x = as_float64(x, "x")
        y = function(x)
        return y, Saved(x=x) if keep_input else Saved(y=y)
    return forward


def _sigmoid(x):
    e = np.exp(-np.abs(x))  # never exponentiates a positive number
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _sum(x, axis=None, keepdims=False):
    x = as_float64(x, "x")
    return np.sum(x, axis=axis, keepdims=keepdims), Saved(shape=x.shape, axis=axis, keepdims=keepdims)


def _getitem(x, index):
    x = as_float64(x, "x")
    return x[index], Saved(shape=x.shape, index=index)


def _reshape(x, shape):
    x = as_float64(x, "x")
    return x.reshape(shape), Saved(shape=x.shape, new_shape=tuple(shape))


def _concat(*xs, axis=-1):
    xs = [as_float64(x, "x") for x in xs]
    return np.concatenate(xs, axis=axis), Saved(sizes=[x.shape[axis] for x in xs], shapes=[x.shape for x in xs],
                                                axis=axis)


def _unsum(g, c):
    """The VJP of a sum: copy the cotangent back along the summed axes."""
    if c.axis is not None and not c.keepdims:
        g = np.expand_dims(g, c.axis)
    return np.broadcast_to(g, c.shape).copy()


def _unindex(g, c):
    """The VJP of indexing: scatter-add into zeros (repeated indices each add their part)."""
    out = np.zeros(c.shape)
    np.add.at(out, c.index, g)
    return out


def _split(g, c):
    """The VJP of concatenation is slicing."""
    bounds = np.cumsum([0] + c.sizes)
    return tuple(np.take(g, np.arange(lo, hi), axis=c.axis) for lo, hi in zip(bounds[:-1], bounds[1:]))


def _concat_jvp(c, *ts):
    if all(t is None for t in ts):
        return None
    return np.concatenate([np.zeros(s) if t is None else t for t, s in zip(ts, c.shapes)], axis=c.axis)


def _out_size(c):
    return int(np.prod(np.broadcast_shapes(c.a_shape, c.b_shape)))


def _reduction(c, shape):
    """Additions of summing an output-shaped array down to ``shape`` (the adjoint of broadcasting)."""
    return _out_size(c) - int(np.prod(shape))


def _matmul_cost(c):
    """``2 r n k`` for ``x`` with ``r`` rows of ``n`` entries and ``W`` ``[n, k]``."""
    n, k = c.W.shape
    return 2 * (_n(c.x) // n) * n * k


def _weight_gradient(x, g):
    """``dW = x^T g`` with every leading axis of ``x`` and ``g`` flattened into rows."""
    return x.reshape(-1, x.shape[-1]).T @ g.reshape(-1, g.shape[-1])


def _out_entries(c):
    n, k = c.W.shape
    return _n(c.x) // n * k


# ----------------------------------------------------------------------------- the table of elementary ops
#
# Each op: its forward function; its VJP rule, (cotangent g, cache c, needs) -> one gradient per input,
# skipping the inputs that need none; its JVP rule, (cache c, *tangents) -> the output's tangent, a None
# tangent meaning zero; the flops of (forward, JVP, VJP), given the tangents present or the needs.

ADD = Op("add", lambda a, b: _binary(a, b, np.add, keep=False),
         vjp=lambda g, c, needs: (sum_to(g, c.a_shape) if needs[0] else None,
                                  sum_to(g, c.b_shape) if needs[1] else None),
         jvp=lambda c, ta, tb: _total([ta, tb], np.broadcast_shapes(c.a_shape, c.b_shape)),
         cost=(lambda c, f: _out_size(c), lambda c, f: _out_size(c) * (all(f)),
               lambda c, f: _reductions(f, c, (c.a_shape, c.b_shape))))
SUB = Op("sub", lambda a, b: _binary(a, b, np.subtract, keep=False),
         vjp=lambda g, c, needs: (sum_to(g, c.a_shape) if needs[0] else None,
                                  sum_to(-g, c.b_shape) if needs[1] else None),
         jvp=lambda c, ta, tb: _total([ta, None if tb is None else -tb], np.broadcast_shapes(c.a_shape, c.b_shape)),
         cost=(lambda c, f: _out_size(c), lambda c, f: _out_size(c) * all(f),
               lambda c, f: _reductions(f, c, (c.a_shape, c.b_shape))))
MUL = Op("mul", lambda a, b: _binary(a, b, np.multiply, keep=True),
         vjp=lambda g, c, needs: (sum_to(g * c.b, c.a_shape) if needs[0] else None,
                                  sum_to(g * c.a, c.b_shape) if needs[1] else None),
         jvp=lambda c, ta, tb: _total([None if ta is None else ta * c.b, None if tb is None else c.a * tb],
                                      np.broadcast_shapes(c.a_shape, c.b_shape)),
         cost=(lambda c, f: _out_size(c), lambda c, f: _out_size(c) * (_how_many(f) + all(f)),
               lambda c, f: _out_size(c) * _how_many(f) + _reductions(f, c, (c.a_shape, c.b_shape))))
DIV = Op("div", lambda a, b: _binary(a, b, np.divide, keep=True),
         vjp=lambda g, c, needs: (sum_to(g / c.b, c.a_shape) if needs[0] else None,
                                  sum_to(-g * c.a / c.b**2, c.b_shape) if needs[1] else None),
         jvp=lambda c, ta, tb: _total([None if ta is None else ta / c.b, None if tb is None else -tb * c.a / c.b**2],
                                      np.broadcast_shapes(c.a_shape, c.b_shape)),
         cost=(lambda c, f: _out_size(c), lambda c, f: _out_size(c) * (f[0] + 3 * f[1] + all(f)),
               lambda c, f: _out_size(c) * (f[0] + 3 * f[1]) + _reductions(f, c, (c.a_shape, c.b_shape))))
NEG = Op("neg", lambda x: (-as_float64(x, "x"), Saved()),
         vjp=lambda g, c, needs: (-g,),
         jvp=lambda c, t: -t,
         cost=(lambda c, f: 0, lambda c, f: 0, lambda c, f: 0))  # sign flips are not counted
MATMUL = Op("matmul", _matmul,
            vjp=lambda g, c, needs: (g @ c.W.T if needs[0] else None, _weight_gradient(c.x, g) if needs[1] else None),
            jvp=lambda c, tx, tW: _total([None if tx is None else tx @ c.W, None if tW is None else c.x @ tW],
                                         c.x.shape[:-1] + (c.W.shape[1],)),
            cost=(lambda c, f: _matmul_cost(c),
                  lambda c, f: _matmul_cost(c) * _how_many(f) + _out_entries(c) * all(f),
                  lambda c, f: _matmul_cost(c) * _how_many(f)))
TANH = Op("tanh", _unary(np.tanh, keep_input=False),
          vjp=lambda g, c, needs: (g * (1.0 - c.y * c.y),),
          jvp=lambda c, t: t * (1.0 - c.y * c.y),
          cost=(lambda c, f: _n(c.y), lambda c, f: 3 * _n(c.y), lambda c, f: 3 * _n(c.y)))
SIGMOID = Op("sigmoid", _unary(_sigmoid, keep_input=False),
             vjp=lambda g, c, needs: (g * c.y * (1.0 - c.y),),
             jvp=lambda c, t: t * c.y * (1.0 - c.y),
             cost=(lambda c, f: _n(c.y), lambda c, f: 3 * _n(c.y), lambda c, f: 3 * _n(c.y)))
EXP = Op("exp", _unary(np.exp, keep_input=False),
         vjp=lambda g, c, needs: (g * c.y,),
         jvp=lambda c, t: t * c.y,
         cost=(lambda c, f: _n(c.y), lambda c, f: _n(c.y), lambda c, f: _n(c.y)))
LOG = Op("log", _unary(np.log, keep_input=True),
         vjp=lambda g, c, needs: (g / c.x,),
         jvp=lambda c, t: t / c.x,
         cost=(lambda c, f: _n(c.x), lambda c, f: _n(c.x), lambda c, f: _n(c.x)))
SIN = Op("sin", _unary(np.sin, keep_input=True),
         vjp=lambda g, c, needs: (g * np.cos(c.x),),
         jvp=lambda c, t: t * np.cos(c.x),
         cost=(lambda c, f: _n(c.x), lambda c, f: 2 * _n(c.x), lambda c, f: 2 * _n(c.x)))
COS = Op("cos", _unary(np.cos, keep_input=True),
         vjp=lambda g, c, needs: (-g * np.sin(c.x),),
         jvp=lambda c, t: -t * np.sin(c.x),
         cost=(lambda c, f: _n(c.x), lambda c, f: 2 * _n(c.x), lambda c, f: 2 * _n(c.x)))
SUM = Op("sum", _sum,
         vjp=lambda g, c, needs: (_unsum(g, c),),
         jvp=lambda c, t: np.sum(t, axis=c.axis, keepdims=c.keepdims),
         cost=(lambda c, f: _summed(c), lambda c, f: _summed(c), lambda c, f: 0))
GETITEM = Op("getitem", _getitem,
             vjp=lambda g, c, needs: (_unindex(g, c),),
             jvp=lambda c, t: t[c.index],
             cost=(lambda c, f: 0, lambda c, f: 0, lambda c, f: 0))
RESHAPE = Op("reshape", _reshape,
             vjp=lambda g, c, needs: (g.reshape(c.shape),),
             jvp=lambda c, t: t.reshape(c.new_shape),
             cost=(lambda c, f: 0, lambda c, f: 0, lambda c, f: 0))
CONCAT = Op("concat", _concat,
            vjp=lambda g, c, needs: _split(g, c),
            jvp=_concat_jvp,
            cost=(lambda c, f: 0, lambda c, f: 0, lambda c, f: 0))


def _reductions(needs, c, shapes) -> int:
    """Additions of reducing the cotangent to the shape of each input that needs a gradient."""
    return _how_many(_reduction(c, shape) for wanted, shape in zip(needs, shapes) if wanted)


def _summed(c) -> int:
    """Additions of a sum over ``c.axis``: input size minus output size."""
    axes = range(len(c.shape)) if c.axis is None else np.atleast_1d(c.axis) % max(len(c.shape), 1)
    kept = [size for ax, size in enumerate(c.shape) if ax not in set(int(a) for a in axes)]
    return int(np.prod(c.shape)) - int(np.prod(kept))


# ----------------------------------------------------------------------------- JVP rules of the layers


def _linear_jvp(cache, dx, dW, db=None):
    x, W, _ = cache
    return _total([None if dx is None else dx @ W, None if dW is None else x @ dW, db],
                  x.shape[:-1] + (W.shape[1],))


def _layer_norm_jvp(cache, dx, dgamma, dbeta):
    x_hat, sigma, gamma = cache
    terms = [None if dgamma is None else dgamma * x_hat, dbeta]
    if dx is not None:
        centred = dx - dx.mean(axis=-1, keepdims=True)  # the tangent of x - mean(x)
        terms.append(gamma * (centred - x_hat * np.mean(x_hat * centred, axis=-1, keepdims=True)) / sigma)
    return _total(terms, x_hat.shape)


def _attention_jvp(cache, dQ, dK, dV):
    Q, K, V, A = cache
    terms = [None if dV is None else A @ dV]
    dS = _total([None if dQ is None else dQ @ np.swapaxes(K, -1, -2),
                 None if dK is None else Q @ np.swapaxes(dK, -1, -2)], A.shape)
    if dS is not None:
        dS = dS / np.sqrt(Q.shape[-1])
        dA = A * (dS - np.sum(A * dS, axis=-1, keepdims=True))  # softmax's JVP; 0 where A is (masked)
        terms.append(dA @ V)
    return _total(terms, A.shape[:-1] + (V.shape[-1],))


def _multi_head_attention_jvp(cache, dX, dW_q, dW_k, dW_v, dW_o):
    cache_q, cache_k, cache_v, cache_attention, cache_o, n_heads = cache

    def heads(cache_linear, dW):
        t = _linear_jvp(cache_linear, dX, dW)
        return None if t is None else _split_heads(t, n_heads)

    t_heads = _attention_jvp(cache_attention, heads(cache_q, dW_q), heads(cache_k, dW_k), heads(cache_v, dW_v))
    return _linear_jvp(cache_o, None if t_heads is None else _merge_heads(t_heads), dW_o)


def _lstm_cell_jvp(cache, dx, dh, dc, dW, db):
    x, h, c, W, i, f, g, o, tanh_c = cache
    d_in, d_h = x.shape[-1], h.shape[-1]
    dz = _total([None if dx is None else dx @ W[:d_in], None if dh is None else dh @ W[d_in:],
                 None if dW is None else x @ dW[:d_in] + h @ dW[d_in:], db], i.shape[:-1] + (4 * d_h,))
    terms = [None if dc is None else f * dc]
    if dz is not None:
        dz_i, dz_f, dz_g, dz_o = np.split(dz, 4, axis=-1)
        terms += [i * (1 - i) * dz_i * g + i * (1 - g * g) * dz_g, f * (1 - f) * dz_f * c]
    dc_new = _total(terms, c.shape)
    if dc_new is None:
        return None, None
    dh_new = o * (1 - tanh_c * tanh_c) * dc_new
    if dz is not None:
        dh_new = dh_new + o * (1 - o) * dz_o * tanh_c
    return dh_new, dc_new


def _embedding_jvp(cache, dE):
    tokens, _ = cache
    return dE[tokens]


def _patch_embed_jvp(cache, dimages, dW, db=None):
    cache_linear, _, patch = cache
    return _linear_jvp(cache_linear, None if dimages is None else unfold_patches(dimages, patch), dW, db)


# ----------------------------------------------------------------------------- the table of layers
#
#          forward (the reference's)                            VJP rule (the reference backward)
#          JVP rule                                             names of the saved tensors

LINEAR = Op("linear", ref.linear, _ref(ref.linear_backward),
            _linear_jvp, saves=("x", "W", "has_bias"))
RELU = Op("relu", ref.relu, _ref(ref.relu_backward),
          lambda c, t: ref.relu_backward(t, c), saves=("x>0",))  # diagonal Jacobian: J u = J^T u
GELU = Op("gelu", ref.gelu, _ref(ref.gelu_backward),
          lambda c, t: ref.gelu_backward(t, c), saves=("x", "approximate"))  # diagonal Jacobian
LAYER_NORM = Op("layer_norm", ref.layer_norm, _ref(ref.layer_norm_backward),
                _layer_norm_jvp, saves=("x_hat", "sigma", "gamma"))
SOFTMAX = Op("softmax", ref.softmax, _ref(ref.softmax_backward),
             lambda c, t: ref.softmax_backward(t, c), saves=("y",))  # symmetric Jacobian diag(y) - y y^T
ATTENTION = Op("attention", ref.attention, _ref(ref.attention_backward),
               _attention_jvp, saves=("Q", "K", "V", "A"))
MULTI_HEAD_ATTENTION = Op("multi_head_attention", ref.multi_head_attention, _ref(ref.multi_head_attention_backward),
                          _multi_head_attention_jvp,
                          saves=(("q", ("x", "W_q")), ("k", ("x", "W_k")), ("v", ("x", "W_v")),
                                 ("attention", ("Q", "K", "V", "A")), ("o", ("heads", "W_o")), "n_heads"))
EMBEDDING = Op("embedding", lambda E, tokens: ref.embedding(tokens, E), _ref(ref.embedding_backward),
               _embedding_jvp, saves=("tokens", "E.shape"))
CROSS_ENTROPY = Op("cross_entropy", ref.cross_entropy, _ref(ref.cross_entropy_backward),
                   lambda c, dz: np.sum(ref.cross_entropy_backward(1.0, c) * dz), saves=("p", "targets"))
LSTM_CELL = Op("lstm_cell", ref.lstm_cell, lambda g, c, needs: ref.lstm_cell_backward(*g, c),
               _lstm_cell_jvp, n_outputs=2)
PATCH_EMBED = Op("patch_embed", ref.patch_embed, _ref(ref.patch_embed_backward),
                 _patch_embed_jvp, saves=(("linear", ("patches", "W", "has_bias")), "image_shape", "patch"))

#: Every op by name.
OPS = {op.name: op for op in (ADD, SUB, MUL, DIV, NEG, MATMUL, TANH, SIGMOID, EXP, LOG, SIN, COS, SUM, GETITEM,
                              RESHAPE, CONCAT, LINEAR, RELU, GELU, LAYER_NORM, SOFTMAX, ATTENTION,
                              MULTI_HEAD_ATTENTION, EMBEDDING, CROSS_ENTROPY, LSTM_CELL, PATCH_EMBED)}


# ----------------------------------------------------------------------------- the functions a program calls


def add(a, b):
    """``a + b`` with NumPy broadcasting."""
    return apply(ADD, a, b)


def sub(a, b):
    """``a - b`` with NumPy broadcasting."""
    return apply(SUB, a, b)


def mul(a, b):
    """``a * b`` entrywise, with NumPy broadcasting."""
    return apply(MUL, a, b)


def div(a, b):
    """``a / b`` entrywise, with NumPy broadcasting."""
    return apply(DIV, a, b)


def neg(x):
    """``-x``."""
    return apply(NEG, x)


def matmul(x, W):
    """``x @ W`` with ``W`` a matrix, on the last axis of ``x``."""
    return apply(MATMUL, x, W)


def tanh(x):
    """``tanh(x)`` entrywise."""
    return apply(TANH, x)


def sigmoid(x):
    """``1 / (1 + exp(-x))`` entrywise."""
    return apply(SIGMOID, x)


def exp(x):
    """``exp(x)`` entrywise."""
    return apply(EXP, x)


def log(x):
    """``log(x)`` entrywise."""
    return apply(LOG, x)


def sin(x):
    """``sin(x)`` entrywise."""
    return apply(SIN, x)


def cos(x):
    """``cos(x)`` entrywise."""
    return apply(COS, x)


def sum(x, axis=None, keepdims=False):  # noqa: A001 - the engine's sum, as np.sum
    """Sum over ``axis`` (all axes by default)."""
    return apply(SUM, x, axis=axis, keepdims=keepdims)


def getitem(x, index):
    """``x[index]`` (basic or integer-array indexing)."""
    return apply(GETITEM, x, index=index)


def reshape(x, shape):
    """``x`` with a new shape of the same size."""
    return apply(RESHAPE, x, shape=tuple(shape))


def concat(xs, axis=-1):
    """Concatenate along ``axis``."""
    return apply(CONCAT, *xs, axis=axis)


def linear(x, W, b=None):
    """:func:`derivations.reference.linear` as a recorded op."""
    return apply(LINEAR, x, W) if b is None else apply(LINEAR, x, W, b)


def relu(x):
    """:func:`derivations.reference.relu` as a recorded op."""
    return apply(RELU, x)


def gelu(x, approximate="none"):
    """:func:`derivations.reference.gelu` as a recorded op."""
    return apply(GELU, x, approximate=approximate)


def layer_norm(x, gamma, beta, eps=1e-5):
    """:func:`derivations.reference.layer_norm` as a recorded op."""
    return apply(LAYER_NORM, x, gamma, beta, eps=eps)


def softmax(x, mask=None):
    """:func:`derivations.reference.softmax` as a recorded op; the mask is not differentiated."""
    return apply(SOFTMAX, x, mask=mask)


def attention(Q, K, V, mask=None):
    """:func:`derivations.reference.attention` as a recorded op."""
    return apply(ATTENTION, Q, K, V, mask=mask)


def multi_head_attention(X, W_q, W_k, W_v, W_o, n_heads, mask=None):
    """:func:`derivations.reference.multi_head_attention` as a recorded op."""
    return apply(MULTI_HEAD_ATTENTION, X, W_q, W_k, W_v, W_o, n_heads=n_heads, mask=mask)


def embedding(tokens, E):
    """:func:`derivations.reference.embedding` as a recorded op; the token ids are not differentiated."""
    return apply(EMBEDDING, E, tokens=tokens)


def cross_entropy(logits, targets):
    """:func:`derivations.reference.cross_entropy` as a recorded op; the targets are not differentiated."""
    return apply(CROSS_ENTROPY, logits, targets=targets)


def lstm_cell(x, h, c, W, b):
    """:func:`derivations.reference.lstm_cell` as a recorded op: returns ``(h_new, c_new)``."""
    return apply(LSTM_CELL, x, h, c, W, b)


def patch_embed(images, W, b, patch):
    """:func:`derivations.reference.patch_embed` as a recorded op."""
    return apply(PATCH_EMBED, images, W, b, patch=patch)


# ----------------------------------------------------------------------------- operator syntax on Var

Var.__add__ = lambda a, b: add(a, b)
Var.__radd__ = lambda a, b: add(b, a)
Var.__sub__ = lambda a, b: sub(a, b)
Var.__rsub__ = lambda a, b: sub(b, a)
Var.__mul__ = lambda a, b: mul(a, b)
Var.__rmul__ = lambda a, b: mul(b, a)
Var.__truediv__ = lambda a, b: div(a, b)
Var.__rtruediv__ = lambda a, b: div(b, a)
Var.__neg__ = lambda a: neg(a)
Var.__matmul__ = lambda a, b: matmul(a, b)
Var.__getitem__ = lambda a, index: getitem(a, index)
Var.sum = lambda a, axis=None, keepdims=False: sum(a, axis, keepdims)
Var.reshape = lambda a, *shape: reshape(a, shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape)
