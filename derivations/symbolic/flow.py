"""Claims of the gradient-flow chapter: chains of Jacobians, the RNN step, the recurrent
product, clipping, and the variances behind the attention scale and weight initialisation.

The variance claims are exact statements about expectations. :func:`expectation` expands a
polynomial into monomials; independence turns the expectation of a monomial into a product
of per-variable moments, and the moments are what the hypotheses say (the same table prints
them) or free symbols where they say nothing, so a result holds for every distribution with
the stated first two moments.
"""

from __future__ import annotations

import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixElement

from .notation import (Contraction, Diag, Distributed, Expect, Independent, Jacobian, Norm, Ordered, Step, Tanh, Var,
                       a, b, grad, i, m, matrix, n, name_tex, size)
from .chain import layer_chain, tanh_recurrence
from .registry import Claim, Derivation, Op, define

odot, ones, sqrt = sp.HadamardProduct, sp.OneMatrix, sp.sqrt

# ----------------------------------------------------------------------------- a chain of layers

width, depth = size("w", "width"), size("D_depth", "layers")
name_tex("D_depth", "D")
l = sp.Symbol("l", integer=True)


def h(index):
    return Step("h", index, 1, width)


def layer_jacobian_entry(index, r, c):
    """``J_l^{rc} = d f_l^r / d h_{l-1}^c``: layer ``l``'s derivative at its own input."""
    return sp.Derivative(Step("f", index, 1, width)[0, r], h(index - 1)[0, c])


chain = layer_chain("chain of layers", width, depth, grid={width: (1, 2, 3), depth: (1, 2, 3)})

# ----------------------------------------------------------------------------- the tanh RNN step

B, d_in, d_h = size("B", "batch rows"), size("d_in", "input features"), size("d_hidden", "hidden features")
x_t, h_prev, h_t, a_t = matrix("x_t", B, d_in), matrix("h_tm1", B, d_h, tex="h_{t-1}"), matrix("h_t", B, d_h), matrix("a_t", B, d_h)
W_xh, W_hh, b_h = matrix("W_xh", d_in, d_h), matrix("W_hh", d_h, d_h), matrix("b", 1, d_h)
rnn_step = Op("tanh RNN step", defs=(
    define(h_t, Tanh(a_t)),
    define(a_t, x_t * W_xh + h_prev * W_hh + ones(B, 1) * b_h),
))

# ----------------------------------------------------------------------------- the recurrent product

steps_T, w_h = size("T_steps", "time steps"), d_h
name_tex("T_steps", "T")
t = sp.Symbol("t", integer=True)
W_rec = matrix("W_hh", w_h, w_h)
dh_0, dh_T = matrix("dh_0", 1, w_h), matrix("dh_T", 1, w_h)
D_t = Step("D", t, w_h, w_h)
D_DEFINITION = Diag(ones(1, w_h) - odot(Step("h", t, 1, w_h), Step("h", t, 1, w_h)))  # D_t = diag(1 - h_t h_t)


bptt = tanh_recurrence("backpropagation through time", steps_T, w_h, t, W_rec, dh_0, dh_T,
                       grid={steps_T: (1, 2, 3), w_h: (1, 2)})

# ----------------------------------------------------------------------------- clipping

n_g = size("n_g", "gradient entries")
gv, gt = matrix("g", 1, n_g), matrix("g_clipped", 1, n_g, tex=r"\tilde{g}")
c_max, guard = sp.Symbol("c_clip", positive=True), sp.Symbol("delta", nonnegative=True)
name_tex("c_clip", "c")
clip = Op("norm clipping", defs=(
    define(gt[0, a], c_max * gv[0, a] / (Norm(gv) + guard)),
    define(Norm(gv), sqrt(sp.Sum(gv[0, b] ** 2, (b, 0, n_g - 1)))),
))

# ----------------------------------------------------------------------------- expectations


def expectation(expr, moments: dict) -> sp.Expr:
    """``E[expr]`` for a polynomial in independent random components.

    ``moments[name][p]`` is ``E[X^p]`` for every component of the matrix named ``name``;
    a power it does not list is a free symbol. Every monomial's expectation is the
    product of its variables' moments (that is what independence means for a
    monomial); constants pass through.
    """
    expr = sp.expand(expr)
    variables = sorted((e for e in expr.atoms(MatrixElement) if e.parent.name in moments), key=str)
    if not variables:
        return expr
    total = sp.Integer(0)
    for powers, coefficient in sp.Poly(expr, *variables).terms():
        term = coefficient
        for variable, power in zip(variables, powers):
            if power:
                name = variable.parent.name
                term *= moments[name].get(power, sp.Symbol(f"mu_{power}_{name}_{variable.i}{variable.j}"))
        total += term
    return sp.expand(total)


def moment_op(name, moments: dict, grid) -> Op:
    """An op whose ``Expect`` is :func:`expectation` under ``moments`` (``Var`` is ``E[x^2] - E[x]^2``)."""
    return Op(name, grid=grid, functions=(
        (Var, lambda e: Expect(e**2) - Expect(e) ** 2),
        (Expect, lambda e: expectation(e, moments)),
    ))


def hypotheses(moments: dict, symbols: dict) -> tuple:
    """The moments as printed hypotheses: ``E[q^a] = 0``, ``E[(q^a)^2] = 1``, ..."""
    return tuple(sp.Eq(Expect(symbols[name][0, a] ** p), value) for name in moments for p, value in moments[name].items())


d_k, n_in = size("d_k", "key features"), size("n_in", "inputs")
name_tex("n_in", r"n_{\text{in}}")
q, k = matrix("q", 1, d_k), matrix("k", 1, d_k)
UNIT = {"q": {1: 0, 2: 1}, "k": {1: 0, 2: 1}}
scores = moment_op("dot product of independent unit pairs", UNIT, grid={d_k: (1, 2, 3, 4, 5, 6)})
xs, ws = matrix("x_in", 1, n_in, tex="x"), matrix("w", 1, n_in, tex="W")
sigma_W, m_2 = sp.Symbol("sigma_W", positive=True), sp.Symbol("m_2", real=True)
name_tex("m_2", r"\mathbb{E}\left[x^{2}\right]")
WEIGHTS = {"w": {1: 0, 2: sigma_W**2}, "x_in": {1: sp.Symbol("m_1", real=True), 2: m_2}}
linear_unit = moment_op("linear unit with independent weights", WEIGHTS, grid={n_in: (1, 2, 3, 4, 5)})
z, sigma = sp.Symbol("z", real=True), sp.Symbol("sigma", positive=True)
gaussian = Distributed(z, 0, sigma**2)
z_neg, z_pos = sp.Symbol("z_neg", negative=True), sp.Symbol("z_pos", positive=True)


def gaussian_expectation(e):
    """``E[e]`` for ``z`` normal: the integral against the density, over each half of the line
    (on each half the sign of ``z`` is known, so max(z, 0) and H(z) are plain functions)."""
    integrand = e * gaussian.density()
    return (sp.integrate(integrand.subs(z, z_neg), (z_neg, -sp.oo, 0))
            + sp.integrate(integrand.subs(z, z_pos), (z_pos, 0, sp.oo)))


relu_gaussian = Op("ReLU of a centred Gaussian", variables=(sigma,), functions=((Expect, gaussian_expectation),))

# ----------------------------------------------------------------------------- the claims

CLAIMS = [
    Claim("chain-rule.jacobian-product", "A chain of layers: its Jacobian is the product of the layers' Jacobians",
          chain, Jacobian(h(depth), h(0)), Ordered(Step("J", l, width, width), l, depth, 1),
          where=(define(Step("J", l, width, width)[m, n], layer_jacobian_entry(l, m, n)),),
          no_impl="a rule of calculus, not an operation"),
    Claim("rnn.step.vjp", "One step of a tanh RNN, backward", rnn_step,
          sp.Tuple(grad(h_prev), grad(x_t), grad(W_hh), grad(W_xh), grad(b_h)[0, n]),
          sp.Tuple(grad(a_t) * W_hh.T, grad(a_t) * W_xh.T, h_prev.T * grad(a_t), x_t.T * grad(a_t),
                   sp.Sum(grad(a_t)[i, n], (i, 0, B - 1))),
          where=(define(grad(a_t), odot(grad(h_t), ones(B, d_h) - odot(h_t, h_t))),), impl="rnn_backward (one step)"),
    Claim("clip.preserves-direction", "Norm clipping keeps the direction and caps the norm", clip,
          sp.Tuple(gt[0, m] * gv[0, n] - gt[0, n] * gv[0, m], sp.Sum(gt[0, a] * gv[0, a], (a, 0, n_g - 1)), Norm(gt) ** 2),
          sp.Tuple(0, c_max * Norm(gv) ** 2 / (Norm(gv) + guard), (c_max * Norm(gv) / (Norm(gv) + guard)) ** 2),
          where=(define(gt[0, a], c_max * gv[0, a] / (Norm(gv) + guard)),),
          no_impl="clip_grad_norm applies this map only above the threshold; tests/test_optim.py checks it"),
    Claim("attention.score-variance", "Dot product of independent zero-mean, unit-variance vectors: mean 0, variance the key width",
          scores, sp.Tuple(Expect(Contraction(q[0, a] * k[0, a], (a, 0, d_k - 1))),
                           Var(Contraction(q[0, a] * k[0, a], (a, 0, d_k - 1)))), sp.Tuple(0, d_k),
          given=(Independent(q[0, a], k[0, a]), *hypotheses(UNIT, {"q": q, "k": k})),
          no_impl="a statement about distributions; tests/test_flow.py samples it"),
    Claim("init.linear-variance", "A linear unit with zero-mean weights: its second moment is fan-in times weight variance times that of an input",
          linear_unit, sp.Tuple(Expect(Contraction(xs[0, a] * ws[0, a], (a, 0, n_in - 1))),
                                Expect(Contraction(xs[0, a] * ws[0, a], (a, 0, n_in - 1)) ** 2)),
          sp.Tuple(0, n_in * sigma_W**2 * m_2),
          given=(Independent(xs[0, a], ws[0, a]), *hypotheses({"w": WEIGHTS["w"]}, {"w": ws})),
          no_impl="a statement about distributions; tests/test_flow.py samples it"),
    Claim("init.relu-halves", "ReLU of a centred Gaussian keeps half the second moment, and passes half the gradient's",
          relu_gaussian, sp.Tuple(Expect(sp.Max(z, 0) ** 2), Expect(sp.Heaviside(z) ** 2)),
          sp.Tuple(sigma**2 / 2, sp.Rational(1, 2)), given=(gaussian,),
          no_impl="a statement about distributions; tests/test_flow.py samples it"),
]

DERIVATIONS = [
    Derivation("rnn.recurrent-product", "Backpropagation through time: one Jacobian per step", bptt, (
        dh_0,
        dh_T * Ordered(Jacobian(Step("h", t, 1, w_h), Step("h", t - 1, 1, w_h)), t, steps_T, 1),
        dh_T * Ordered(D_t * W_rec.T, t, steps_T, 1),
    ), where=(define(D_t, D_DEFINITION),)),
]
