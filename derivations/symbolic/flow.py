"""Claims of the gradient-flow chapter: chains of Jacobians, the RNN step, and the variances
behind the attention scale and weight initialisation.

Forward definitions (row vectors, as in :mod:`derivations.reference`)::

    chain        h_l = f_l(h_{l-1}),  l = 1 ... depth
    RNN step     a = x W_xh + h_prev W_hh + b,   h = tanh(a)
    dot product  s = q^a k^a  (summed over the d_k features)
    linear unit  y = x^a W^a  (summed over the n_in inputs)

The variance claims are exact statements about expectations. They are proven
with an explicit expectation operator (:func:`expectation`): the quantity is
expanded into monomials, independence turns the expectation of a monomial into
a product of per-variable moments, and the moments are what the assumptions
say (mean 0, variance 1, ...) or free symbols where the assumptions say
nothing. A result that holds with free higher moments holds for every
distribution with the stated first two moments.
"""

from __future__ import annotations

import sympy as sp

from .registry import Claim, ExprIdentity, VJPIdentity

# ----------------------------------------------------------------------------- chain of Jacobians


def chain_jacobians(n: int, depth: int):
    """``(actual, claimed)`` Jacobians of ``f_depth(... f_1(x))`` with undefined vector functions ``f_l``.

    The claimed one is the product ``J_depth ... J_1``, each ``J_l`` evaluated at
    the layer's own input ``h_{l-1}``, the last layer's on the left.
    """
    xs = sp.symbols(f"x0:{n}", real=True)
    ys = sp.symbols(f"y0:{n}", real=True)  # placeholder argument of one layer
    layers = [[sp.Function(f"f{l}_{r}") for r in range(n)] for l in range(depth)]
    hs = [list(xs)]
    for layer in layers:
        hs.append([f(*hs[-1]) for f in layer])
    actual = sp.Matrix(hs[-1]).jacobian(xs)
    claimed = sp.eye(n)
    for l, layer in enumerate(layers):
        at_input = dict(zip(ys, hs[l]))
        J = sp.Matrix(n, n, lambda r, c: sp.diff(layer[r](*ys), ys[c]).subs(at_input))
        claimed = J * claimed
    return actual, claimed


# ----------------------------------------------------------------------------- the tanh RNN step


def rnn_step_shapes(n, d_in, d_h):
    return {"x": (n, d_in), "h": (n, d_h), "W_xh": (d_in, d_h), "W_hh": (d_h, d_h), "b": (1, d_h)}


def rnn_step_forward(x, h, W_xh, W_hh, b):
    """``tanh(x W_xh + h W_hh + b)`` entrywise, the bias row added to every row."""
    return (x * W_xh + h * W_hh + sp.ones(x.rows, 1) * b).applyfunc(sp.tanh)


def rnn_step_vjp(G, x, h, W_xh, W_hh, b):
    """The claimed backward of one step: ``da = G * (1 - h_new^2)``, then the linear map's rules."""
    h_new = rnn_step_forward(x, h, W_xh, W_hh, b)
    da = G.multiply_elementwise(h_new.applyfunc(lambda v: 1 - v**2))
    return {"x": da * W_xh.T, "h": da * W_hh.T, "W_xh": x.T * da, "W_hh": h.T * da, "b": sp.ones(1, da.rows) * da}


# ----------------------------------------------------------------------------- expectations


def expectation(expr, moments) -> sp.Expr:
    """``E[expr]`` for a polynomial in independent random symbols.

    ``moments(symbol, power)`` gives ``E[symbol**power]`` for ``power >= 1``.
    Every monomial's expectation is the product of its variables' moments
    (that is what independence means for a monomial); constants pass through.
    """
    expr = sp.expand(expr)
    variables = sorted(_random_symbols(expr, moments), key=str)
    if not variables:
        return expr
    total = sp.Integer(0)
    for powers, coeff in sp.Poly(expr, *variables).terms():
        term = coeff
        for variable, power in zip(variables, powers):
            if power:
                term *= moments(variable, power)
        total += term
    return sp.expand(total)


def _random_symbols(expr, moments):
    """The symbols of ``expr`` that ``moments`` knows (it returns ``None`` for the others)."""
    return [s for s in expr.free_symbols if moments(s, 1) is not None]


def _unit_moments(symbol, power):
    """Mean 0, variance 1, higher moments free: ``E[z^p] = mu_{p, z}`` for ``p >= 3``."""
    if not symbol.name.startswith(("q", "k")):
        return None
    return {1: sp.Integer(0), 2: sp.Integer(1)}.get(power, sp.Symbol(f"mu_{power}_{symbol.name}"))


def score_moments(d_k: int) -> sp.Matrix:
    """``[E[s], Var(s)]`` of ``s = q . k`` for ``d_k`` independent unit-variance, zero-mean pairs."""
    q = sp.symbols(f"q0:{d_k}", real=True)
    k = sp.symbols(f"k0:{d_k}", real=True)
    s = sum(qa * ka for qa, ka in zip(q, k))
    mean = expectation(s, _unit_moments)
    return sp.Matrix([mean, expectation(s**2, _unit_moments) - mean**2])


sigma_W = sp.Symbol("sigma_W", positive=True)  # standard deviation of every weight
m_1, m_2 = sp.symbols("m_1 m_2", real=True)  # E[x], E[x^2] of every input: no assumption


def _linear_moments(symbol, power):
    """Weights ``w``: mean 0, variance ``sigma_W^2``. Inputs ``x``: mean ``m_1``, second moment ``m_2``."""
    name = symbol.name
    if name.startswith("w"):
        return {1: sp.Integer(0), 2: sigma_W**2}.get(power, sp.Symbol(f"nu_{power}_{name}"))
    if name.startswith("x"):
        return {1: m_1, 2: m_2}.get(power, sp.Symbol(f"mu_{power}_{name}"))
    return None


def linear_unit_moments(n_in: int) -> sp.Matrix:
    """``[E[y], E[y^2]]`` of ``y = sum_a x^a w^a``, every ``x^a`` and ``w^a`` independent."""
    x = sp.symbols(f"x0:{n_in}", real=True)
    w = sp.symbols(f"w0:{n_in}", real=True)
    y = sum(xa * wa for xa, wa in zip(x, w))
    return sp.Matrix([expectation(y, _linear_moments), expectation(y**2, _linear_moments)])


z = sp.Symbol("z", real=True)
sigma = sp.Symbol("sigma", positive=True)


def relu_gaussian_moments() -> sp.Matrix:
    """``[E[max(z, 0)^2], E[H(z)^2]]`` for ``z ~ N(0, sigma^2)``, by integrating against the density."""
    density = sp.exp(-(z**2) / (2 * sigma**2)) / (sigma * sp.sqrt(2 * sp.pi))
    return sp.Matrix([
        sp.integrate(sp.Max(z, 0) ** 2 * density, (z, -sp.oo, sp.oo)),
        sp.integrate(sp.Heaviside(z) ** 2 * density, (z, -sp.oo, sp.oo)),
    ])


# ----------------------------------------------------------------------------- the claims

CLAIMS = [
    Claim(
        id="chain-rule.jacobian-product",
        title="A chain of layers: its Jacobian is the product of the layers' Jacobians",
        latex=(
            r"h_{l} = f_{l}(h_{l-1})\ \Rightarrow\ "
            r"\frac{\partial h_{D}}{\partial h_{0}} = J_{D}\,J_{D-1} \cdots J_{1},\qquad"
            r" J_{l}^{mn} = \frac{\partial f_{l}^{m}}{\partial h_{l-1}^{n}}\Big|_{h_{l-1}}"
        ),
        check=ExprIdentity(
            actual=lambda n, depth: chain_jacobians(n, depth)[0],
            claimed=lambda n, depth: chain_jacobians(n, depth)[1],
            grid={"n": (1, 2, 3), "depth": (1, 2, 3)},
        ),
    ),
    Claim(
        id="rnn.step.vjp",
        title="One step of a tanh RNN, backward",
        latex=(
            r"h_{t} = \tanh\big(x_{t} W_{xh} + h_{t-1} W_{hh} + b\big)\ \Rightarrow\ "
            r"\frac{\partial L}{\partial a_{t}} = \frac{\partial L}{\partial h_{t}} \odot \big(1 - h_{t} \odot h_{t}\big),\ "
            r"\frac{\partial L}{\partial h_{t-1}} = \frac{\partial L}{\partial a_{t}}\,W_{hh}^{\top},\ "
            r"\frac{\partial L}{\partial x_{t}} = \frac{\partial L}{\partial a_{t}}\,W_{xh}^{\top},\ "
            r"\frac{\partial L}{\partial W_{hh}} = h_{t-1}^{\top}\,\frac{\partial L}{\partial a_{t}},\ "
            r"\frac{\partial L}{\partial W_{xh}} = x_{t}^{\top}\,\frac{\partial L}{\partial a_{t}},\ "
            r"\frac{\partial L}{\partial b^{n}} = \sum_{r} \frac{\partial L}{\partial a_{t}^{rn}}"
        ),
        check=VJPIdentity(
            shapes=rnn_step_shapes,
            forward=rnn_step_forward,
            claimed=rnn_step_vjp,
            grid={"n": (1, 2), "d_in": (1, 2, 3), "d_h": (1, 2, 3)},
        ),
    ),
    Claim(
        id="attention.score-variance",
        title="Dot product of independent zero-mean, unit-variance vectors: mean 0, variance d_k",
        latex=(
            r"q^{a}, k^{a}\ \text{independent},\ \mathbb{E}[q^{a}] = \mathbb{E}[k^{a}] = 0,\ "
            r"\mathbb{E}[(q^{a})^{2}] = \mathbb{E}[(k^{a})^{2}] = 1\ \Rightarrow\ "
            r"\mathbb{E}[q^{a}k^{a}] = 0,\ \operatorname{Var}(q^{a}k^{a}) = d_k"
        ),
        check=ExprIdentity(
            actual=score_moments,
            claimed=lambda d_k: sp.Matrix([0, d_k]),
            grid={"d_k": (1, 2, 3, 4, 5, 6)},
        ),
    ),
    Claim(
        id="init.linear-variance",
        title="A linear unit with zero-mean weights: the second moment is n_in times sigma_W^2 times E[x^2]",
        latex=(
            r"y = x^{a} W^{a},\ x^{a}, W^{a}\ \text{independent},\ \mathbb{E}[W^{a}] = 0,\ "
            r"\mathbb{E}[(W^{a})^{2}] = \sigma_W^{2}\ \Rightarrow\ "
            r"\mathbb{E}[y] = 0,\ \mathbb{E}[y^{2}] = n_{\text{in}}\,\sigma_W^{2}\,\mathbb{E}[x^{2}]"
        ),
        check=ExprIdentity(
            actual=linear_unit_moments,
            claimed=lambda n_in: sp.Matrix([0, n_in * sigma_W**2 * m_2]),
            grid={"n_in": (1, 2, 3, 4, 5)},
        ),
    ),
    Claim(
        id="init.relu-halves",
        title="ReLU of a centred Gaussian keeps half the second moment, and passes half the gradient's",
        latex=(
            r"z \sim \mathcal{N}(0, \sigma^{2})\ \Rightarrow\ "
            r"\mathbb{E}\big[\max(z, 0)^{2}\big] = \tfrac{1}{2}\,\sigma^{2},\ "
            r"\mathbb{E}\big[H(z)^{2}\big] = \tfrac{1}{2}"
        ),
        check=ExprIdentity(
            actual=relu_gaussian_moments,
            claimed=lambda: sp.Matrix([sigma**2 / 2, sp.Rational(1, 2)]),
            note="every sigma > 0 (integrated against the normal density)",
        ),
    ),
]
