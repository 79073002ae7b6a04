"""Claims of the whole-transformer chapter: the layers around attention, the loss, the optimiser.

One op per forward equation, as in :mod:`derivations.reference.layers` (``t`` row or token
position, ``a`` feature, ``v`` vocabulary entry). LayerNorm and the head rearrangements
are checked at grid sizes; everything else for all sizes or every real ``x``.
"""

from __future__ import annotations

import sympy as sp

from .notation import (Concat, Phi, Split, a, b, grad, i, k, m, matrix, n, name_tex, phi, size, t, tex_function, v)
from .registry import Claim, Derivation, Op, define
from .chain import arbitrary_function_op

D, delta, sqrt = sp.Derivative, sp.KroneckerDelta, sp.sqrt
odot, ones = sp.HadamardProduct, sp.OneMatrix

# ----------------------------------------------------------------------------- linear

N, d_in, d_out = size("N", "rows"), size("d_in", "input features"), size("d_out", "output features")
X, W, bias, Y = matrix("X", N, d_in), matrix("W", d_in, d_out), matrix("b", 1, d_out), matrix("Y", N, d_out)
dX, dW, dbias, dY = map(grad, (X, W, bias, Y))
linear = Op("linear", defs=(define(Y, X * W + ones(N, 1) * bias),))

# ----------------------------------------------------------------------------- activations

x = sp.Symbol("x", real=True)
c = sp.Symbol("c", real=True)  # the cubic coefficient of the tanh GELU (0.044715); the claim holds for any c
u = tex_function("u")
relu = Op("relu", variables=(x,), domain="real x ≠ 0",
          cases=({x: sp.Symbol("x_pos", positive=True)}, {x: sp.Symbol("x_neg", negative=True)}))
gelu = Op("gelu", variables=(x,))
gelu_tanh = Op("gelu (tanh)", variables=(x, c), functions=((sp.tanh, lambda z: 1 - 2 / (sp.exp(2 * z) + 1)),))
half = sp.Rational(1, 2)
NORMAL = (define(Phi(x), sp.Mul(half, 1 + sp.erf(x / sqrt(2)), evaluate=False)),
          define(phi(x), sp.exp(-x**2 / 2) / sqrt(2 * sp.pi)))
Z_ffn, U = matrix("Z_ffn", N, d_out, tex="Z"), matrix("U", N, d_out)
gelu_entrywise = Op("gelu, entry by entry", defs=(define(U[i, a], Z_ffn[i, a] * Phi(Z_ffn[i, a])),))
TANH_ARGUMENT = (define(u(x), sqrt(2 / sp.pi) * (x + c * x**3)),)
GELU = tex_function(r"\mathrm{GELU}'")
GELU_TANH = tex_function(r"\mathrm{GELU}_{\tanh}'")
gelu_symmetry = Op("gelu derivatives", variables=(x,), functions=(
    (GELU, lambda z: sp.diff(x * (1 + sp.erf(x / sqrt(2))) / 2, x).subs(x, z)),
    (GELU_TANH, lambda z: sp.diff(x / 2 * (1 + sp.tanh(sqrt(2 / sp.pi) * (x + c * x**3))), x).subs(x, z)),
))

# ----------------------------------------------------------------------------- layer norm

d_model = size("D", "features")
xr, gamma, beta, y = (matrix(name, 1, d_model) for name in ("x", "gamma", "beta", "y"))
xhat, g = matrix("xhat", 1, d_model, tex=r"\hat{x}"), matrix("g", 1, d_model)
mu, sigma, eps = sp.Symbol("mu"), sp.Symbol("sigma", positive=True), sp.Symbol("epsilon", positive=True)
dxr, dgamma, dbeta, dy = map(grad, (xr, gamma, beta, y))
layer_norm = Op("layer norm (one row)", defs=(
    define(y[0, a], gamma[0, a] * xhat[0, a] + beta[0, a]),
    define(xhat[0, a], (xr[0, a] - mu) / sigma),
    define(sigma, sqrt(sp.Sum((xr[0, b] - mu) ** 2, (b, 0, d_model - 1)) / d_model + eps)),
    define(mu, sp.Sum(xr[0, b], (b, 0, d_model - 1)) / d_model),
))
# gamma and beta act row by row on the normalised rows: stated with respect to that immediate input.
Xhat, Yr = matrix("Xhat", N, d_model, tex=r"\hat{x}"), matrix("Y_rows", N, d_model, tex="y")
layer_norm_affine = Op("layer norm, scale and shift", defs=(define(Yr[t, a], gamma[0, a] * Xhat[t, a] + beta[0, a]),))

# ----------------------------------------------------------------------------- cross-entropy

C = size("C", "classes")
z, p, P, Z = matrix("z", 1, C), matrix("p", 1, C), matrix("P_rows", N, C, tex="p"), matrix("Z_logits", N, C, tex="z")
target, targets, L = sp.Symbol("y", integer=True, nonnegative=True), sp.IndexedBase("y", integer=True), sp.Symbol("L")
cross_entropy = Op("cross-entropy (one row)", defs=(
    define(L, -sp.log(p[0, target])),
    define(p[0, n], sp.exp(z[0, n]) / sp.Sum(sp.exp(z[0, k]), (k, 0, C - 1))),
))
cross_entropy_mean = Op("cross-entropy (mean over rows)", defs=(
    define(L, -sp.Sum(sp.log(P[i, targets[i]]), (i, 0, N - 1)) / N),
    define(P[i, n], sp.exp(Z[i, n]) / sp.Sum(sp.exp(Z[i, k]), (k, 0, C - 1))),
))

# ----------------------------------------------------------------------------- embedding

T, vocab, d_e = size("T", "tokens"), size("V", "vocabulary entries"), size("d", "features")
E, out, tokens = matrix("E", vocab, d_e), matrix("out", T, d_e, tex=r"\mathrm{out}"), sp.IndexedBase("tokens", integer=True)
name_tex("tokens", r"\mathrm{tokens}")
embedding = Op("embedding", defs=(define(out[t, b], E[tokens[t], b]),))
one_hot, X_0 = matrix("H_onehot", T, vocab, tex="H"), matrix("X_emb", T, d_e, tex="X_{0}")
embedding_one_hot = Op("embedding as a one-hot product", defs=(define(X_0, one_hot * E),))

# ----------------------------------------------------------------------------- residual

n_r = size("n", "components")
xv, f, yv = matrix("x_res", 1, n_r, tex="x"), matrix("f", 1, n_r), matrix("y_res", 1, n_r, tex="y")
residual = arbitrary_function_op("residual", inputs=xv, functions=(f,), derived={yv: lambda xs, F: xs + F[f]},
                                 loss_of=yv, grid={n_r: (1, 2, 3)})

# ----------------------------------------------------------------------------- heads

n_pos, heads, d_h = size("n_pos", "positions"), size("h", "heads"), size("d_h", "head features")
XH, H = matrix("X_heads", n_pos, heads * d_h, tex="X"), matrix("H", heads * n_pos, d_h)
Cat = matrix("C", n_pos, heads * d_h)
HEADS = {n_pos: (1, 2), heads: (1, 2, 3), d_h: (1, 2)}
rearrangements = Op("split and concat", grid=HEADS)
concat = Op("concat", defs=(define(Cat, Concat(H, heads)),), grid=HEADS)
split = Op("split", defs=(define(H, Split(XH, heads)),), grid=HEADS)
d_m, d_p = size("d_model", "model features"), size("d_proj", "projected features")
X_in, W_Q, W_K, W_V = matrix("X_0", N, d_m), matrix("W_Q", d_m, d_p), matrix("W_K", d_m, d_p), matrix("W_V", d_m, d_p)
Q_p, K_p, V_p = matrix("Q", N, d_p), matrix("K", N, d_p), matrix("V", N, d_p)
projections = Op("query, key and value projections", returns=3,
                 defs=(define(Q_p, X_in * W_Q), define(K_p, X_in * W_K), define(V_p, X_in * W_V)))

# ----------------------------------------------------------------------------- Adam

step = sp.Symbol("t", integer=True, positive=True)
beta1, beta2, gr = sp.Symbol("beta_1", positive=True), sp.Symbol("beta_2", positive=True), sp.Symbol("g", real=True)
m_t, v_t = tex_function("m", subscript=True), tex_function("v", subscript=True)
RECURRENCES = {  # the moment updates as printed; solving them is the proof
    m_t: sp.Eq(m_t(step), sp.Add(beta1 * m_t(step - 1), sp.Mul(1 - beta1, gr, evaluate=False), evaluate=False)),
    v_t: sp.Eq(v_t(step), sp.Add(beta2 * v_t(step - 1), sp.Mul(1 - beta2, gr**2, evaluate=False), evaluate=False)),
}
START = {m_t: sp.Eq(m_t(0), 0), v_t: sp.Eq(v_t(0), 0)}


def solved(moment):
    """The moment after ``s`` steps: SymPy's solution of its recurrence, for every step at once."""
    recurrence, start = RECURRENCES[moment], START[moment]
    return lambda s: sp.rsolve(recurrence.lhs - recurrence.rhs, moment(step), {start.lhs: start.rhs}).subs(step, s)


adam = Op("Adam moments", variables=(gr,), domain="step t ≥ 1 and real g",
          functions=((m_t, solved(m_t)), (v_t, solved(v_t))))

# ----------------------------------------------------------------------------- the claims

JACOBIAN = "a Jacobian: the backward pass contracts it with the upstream gradient and never builds it"

CLAIMS = [
    Claim("linear.vjp.dx", "Linear map backward: inputs", linear, dX, dY * W.T, impl="linear_backward:dx"),
    Claim("linear.vjp.dW", "Linear map backward: weights (summed over rows)", linear, dW, X.T * dY,
          impl="linear_backward:dW"),
    Claim("linear.vjp.db", "Linear map backward: bias (column sums)", linear,
          dbias[0, n], sp.Sum(dY[t, n], (t, 0, N - 1)), impl="linear_backward:db"),
    Claim("relu.derivative", "ReLU derivative: the Heaviside step (away from 0)", relu,
          D(sp.Max(x, 0), x), sp.Piecewise((1, x > 0), (0, x < 0)), impl="relu_backward:dx"),
    Claim("gelu.exact-derivative", "Exact GELU derivative", gelu,
          D(x * Phi(x), x), Phi(x) + x * phi(x), where=NORMAL, impl="gelu_backward:dx"),
    Claim("gelu.tanh-derivative", "Derivative of the tanh approximation of GELU", gelu_tanh,
          D(x / 2 * (1 + sp.tanh(u(x))), x),
          sp.Mul(half, 1 + sp.tanh(u(x)), evaluate=False)
          + x / 2 * (1 - sp.tanh(u(x)) ** 2) * sqrt(2 / sp.pi) * (1 + 3 * c * x**2),
          where=TANH_ARGUMENT, impl="gelu_backward:dx (tanh)"),
    Claim("gelu.vjp", "GELU backward, entry by entry", gelu_entrywise,
          grad(Z_ffn), odot(grad(U), Z_ffn.applyfunc(Phi) + odot(Z_ffn, Z_ffn.applyfunc(phi))), where=NORMAL,
          impl="gelu_backward:dx (matrix)"),
    Claim("gelu.derivative-symmetry", "Both GELU derivatives satisfy f'(x) + f'(-x) = 1", gelu_symmetry,
          sp.Tuple(GELU(x) + GELU(-x), GELU_TANH(x) + GELU_TANH(-x)), sp.Tuple(1, 1),
          no_impl="a property of the two derivatives; gelu_derivative_max_difference relies on it"),
    Claim("layernorm.jacobian", "LayerNorm Jacobian (one row)", layer_norm,
          D(y[0, m], xr[0, n]),
          gamma[0, m] / sigma * (delta(m, n) - 1 / d_model - xhat[0, m] * xhat[0, n] / d_model), no_impl=JACOBIAN),
    Claim("layernorm.vjp.dx", "LayerNorm backward: inputs", layer_norm,
          dxr[0, n], (g[0, n] - sp.Sum(g[0, a], (a, 0, d_model - 1)) / d_model
                      - xhat[0, n] * sp.Sum(g[0, a] * xhat[0, a], (a, 0, d_model - 1)) / d_model) / sigma,
          where=(define(g[0, a], gamma[0, a] * dy[0, a]),), impl="layer_norm_backward:dx"),
    Claim("layernorm.vjp.dgamma", "LayerNorm backward: scale (summed over rows)", layer_norm_affine,
          dgamma[0, n], sp.Sum(grad(Yr)[t, n] * Xhat[t, n], (t, 0, N - 1)), impl="layer_norm_backward:dgamma"),
    Claim("layernorm.vjp.dbeta", "LayerNorm backward: shift (summed over rows)", layer_norm_affine,
          dbeta[0, n], sp.Sum(grad(Yr)[t, n], (t, 0, N - 1)), impl="layer_norm_backward:dbeta"),
    Claim("cross-entropy.softmax-gradient", "Cross-entropy of softmax: gradient with respect to the logits",
          cross_entropy, grad(z)[0, n], p[0, n] - delta(target, n), impl="cross_entropy_backward:dlogits (one row)"),
    Claim("cross-entropy.mean-vjp", "Mean cross-entropy over N rows: the gradient is divided by N",
          cross_entropy_mean, grad(Z)[m, n], (P[m, n] - delta(targets[m], n)) / N, impl="cross_entropy_backward:dlogits"),
    Claim("embedding.scatter-add", "Embedding backward: scatter-add of the output gradient", embedding,
          grad(E)[v, n], sp.Sum(delta(tokens[t], v) * grad(out)[t, n], (t, 0, T - 1)), impl="embedding_backward:dE"),
    Claim("embedding.one-hot", "Embedding as a product with a one-hot matrix: the transposed product", embedding_one_hot,
          grad(E), one_hot.T * grad(X_0), impl="embedding_backward:dE (one-hot)"),
    Claim("residual.jacobian", "Residual connection: identity plus the branch Jacobian", residual,
          D(yv[0, m], xv[0, n]), delta(m, n) + D(f[0, m], xv[0, n]),
          no_impl="a sum has no backward function of its own: the model adds the two gradients"),
    Claim("multi-head.split-concat", "Splitting into heads and concatenating them are inverse rearrangements",
          rearrangements, sp.Tuple(Concat(Split(XH, heads), heads), Split(Concat(H, heads), heads)), sp.Tuple(XH, H),
          no_impl="multi_head_attention rearranges with reshapes (_split_heads, _merge_heads), not functions with a backward"),
    Claim("multi-head.concat-vjp", "Backward of concatenating heads: split the gradient", concat,
          grad(H), Split(grad(Cat), heads),
          no_impl="inside multi_head_attention_backward, checked against torch and finite differences as a whole"),
    Claim("multi-head.split-vjp", "Backward of splitting into heads: concatenate the head gradients", split,
          grad(XH), Concat(grad(H), heads),
          no_impl="inside multi_head_attention_backward, checked against torch and finite differences as a whole"),
    Claim("multi-head.input-projections", "One input, three projections: its gradient is the sum of theirs",
          projections, grad(X_in), grad(Q_p) * W_Q.T + grad(K_p) * W_K.T + grad(V_p) * W_V.T,
          no_impl="inside multi_head_attention_backward (dX_q + dX_k + dX_v), checked against torch as a whole"),
    Claim("adam.bias-correction", "Adam's bias correction recovers a constant gradient exactly", adam,
          sp.Tuple(m_t(step) / (1 - beta1**step), v_t(step) / (1 - beta2**step)), sp.Tuple(gr, gr**2),
          given=(*RECURRENCES.values(), *START.values()),
          no_impl="adam_step returns parameters, not moments; tests/test_optim.py checks its first steps"),
]

DERIVATIONS = [
    Derivation("layernorm.jacobian.steps", "LayerNorm Jacobian: the direct term, the mean and the spread", layer_norm, (
        D(y[0, m], xr[0, n]),
        gamma[0, m] * D(xhat[0, m], xr[0, n]),
        gamma[0, m] * ((delta(m, n) - 1 / d_model) / sigma - (xr[0, m] - mu) / sigma**2 * D(sigma, xr[0, n])),
        gamma[0, m] * ((delta(m, n) - 1 / d_model) / sigma - xhat[0, m] * xhat[0, n] / (d_model * sigma)),
        gamma[0, m] / sigma * (delta(m, n) - 1 / d_model - xhat[0, m] * xhat[0, n] / d_model),
    ), concludes="layernorm.jacobian"),
    Derivation("residual.split", "Residual connection backward: the gradient is copied to both paths", residual, (
        grad(xv)[0, n],
        sp.Sum(grad(yv)[0, m] * D(yv[0, m], xv[0, n]), (m, 0, n_r - 1)),
        sp.Sum(grad(yv)[0, m] * (delta(m, n) + D(f[0, m], xv[0, n])), (m, 0, n_r - 1)),
        grad(yv)[0, n] + sp.Sum(grad(yv)[0, m] * D(f[0, m], xv[0, n]), (m, 0, n_r - 1)),
    )),
]
