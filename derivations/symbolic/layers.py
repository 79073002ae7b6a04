"""Claims of the whole-transformer chapter: the layers around attention, the loss, the optimiser.

Forward definitions, as in :mod:`derivations.reference.layers` (``t`` token
position, ``a``/``b`` features, ``v`` vocabulary entry)::

    linear      Y^{tb} = X^{ta} W^{ab} + b^{b}
    ReLU, GELU  y = max(x, 0),  y = x Phi(x),  y = x/2 (1 + tanh(sqrt(2/pi) (x + c x^3)))
    LayerNorm   y^{a} = gamma^{a} xhat^{a} + beta^{a},  xhat^{a} = (x^{a} - mu) / sigma,
                sigma = sqrt(mean_a (x^{a} - mu)^2 + eps)
    loss        L = -log softmax(z)^{y}
    embedding   out^{t a} = E^{tokens[t], a}
    residual    y = x + f(x)
    heads       split(X)_k = the columns k d_head ... (k+1) d_head - 1 of X;  concat is its inverse
    Adam        m_t = beta1 m_{t-1} + (1 - beta1) g,  v_t = beta2 v_{t-1} + (1 - beta2) g^2
    clipping    g_clipped = c g / (||g|| + delta)

Sizes are small grids (every dimension reaches at least 3) unless a claim is a
single expression identity in one real variable.
"""

from __future__ import annotations

import sympy as sp

from .registry import Claim, ExprIdentity, VJPIdentity, symbol_matrix

GRID_SMALL = (1, 2, 3)

x = sp.Symbol("x", real=True)
eps = sp.Symbol("epsilon", positive=True)  # LayerNorm's variance floor
beta1, beta2 = sp.symbols("beta_1 beta_2", positive=True)
g = sp.Symbol("g", real=True)


# ----------------------------------------------------------------------------- linear


def linear_shapes(n, d_in, d_out):
    return {"X": (n, d_in), "W": (d_in, d_out), "b": (1, d_out)}


def linear_forward(X, W, b):
    return X * W + sp.ones(X.rows, 1) * b  # the bias row is added to every row


def linear_vjp(G, X, W, b):
    return {"X": G * W.T, "W": X.T * G, "b": sp.ones(1, G.rows) * G}


LINEAR_GRID = {"n": GRID_SMALL, "d_in": GRID_SMALL, "d_out": GRID_SMALL}


# ----------------------------------------------------------------------------- activations

_p, _q = sp.Symbol("x_pos", positive=True), sp.Symbol("x_neg", negative=True)


def relu_derivative_cases():
    """``d/dx max(x, 0)`` at a positive and at a negative ``x``."""
    return sp.Matrix([sp.diff(sp.Max(_p, 0), _p), sp.diff(sp.Max(_q, 0), _q)])


def normal_cdf(z):
    return (1 + sp.erf(z / sp.sqrt(2))) / 2


def normal_pdf(z):
    return sp.exp(-(z**2) / 2) / sp.sqrt(2 * sp.pi)


TANH_CUBIC = sp.Rational(44715, 10**6)  # 0.044715, exact so the identity is exact


def tanh_argument(z):
    return sp.sqrt(2 / sp.pi) * (z + TANH_CUBIC * z**3)


def gelu_exact(z):
    return z * normal_cdf(z)


def gelu_tanh(z):
    return z / 2 * (1 + sp.tanh(tanh_argument(z)))


def gelu_exact_derivative(z):
    """The claimed ``Phi(z) + z phi(z)``."""
    return normal_cdf(z) + z * normal_pdf(z)


def gelu_tanh_derivative(z):
    """The claimed closed form of the tanh approximation's derivative."""
    u = tanh_argument(z)
    return (1 + sp.tanh(u)) / 2 + z / 2 * (1 - sp.tanh(u) ** 2) * sp.sqrt(2 / sp.pi) * (1 + 3 * TANH_CUBIC * z**2)


# ----------------------------------------------------------------------------- layer norm


def layer_norm_row(row):
    """``(xhat, sigma)`` of one row (a list of expressions), biased variance."""
    D = len(row)
    mu = sum(row) / D
    sigma = sp.sqrt(sum((r - mu) ** 2 for r in row) / D + eps)
    return [(r - mu) / sigma for r in row], sigma


def layer_norm_forward(X, gamma, beta):
    out = sp.zeros(*X.shape)
    for r in range(X.rows):
        xhat, _ = layer_norm_row(list(X.row(r)))
        for c in range(X.cols):
            out[r, c] = gamma[c] * xhat[c] + beta[c]
    return out


def layer_norm_jacobian(D):
    """``(actual, claimed)`` Jacobians ``dy^m / dx^n`` of one row of size ``D``."""
    xs = list(symbol_matrix("x", 1, D))
    gamma = list(symbol_matrix("gamma", 1, D))
    xhat, sigma = layer_norm_row(xs)
    actual = sp.Matrix(D, D, lambda m, n: sp.diff(gamma[m] * xhat[m], xs[n]))
    claimed = sp.Matrix(
        D, D, lambda m, n: gamma[m] / sigma * (sp.KroneckerDelta(m, n) - sp.Rational(1, D) - xhat[m] * xhat[n] / D)
    )
    return actual, claimed


def layer_norm_dx(G, X, gamma):
    """The claimed ``dx = (g - mean(g) - xhat mean(g xhat)) / sigma`` row by row, ``g = G * gamma``."""
    out = sp.zeros(*X.shape)
    D = X.cols
    for r in range(X.rows):
        xhat, sigma = layer_norm_row(list(X.row(r)))
        gs = [G[r, c] * gamma[c] for c in range(D)]
        mean_g = sum(gs) / D
        mean_g_xhat = sum(gs[c] * xhat[c] for c in range(D)) / D
        for c in range(D):
            out[r, c] = (gs[c] - mean_g - xhat[c] * mean_g_xhat) / sigma
    return out


def layer_norm_xhat(X):
    return sp.Matrix([layer_norm_row(list(X.row(r)))[0] for r in range(X.rows)])


def layer_norm_shapes(n, D):
    return {"X": (n, D), "gamma": (1, D), "beta": (1, D)}


LAYER_NORM_GRID = {"n": GRID_SMALL, "D": GRID_SMALL}


# ----------------------------------------------------------------------------- cross-entropy


def softmax_vector(z):
    total = sum(sp.exp(zk) for zk in z)
    return [sp.exp(zk) / total for zk in z]


def cross_entropy_gradients(C):
    """Row ``y`` holds ``d/dz^n of -log softmax(z)^y``, for every target ``y`` in ``0..C-1``."""
    z = list(symbol_matrix("z", 1, C))
    p = softmax_vector(z)
    return sp.Matrix(C, C, lambda y, n: sp.diff(-sp.log(p[y]), z[n]))


def cross_entropy_claimed(C):
    """Row ``y`` holds ``p - onehot(y)``."""
    p = softmax_vector(list(symbol_matrix("z", 1, C)))
    return sp.Matrix(C, C, lambda y, n: p[n] - sp.KroneckerDelta(y, n))


def cross_entropy_targets(N, C):
    """A fixed target per row; at ``N = C = 3`` they are ``1, 0, 2``, at ``C = 2`` all ``1``."""
    return [(2 * i + 1) % C for i in range(N)]


def cross_entropy_mean(Z):
    """``1x1`` matrix of the mean loss over the rows of ``Z``, targets from :func:`cross_entropy_targets`."""
    targets = cross_entropy_targets(*Z.shape)
    rows = [softmax_vector(list(Z.row(i))) for i in range(Z.rows)]
    return sp.Matrix([[-sum(sp.log(rows[i][t]) for i, t in enumerate(targets)) / Z.rows]])


def cross_entropy_mean_vjp(G, Z):
    N, C = Z.shape
    targets = cross_entropy_targets(N, C)
    P = sp.Matrix([softmax_vector(list(Z.row(i))) for i in range(N)])
    onehot = sp.Matrix(N, C, lambda i, c: 1 if c == targets[i] else 0)
    return {"Z": G[0, 0] * (P - onehot) / N}


# ----------------------------------------------------------------------------- embedding


def embedding_tokens(T, vocab):
    """A token sequence with repeats (at ``T = 4, vocab = 3``: ``0, 2, 1, 0``); some rows may be unused."""
    return [(2 * t) % vocab for t in range(T)]


def vjp(out, X, G):
    """``d/dX sum(G * out)`` entry by entry: the actual VJP, for forwards that need more than their inputs."""
    loss = sum((G[k] * out[k] for k in range(len(out))), sp.Integer(0))
    return sp.Matrix(X.rows, X.cols, lambda r, c: sp.diff(loss, X[r, c]))


def embedding_gradients(T, vocab, d):
    """``(actual, claimed)`` ``dE`` for the lookup ``out^{t} = E^{tokens[t]}``."""
    E, G = symbol_matrix("E", vocab, d), symbol_matrix("G", T, d)
    tokens = embedding_tokens(T, vocab)
    out = sp.Matrix([list(E.row(v)) for v in tokens])
    onehot = sp.Matrix(T, vocab, lambda t, v: 1 if tokens[t] == v else 0)
    return vjp(out, E, G), onehot.T * G  # onehot^T G adds row t of G into row tokens[t]


# ----------------------------------------------------------------------------- residual


def residual_jacobians(n):
    """``(actual, claimed)`` for ``y = x + f(x)`` with ``f`` an undefined vector function."""
    xs = sp.symbols(f"x0:{n}", real=True)
    f = [sp.Function(f"f{r}")(*xs) for r in range(n)]
    actual = sp.Matrix([xs[r] + f[r] for r in range(n)]).jacobian(xs)
    claimed = sp.eye(n) + sp.Matrix(n, n, lambda r, c: sp.Derivative(f[r], xs[c]))
    return actual, claimed


# ----------------------------------------------------------------------------- heads


def split_heads(X, n_heads):
    """``[n, h d_head] -> [h n, d_head]``: head ``k`` (columns ``k d_head ...``) becomes row block ``k``."""
    d_head = X.cols // n_heads
    return sp.Matrix.vstack(*(X[:, k * d_head : (k + 1) * d_head] for k in range(n_heads)))


def concat_heads(H, n_heads):
    """``[h n, d_head] -> [n, h d_head]``: the inverse of :func:`split_heads`."""
    n = H.rows // n_heads
    return sp.Matrix.hstack(*(H[k * n : (k + 1) * n, :] for k in range(n_heads)))


HEADS_GRID = {"n": GRID_SMALL, "n_heads": GRID_SMALL, "d_head": GRID_SMALL}


def split_concat_roundtrip(n, n_heads, d_head):
    """Both round trips, stacked: ``concat(split(X))`` and ``split(concat(H))``."""
    X = symbol_matrix("X", n, n_heads * d_head)
    H = symbol_matrix("H", n_heads * n, d_head)
    return sp.Matrix.vstack(concat_heads(split_heads(X, n_heads), n_heads).reshape(n * n_heads * d_head, 1),
                            split_heads(concat_heads(H, n_heads), n_heads).reshape(n * n_heads * d_head, 1))


def split_concat_identity(n, n_heads, d_head):
    X = symbol_matrix("X", n, n_heads * d_head)
    H = symbol_matrix("H", n_heads * n, d_head)
    return sp.Matrix.vstack(X.reshape(n * n_heads * d_head, 1), H.reshape(n * n_heads * d_head, 1))


def split_gradients(n, n_heads, d_head):
    """``(actual, claimed)`` ``dX`` for ``H = split(X)``: the claimed one concatenates the head gradients."""
    X, G = symbol_matrix("X", n, n_heads * d_head), symbol_matrix("G", n_heads * n, d_head)
    return vjp(split_heads(X, n_heads), X, G), concat_heads(G, n_heads)


def head_names(n_heads):
    return [f"H{k}" for k in range(n_heads)]


def concat_vjp(G, **heads):
    """``dH_k = dC[:, k d_head : (k+1) d_head]``: the gradient of a concatenation is slicing."""
    d_head = next(iter(heads.values())).cols
    return {name: G[:, k * d_head : (k + 1) * d_head] for k, name in enumerate(heads)}


# ----------------------------------------------------------------------------- optimiser


def adam_corrected_moments(t):
    """``[m_t / (1 - beta1^t), v_t / (1 - beta2^t)]`` after ``t`` steps of the constant gradient ``g``."""
    m = v = sp.Integer(0)
    for _ in range(t):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
    return sp.Matrix([m / (1 - beta1**t), v / (1 - beta2**t)])


max_norm, guard = sp.Symbol("c", positive=True), sp.Symbol("delta", nonnegative=True)


def clip_facts(n):
    """For ``g_c = c g / (||g|| + delta)``: cross products ``g_c^m g^n - g_c^n g^m``, ``g_c . g``, ``||g_c||^2``."""
    gs = list(symbol_matrix("g", 1, n))
    norm = sp.sqrt(sum(gi**2 for gi in gs))
    clipped = [max_norm / (norm + guard) * gi for gi in gs]
    cross = [clipped[r] * gs[c] - clipped[c] * gs[r] for r in range(n) for c in range(r + 1, n)]
    dot = sum(ci * gi for ci, gi in zip(clipped, gs))
    return sp.Matrix([*cross, dot, sum(ci**2 for ci in clipped)]), norm


def clip_claimed(n):
    norm = sp.sqrt(sum(gi**2 for gi in symbol_matrix("g", 1, n)))
    pairs = n * (n - 1) // 2
    return sp.Matrix([*([0] * pairs), max_norm * norm**2 / (norm + guard), (max_norm * norm / (norm + guard)) ** 2])


# ----------------------------------------------------------------------------- the claims

CLAIMS = [
    Claim(
        id="linear.vjp.dx",
        title="Linear map backward: inputs",
        latex=r"\frac{\partial L}{\partial X} = \frac{\partial L}{\partial Y}\,W^{\top}",
        check=VJPIdentity(
            shapes=linear_shapes,
            forward=linear_forward,
            claimed=lambda G, X, W, b: {"X": linear_vjp(G, X, W, b)["X"]},
            grid=LINEAR_GRID,
        ),
    ),
    Claim(
        id="linear.vjp.dW",
        title="Linear map backward: weights (summed over rows)",
        latex=r"\frac{\partial L}{\partial W} = X^{\top}\,\frac{\partial L}{\partial Y}",
        check=VJPIdentity(
            shapes=linear_shapes,
            forward=linear_forward,
            claimed=lambda G, X, W, b: {"W": linear_vjp(G, X, W, b)["W"]},
            grid=LINEAR_GRID,
        ),
    ),
    Claim(
        id="linear.vjp.db",
        title="Linear map backward: bias (column sums)",
        latex=r"\frac{\partial L}{\partial b^{n}} = \sum_{t} \frac{\partial L}{\partial Y^{tn}}",
        check=VJPIdentity(
            shapes=linear_shapes,
            forward=linear_forward,
            claimed=lambda G, X, W, b: {"b": linear_vjp(G, X, W, b)["b"]},
            grid=LINEAR_GRID,
        ),
    ),
    Claim(
        id="relu.derivative",
        title="ReLU derivative: the Heaviside step (away from 0)",
        latex=r"\frac{d}{dx}\max(x, 0) = H(x) = \begin{cases} 1 & x > 0 \\ 0 & x < 0 \end{cases}",
        check=ExprIdentity(
            actual=relu_derivative_cases,
            claimed=lambda: sp.Matrix([sp.Heaviside(_p), sp.Heaviside(_q)]),
            note="x > 0 and x < 0 (at 0 the code uses 0, as PyTorch)",
        ),
    ),
    Claim(
        id="gelu.exact-derivative",
        title="Exact GELU derivative",
        latex=(
            r"\frac{d}{dx}\big(x\,\Phi(x)\big) = \Phi(x) + x\,\varphi(x),\qquad"
            r"\Phi(x) = \tfrac{1}{2}\big(1 + \operatorname{erf}(x/\sqrt{2})\big),\ "
            r"\varphi(x) = \tfrac{1}{\sqrt{2\pi}}\,e^{-x^{2}/2}"
        ),
        check=ExprIdentity(
            actual=lambda: sp.diff(gelu_exact(x), x),
            claimed=lambda: gelu_exact_derivative(x),
            note="every real x",
        ),
    ),
    Claim(
        id="gelu.tanh-derivative",
        title="Derivative of the tanh approximation of GELU",
        latex=(
            r"\frac{d}{dx}\,\tfrac{x}{2}\big(1 + \tanh u\big) = \tfrac{1}{2}\big(1 + \tanh u\big)"
            r" + \tfrac{x}{2}\,\big(1 - \tanh^{2} u\big)\sqrt{\tfrac{2}{\pi}}\,\big(1 + 3c\,x^{2}\big),\qquad"
            r" u = \sqrt{\tfrac{2}{\pi}}\,\big(x + c\,x^{3}\big),\ c = 0.044715"
        ),
        check=ExprIdentity(
            # Both sides in exponentials (an exact rewrite of tanh): the verifier's exp-aware
            # cancellation then decides the identity, and rejects a wrong one quickly. A variant
            # that replaces ``claimed`` must rewrite it too: SymPy's simplify stalls on a tanh/exp mix.
            actual=lambda: sp.diff(gelu_tanh(x), x).rewrite(sp.exp),
            claimed=lambda: gelu_tanh_derivative(x).rewrite(sp.exp),
            note="every real x",
        ),
    ),
    Claim(
        id="gelu.derivative-symmetry",
        title="Both GELU derivatives satisfy f'(x) + f'(-x) = 1, so their difference is odd",
        latex=(
            r"\mathrm{GELU}'(x) + \mathrm{GELU}'(-x) = 1 = \mathrm{GELU}_{\tanh}'(x) + \mathrm{GELU}_{\tanh}'(-x)"
        ),
        check=ExprIdentity(
            actual=lambda: sp.Matrix(
                [
                    sp.diff(gelu_exact(x), x) + sp.diff(gelu_exact(x), x).subs(x, -x),
                    sp.diff(gelu_tanh(x), x) + sp.diff(gelu_tanh(x), x).subs(x, -x),
                ]
            ),
            claimed=lambda: sp.Matrix([1, 1]),
            note="every real x",
        ),
    ),
    Claim(
        id="layernorm.jacobian",
        title="LayerNorm Jacobian (one row)",
        latex=(
            r"\frac{\partial y^{m}}{\partial x^{n}} = \frac{\gamma^{m}}{\sigma}\Big(\delta^{m}_{n} - \frac{1}{D}"
            r" - \frac{\hat{x}^{m}\hat{x}^{n}}{D}\Big),\qquad \sigma = \sqrt{\operatorname{var}(x) + \epsilon}"
        ),
        check=ExprIdentity(
            actual=lambda D: layer_norm_jacobian(D)[0],
            claimed=lambda D: layer_norm_jacobian(D)[1],
            grid={"D": (1, 2, 3, 4)},
        ),
    ),
    Claim(
        id="layernorm.vjp.dx",
        title="LayerNorm backward: inputs",
        latex=(
            r"\frac{\partial L}{\partial x^{n}} = \frac{1}{\sigma}\Big(g^{n} - \frac{1}{D}\sum_{a} g^{a}"
            r" - \hat{x}^{n}\,\frac{1}{D}\sum_{a} g^{a}\hat{x}^{a}\Big),\qquad"
            r" g^{a} = \gamma^{a}\,\frac{\partial L}{\partial y^{a}}"
        ),
        check=VJPIdentity(
            shapes=layer_norm_shapes,
            forward=layer_norm_forward,
            claimed=lambda G, X, gamma, beta: {"X": layer_norm_dx(G, X, gamma)},
            grid=LAYER_NORM_GRID,
        ),
    ),
    Claim(
        id="layernorm.vjp.dgamma",
        title="LayerNorm backward: scale (summed over rows)",
        latex=r"\frac{\partial L}{\partial \gamma^{n}} = \sum_{t} \frac{\partial L}{\partial y^{tn}}\,\hat{x}^{tn}",
        check=VJPIdentity(
            shapes=layer_norm_shapes,
            forward=layer_norm_forward,
            claimed=lambda G, X, gamma, beta: {
                "gamma": sp.ones(1, X.rows) * G.multiply_elementwise(layer_norm_xhat(X))
            },
            grid=LAYER_NORM_GRID,
        ),
    ),
    Claim(
        id="layernorm.vjp.dbeta",
        title="LayerNorm backward: shift (summed over rows)",
        latex=r"\frac{\partial L}{\partial \beta^{n}} = \sum_{t} \frac{\partial L}{\partial y^{tn}}",
        check=VJPIdentity(
            shapes=layer_norm_shapes,
            forward=layer_norm_forward,
            claimed=lambda G, X, gamma, beta: {"beta": sp.ones(1, X.rows) * G},
            grid=LAYER_NORM_GRID,
        ),
    ),
    Claim(
        id="cross-entropy.softmax-gradient",
        title="Cross-entropy of softmax: gradient with respect to the logits, every target",
        latex=r"\frac{\partial}{\partial z^{n}}\Big(-\log \operatorname{softmax}(z)^{y}\Big) = p^{n} - \delta^{y}_{n}",
        check=ExprIdentity(
            actual=cross_entropy_gradients,
            claimed=cross_entropy_claimed,
            grid={"C": (1, 2, 3, 4)},
        ),
    ),
    Claim(
        id="cross-entropy.mean-vjp",
        title="Mean cross-entropy over N rows: the gradient is divided by N",
        latex=(
            r"L = -\frac{1}{N}\sum_{i}\log p^{i y_i}\ \Rightarrow\ "
            r"\frac{\partial L}{\partial z^{mn}} = \frac{1}{N}\big(p^{mn} - \delta^{y_m}_{n}\big)"
        ),
        check=VJPIdentity(
            shapes=lambda N, C: {"Z": (N, C)},
            forward=cross_entropy_mean,
            claimed=cross_entropy_mean_vjp,
            grid={"N": GRID_SMALL, "C": GRID_SMALL},
        ),
    ),
    Claim(
        id="embedding.scatter-add",
        title="Embedding backward: scatter-add of the output gradient",
        latex=(
            r"\frac{\partial L}{\partial E^{vb}} = \sum_{t\,:\,\mathrm{tokens}^{t} = v}"
            r" \frac{\partial L}{\partial \mathrm{out}^{tb}}"
        ),
        check=ExprIdentity(
            actual=lambda T, vocab, d: embedding_gradients(T, vocab, d)[0],
            claimed=lambda T, vocab, d: embedding_gradients(T, vocab, d)[1],
            grid={"T": (1, 2, 3, 4), "vocab": GRID_SMALL, "d": GRID_SMALL},
        ),
    ),
    Claim(
        id="residual.jacobian",
        title="Residual connection: identity plus the branch Jacobian",
        latex=(
            r"y = x + f(x)\ \Rightarrow\ "
            r"\frac{\partial y^{m}}{\partial x^{n}} = \delta^{m}_{n} + \frac{\partial f^{m}}{\partial x^{n}}"
        ),
        check=ExprIdentity(
            actual=lambda n: residual_jacobians(n)[0],
            claimed=lambda n: residual_jacobians(n)[1],
            grid={"n": GRID_SMALL},
        ),
    ),
    Claim(
        id="multi-head.split-concat",
        title="Splitting into heads and concatenating them are inverse rearrangements",
        latex=(
            r"\operatorname{concat}\big(\operatorname{split}(X)\big) = X,\quad"
            r"\operatorname{split}\big(\operatorname{concat}(H_0, \dots, H_{h-1})\big) = (H_0, \dots, H_{h-1}),"
            r"\quad \operatorname{split}(X)_k = X^{\,\cdot,\ k d_h : (k+1) d_h}"
        ),
        check=ExprIdentity(
            actual=split_concat_roundtrip,
            claimed=split_concat_identity,
            grid=HEADS_GRID,
        ),
    ),
    Claim(
        id="multi-head.concat-vjp",
        title="Backward of concatenating heads: slice the gradient",
        latex=(
            r"C = \operatorname{concat}(H_0, \dots, H_{h-1})\ \Rightarrow\ "
            r"\frac{\partial L}{\partial H_k} = \Big(\frac{\partial L}{\partial C}\Big)^{\cdot,\ k d_h : (k+1) d_h}"
        ),
        check=VJPIdentity(
            shapes=lambda n, n_heads, d_head: {name: (n, d_head) for name in head_names(n_heads)},
            forward=lambda **heads: sp.Matrix.hstack(*heads.values()),
            claimed=concat_vjp,
            grid=HEADS_GRID,
        ),
    ),
    Claim(
        id="multi-head.split-vjp",
        title="Backward of splitting into heads: concatenate the head gradients",
        latex=(
            r"H_k = \operatorname{split}(X)_k\ \Rightarrow\ "
            r"\frac{\partial L}{\partial X} = \operatorname{concat}\Big(\frac{\partial L}{\partial H_0}, \dots,"
            r" \frac{\partial L}{\partial H_{h-1}}\Big)"
        ),
        check=ExprIdentity(
            actual=lambda n, n_heads, d_head: split_gradients(n, n_heads, d_head)[0],
            claimed=lambda n, n_heads, d_head: split_gradients(n, n_heads, d_head)[1],
            grid=HEADS_GRID,
        ),
    ),
    Claim(
        id="adam.bias-correction",
        title="Adam's bias correction recovers a constant gradient exactly",
        latex=(
            r"m_t = \beta_1 m_{t-1} + (1-\beta_1)\,g,\ v_t = \beta_2 v_{t-1} + (1-\beta_2)\,g^{2},\ m_0 = v_0 = 0"
            r"\ \Rightarrow\ \frac{m_t}{1-\beta_1^{t}} = g,\ \frac{v_t}{1-\beta_2^{t}} = g^{2}"
        ),
        check=ExprIdentity(
            actual=adam_corrected_moments,
            claimed=lambda t: sp.Matrix([g, g**2]),
            grid={"t": (1, 2, 3, 4, 5)},
        ),
    ),
    Claim(
        id="clip.preserves-direction",
        title="Norm clipping keeps the direction and caps the norm",
        latex=(
            r"\tilde{g} = \frac{c}{\lVert g\rVert + \delta}\,g\ \Rightarrow\ "
            r"\tilde{g}^{m} g^{n} = \tilde{g}^{n} g^{m},\ "
            r"\tilde{g}\cdot g = \frac{c\,\lVert g\rVert^{2}}{\lVert g\rVert + \delta} \ge 0,\ "
            r"\lVert\tilde{g}\rVert = \frac{c\,\lVert g\rVert}{\lVert g\rVert + \delta} \le c"
        ),
        check=ExprIdentity(
            actual=lambda n: clip_facts(n)[0],
            claimed=clip_claimed,
            grid={"n": GRID_SMALL},
        ),
    ),
]
