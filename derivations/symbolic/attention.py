"""Claims of the attention chapter: chain rule, scores, softmax, output, full VJP, masking.

Forward pass (``i`` query, ``j``/``k`` key, ``a`` key feature, ``b`` value feature)::

    S^{ij} = Q^{ia} K^{ja} / sqrt(d_k)      A^{ij} = softmax_j(S^{ij})      O^{ib} = A^{ij} V^{jb}
"""

from __future__ import annotations

import sympy as sp

from .registry import Claim, ExprIdentity, IndexIdentity, VJPIdentity, symbol_matrix

# ----------------------------------------------------------------------------- symbols

n_q, n_k, d_k, d_v = sp.symbols("n_q n_k d_k d_v", integer=True, positive=True)
i, j, k, m, n, a, b = sp.symbols("i j k m n a b", integer=True, nonnegative=True)
Q, K, V, S, A = (sp.IndexedBase(name) for name in "QKVSA")

GRID_SMALL = (1, 2, 3)


# ----------------------------------------------------------------------------- matrix helpers


def softmax_rows(S: sp.Matrix, allowed=None) -> sp.Matrix:
    """Row softmax of a symbolic matrix; entries with ``allowed(r, c)`` False are exactly 0."""
    allowed = allowed or (lambda r, c: True)
    out = sp.zeros(*S.shape)
    for r in range(S.rows):
        cols = [c for c in range(S.cols) if allowed(r, c)]
        total = sum(sp.exp(S[r, c]) for c in cols)
        for c in cols:
            out[r, c] = sp.exp(S[r, c]) / total
    return out


def rowsum(M: sp.Matrix) -> sp.Matrix:
    """Column vector of row sums."""
    return M * sp.ones(M.cols, 1)


def softmax_vjp(A: sp.Matrix, dA: sp.Matrix) -> sp.Matrix:
    """The claimed softmax VJP in row-sum form, ``A * (dA - rowsum(A * dA))``."""
    return A.multiply_elementwise(dA - rowsum(A.multiply_elementwise(dA)) * sp.ones(1, A.cols))


def causal(r: int, c: int) -> bool:
    return c <= r


def zero_where_masked(M: sp.Matrix, allowed) -> sp.Matrix:
    """``M`` with a literal 0 wherever ``allowed`` is False: the claim states those are exact zeros."""
    return sp.Matrix(M.rows, M.cols, lambda r, c: M[r, c] if allowed(r, c) else 0)


def attention_forward(Q, K, V, allowed=None):
    S = Q * K.T / sp.sqrt(Q.cols)
    A = softmax_rows(S, allowed)
    return A, A * V


def attention_vjp(G, Q, K, V, allowed=None):
    """The claimed matrix-form backward pass of attention."""
    A, _ = attention_forward(Q, K, V, allowed)
    dA = G * V.T
    dS = softmax_vjp(A, dA)
    scale = 1 / sp.sqrt(Q.cols)
    return {"Q": scale * dS * K, "K": scale * dS.T * Q, "V": A.T * G}


def qkv_shapes(n_q, n_k, d_k, d_v):
    return {"Q": (n_q, d_k), "K": (n_k, d_k), "V": (n_k, d_v)}


def _chain_rule_cases(n_x: int, n_y: int):
    xs = sp.symbols(f"x0:{n_x}", real=True)
    ys = sp.symbols(f"y0:{n_y}", real=True)
    y_of_x = [sp.Function(f"y{r}")(*xs) for r in range(n_y)]
    L = sp.Function("L")
    actual = sp.Matrix([[sp.diff(L(*y_of_x), x) for x in xs]])
    claimed = sp.Matrix(
        [
            [
                sum(sp.diff(L(*ys), ys[r]).subs(dict(zip(ys, y_of_x))) * sp.diff(y_of_x[r], x) for r in range(n_y))
                for x in xs
            ]
        ]
    )
    return actual, claimed


# ----------------------------------------------------------------------------- the claims

CLAIMS = [
    Claim(
        id="chain-rule.contraction",
        title="Chain rule: the intermediate index is summed",
        latex=r"\frac{\partial L}{\partial x^{n}} = \frac{\partial L}{\partial y^{i}}\,\frac{\partial y^{i}}{\partial x^{n}}",
        check=ExprIdentity(
            actual=lambda n_x, n_y: _chain_rule_cases(n_x, n_y)[0],
            claimed=lambda n_x, n_y: _chain_rule_cases(n_x, n_y)[1],
            grid={"n_x": GRID_SMALL, "n_y": GRID_SMALL},
        ),
    ),
    Claim(
        id="attention.scores.dQ",
        title="Scores with respect to queries",
        latex=r"\frac{\partial S^{ij}}{\partial Q^{mn}} = \frac{1}{\sqrt{d_k}}\,\delta^{i}_{m}\,K^{jn}",
        check=IndexIdentity(
            actual=lambda: sp.diff(sp.Sum(Q[i, a] * K[j, a], (a, 0, d_k - 1)) / sp.sqrt(d_k), Q[m, n]),
            claimed=lambda: sp.KroneckerDelta(i, m) * K[j, n] / sp.sqrt(d_k),
            ranges={n: d_k},
        ),
    ),
    Claim(
        id="attention.scores.dK",
        title="Scores with respect to keys",
        latex=r"\frac{\partial S^{ij}}{\partial K^{mn}} = \frac{1}{\sqrt{d_k}}\,\delta^{j}_{m}\,Q^{in}",
        check=IndexIdentity(
            actual=lambda: sp.diff(sp.Sum(Q[i, a] * K[j, a], (a, 0, d_k - 1)) / sp.sqrt(d_k), K[m, n]),
            claimed=lambda: sp.KroneckerDelta(j, m) * Q[i, n] / sp.sqrt(d_k),
            ranges={n: d_k},
        ),
    ),
    Claim(
        id="attention.output.dA",
        title="Output with respect to attention weights",
        latex=r"\frac{\partial O^{ib}}{\partial A^{mn}} = \delta^{i}_{m}\,V^{nb}",
        check=IndexIdentity(
            actual=lambda: sp.diff(sp.Sum(A[i, j] * V[j, b], (j, 0, n_k - 1)), A[m, n]),
            claimed=lambda: sp.KroneckerDelta(i, m) * V[n, b],
            ranges={n: n_k},
        ),
    ),
    Claim(
        id="attention.output.dV",
        title="Output with respect to values",
        latex=r"\frac{\partial O^{ib}}{\partial V^{mn}} = A^{im}\,\delta^{b}_{n}",
        check=IndexIdentity(
            actual=lambda: sp.diff(sp.Sum(A[i, j] * V[j, b], (j, 0, n_k - 1)), V[m, n]),
            claimed=lambda: A[i, m] * sp.KroneckerDelta(b, n),
            ranges={m: n_k},
        ),
    ),
    Claim(
        id="softmax.jacobian",
        title="Softmax Jacobian",
        latex=r"\frac{\partial A^{ij}}{\partial S^{mn}} = \delta^{i}_{m}\,A^{ij}\left(\delta^{j}_{n} - A^{in}\right)",
        check=IndexIdentity(
            actual=lambda: sp.diff(sp.exp(S[i, j]) / sp.Sum(sp.exp(S[i, k]), (k, 0, n_k - 1)), S[m, n]),
            claimed=lambda: (
                sp.KroneckerDelta(i, m)
                * sp.exp(S[i, j])
                / sp.Sum(sp.exp(S[i, k]), (k, 0, n_k - 1))
                * (sp.KroneckerDelta(j, n) - sp.exp(S[i, n]) / sp.Sum(sp.exp(S[i, k]), (k, 0, n_k - 1)))
            ),
            ranges={n: n_k, j: n_k},
        ),
    ),
    Claim(
        id="softmax.vjp",
        title="Softmax backward in row-sum form",
        latex=(
            r"\frac{\partial L}{\partial S^{mn}} = A^{mn}\Big(\frac{\partial L}{\partial A^{mn}}"
            r" - \sum_{k} A^{mk}\,\frac{\partial L}{\partial A^{mk}}\Big)"
        ),
        check=VJPIdentity(
            shapes=lambda n_q, n_k: {"S": (n_q, n_k)},
            forward=lambda S: softmax_rows(S),
            claimed=lambda G, S: {"S": softmax_vjp(softmax_rows(S), G)},
            grid={"n_q": GRID_SMALL, "n_k": GRID_SMALL},
        ),
    ),
    Claim(
        id="attention.vjp.dV",
        title="Attention backward: values",
        latex=r"\frac{\partial L}{\partial V} = A^{\top}\,\frac{\partial L}{\partial O}",
        check=VJPIdentity(
            shapes=qkv_shapes,
            forward=lambda Q, K, V: attention_forward(Q, K, V)[1],
            claimed=lambda G, Q, K, V: {"V": attention_vjp(G, Q, K, V)["V"]},
            grid={"n_q": GRID_SMALL, "n_k": GRID_SMALL, "d_k": GRID_SMALL, "d_v": GRID_SMALL},
        ),
    ),
    Claim(
        id="attention.vjp.dA",
        title="Attention backward: weights",
        latex=r"\frac{\partial L}{\partial A} = \frac{\partial L}{\partial O}\,V^{\top}",
        check=VJPIdentity(
            shapes=lambda n_q, n_k, d_v: {"A": (n_q, n_k), "V": (n_k, d_v)},
            forward=lambda A, V: A * V,
            claimed=lambda G, A, V: {"A": G * V.T},
            grid={"n_q": GRID_SMALL, "n_k": GRID_SMALL, "d_v": GRID_SMALL},
        ),
    ),
    Claim(
        id="attention.vjp.dQ",
        title="Attention backward: queries",
        latex=r"\frac{\partial L}{\partial Q} = \frac{1}{\sqrt{d_k}}\,\frac{\partial L}{\partial S}\,K",
        check=VJPIdentity(
            shapes=qkv_shapes,
            forward=lambda Q, K, V: attention_forward(Q, K, V)[1],
            claimed=lambda G, Q, K, V: {"Q": attention_vjp(G, Q, K, V)["Q"]},
            grid={"n_q": GRID_SMALL, "n_k": GRID_SMALL, "d_k": GRID_SMALL, "d_v": GRID_SMALL},
        ),
    ),
    Claim(
        id="attention.vjp.dK",
        title="Attention backward: keys",
        latex=r"\frac{\partial L}{\partial K} = \frac{1}{\sqrt{d_k}}\left(\frac{\partial L}{\partial S}\right)^{\top} Q",
        check=VJPIdentity(
            shapes=qkv_shapes,
            forward=lambda Q, K, V: attention_forward(Q, K, V)[1],
            claimed=lambda G, Q, K, V: {"K": attention_vjp(G, Q, K, V)["K"]},
            grid={"n_q": GRID_SMALL, "n_k": GRID_SMALL, "d_k": GRID_SMALL, "d_v": GRID_SMALL},
        ),
    ),
    Claim(
        id="attention.rowsum-identity",
        title="The row sum used by memory-efficient kernels",
        latex=(
            r"\sum_{j} A^{ij}\,\frac{\partial L}{\partial A^{ij}} = \sum_{b} \frac{\partial L}{\partial O^{ib}}\,O^{ib}"
        ),
        check=ExprIdentity(
            actual=lambda n_q, n_k, d_v: rowsum(
                symbol_matrix("A", n_q, n_k).multiply_elementwise(symbol_matrix("G", n_q, d_v) * symbol_matrix("V", n_k, d_v).T)
            ),
            claimed=lambda n_q, n_k, d_v: rowsum(
                symbol_matrix("G", n_q, d_v).multiply_elementwise(symbol_matrix("A", n_q, n_k) * symbol_matrix("V", n_k, d_v))
            ),
            grid={"n_q": GRID_SMALL, "n_k": GRID_SMALL, "d_v": GRID_SMALL},
        ),
    ),
    Claim(
        id="attention.causal.zero-gradient",
        title="Causal mask: masked scores get exactly zero gradient",
        latex=(
            r"\frac{\partial L}{\partial S^{ij}} = 0 \quad (j > i),\qquad"
            r"\frac{\partial L}{\partial S} = A \odot \Big(\frac{\partial L}{\partial A} - \operatorname{rowsum}\big(A \odot \frac{\partial L}{\partial A}\big)\Big)"
        ),
        check=VJPIdentity(
            shapes=lambda n: {"S": (n, n)},
            forward=lambda S: softmax_rows(S, causal),
            claimed=lambda G, S: {"S": zero_where_masked(softmax_vjp(softmax_rows(S, causal), G), causal)},
            grid={"n": (1, 2, 3, 4)},
        ),
    ),
    Claim(
        id="attention.causal.vjp",
        title="Causal attention backward: same formulas, masked weights",
        latex=(
            r"A^{ij} = 0 \ (j > i) \;\Rightarrow\; \frac{\partial L}{\partial Q},\ \frac{\partial L}{\partial K},"
            r"\ \frac{\partial L}{\partial V} \text{ keep their unmasked form}"
        ),
        check=VJPIdentity(
            shapes=lambda n, d_k, d_v: qkv_shapes(n, n, d_k, d_v),
            forward=lambda Q, K, V: attention_forward(Q, K, V, causal)[1],
            claimed=lambda G, Q, K, V: attention_vjp(G, Q, K, V, causal),
            grid={"n": GRID_SMALL, "d_k": GRID_SMALL, "d_v": GRID_SMALL},
        ),
    ),
]
