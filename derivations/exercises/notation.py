"""Exercises of the notation chapter: reading and contracting indices (the site's own; the sources have none)."""

from __future__ import annotations

import numpy as np

from ..reference import linear, linear_backward
from .registry import Exercise

CHAPTER = "notation"


def _scores_givens():
    rng = np.random.default_rng(11)
    return {"Q": rng.integers(-2, 3, size=(2, 4)).astype(float), "K": rng.integers(-2, 3, size=(3, 4)).astype(float)}


def _jacobian_counts(Q, K):
    """Count the entries of dS/dQ by building it column by column (S is linear in Q, so one step is exact)."""
    d_k = Q.shape[1]
    jacobian = np.zeros((Q.shape[0], K.shape[0], *Q.shape))
    for m in range(Q.shape[0]):
        for n in range(Q.shape[1]):
            step = np.zeros_like(Q)
            step[m, n] = 1.0
            jacobian[:, :, m, n] = (Q + step) @ K.T / np.sqrt(d_k) - Q @ K.T / np.sqrt(d_k)
    return {"entries in all": jacobian.size, "non-zero entries": int(np.count_nonzero(jacobian))}


def _contraction_options():
    """Evaluate every option on non-square data; the right one equals Q K^T."""
    rng = np.random.default_rng(0)
    Q, K = rng.normal(size=(2, 3)), rng.normal(size=(4, 3))
    right = []
    for spec in ("ia,ja->ij", "ia,aj->ij", "ai,aj->ij", "ia,ia->i"):
        try:
            value = np.einsum(spec, Q, K)
        except ValueError:  # the indices do not even fit the shapes
            right.append(False)
            continue
        right.append(value.shape == (2, 4) and bool(np.allclose(value, Q @ K.T)))
    if sum(right) != 1:
        raise ValueError(f"expected exactly one option to equal Q K^T, got {right}")
    return right.index(True)


EXERCISES = [
    Exercise(
        id="notation.scores-by-hand",
        chapter=CHAPTER,
        kind="numeric",
        title="Scores from index notation",
        prompt=r"""
With \(d_k = 4\), the queries and keys are

\[
Q = {{ Q }}, \qquad K = {{ K }}.
\]

Compute the score matrix \(S^{ij} = \frac{1}{\sqrt{d_k}}\, Q^{ia} K^{ja}\) (the repeated \(a\) is
summed). Which indices are free, and what shape does \(S\) have?
""",
        givens=_scores_givens,
        answer=lambda Q, K: np.einsum("ia,ja->ij", Q, K) / np.sqrt(Q.shape[1]),
        atol=1e-3,
        solution='''
n_q, d_k = Q.shape
n_k = K.shape[0]
S = np.zeros((n_q, n_k))
for i in range(n_q):          # free index: a row of S for every query
    for j in range(n_k):      # free index: a column for every key
        S[i, j] = sum(Q[i, a] * K[j, a] for a in range(d_k)) / np.sqrt(d_k)   # a is summed
print(S)
print("same as Q @ K.T / sqrt(d_k):", np.allclose(S, Q @ K.T / np.sqrt(d_k)))
answer = S
''',
        discussion=r"""
\(i\) and \(j\) are free, so \(S\) has one entry per query and key: \({{ n_q }} \times {{ n_k }}\). The
index \(a\) appears twice in the product and not in \(S^{ij}\), so it is summed: each entry is a dot
product of a row of \(Q\) with a row of \(K\), divided by \(\sqrt{d_k} = 2\).
""",
    ),
    Exercise(
        id="notation.delta-picks",
        chapter=CHAPTER,
        kind="numeric",
        title="A Kronecker delta picks one term",
        prompt=r"""
Take \(K = {{ K }}\) (indices from 0: \(j\) the row, \(a\) the column) and \(n = {{ n }}\).
The expression \(\delta^{a}_{n} K^{ja}\) sums over \(a\) and leaves \(j\) free. Write out the vector
it gives, one entry per \(j\).
""",
        givens=lambda: {"K": np.array([[0.5, -1.0, 2.0, 0.0], [1.5, 0.25, -0.5, 3.0], [-2.0, 1.0, 0.75, -1.5]]), "n": 2},
        answer=lambda K, n: K[:, n],
        atol=1e-6,
        solution='''
d_k = K.shape[1]
delta = np.eye(d_k)                                   # delta[a, n] is 1 when a == n, else 0
picked = np.einsum("a,ja->j", delta[:, n], K)         # sum over a of delta^a_n K^{ja}
print("delta^a_n K^{ja} =", picked)
print("column n of K    =", K[:, n])
answer = picked
''',
        discussion=r"""
Every term of the sum over \(a\) is zero except \(a = n\), so \(\delta^{a}_{n} K^{ja} = K^{jn}\): the
delta renames the summed index and the sum disappears. This single move is most of every
derivation on the site.
""",
    ),
    Exercise(
        id="notation.jacobian-size",
        chapter=CHAPTER,
        kind="numeric",
        title="How big is a derivative, and how much of it is zero?",
        prompt=r"""
The derivative of the scores with respect to the queries, \(\partial S^{ij} / \partial Q^{mn}\), has
four free indices. For \(n_q = 2\) queries, \(n_k = 3\) keys and \(d_k = 4\), and keys \(K\) with no zero
entry (say \(K = {{ K }}\)), how many entries does this four-index array have, and how many of
them can be non-zero?
""",
        givens=lambda: {"Q": _scores_givens()["Q"], "K": np.array([[1.0, -2.0, 0.5, 1.5], [2.0, 1.0, -1.0, 0.5],
                                                                     [-0.5, 1.0, 2.0, -1.0]])},
        answer=lambda Q, K: _jacobian_counts(Q, K),
        atol=0.5,
        solution='''
n_q, d_k = Q.shape
n_k = K.shape[0]
jacobian = np.zeros((n_q, n_k, n_q, d_k))      # indices i, j, m, n
for m in range(n_q):
    for n in range(d_k):
        step = np.zeros_like(Q)
        step[m, n] = 1.0                      # S is linear in Q: one unit step gives the derivative exactly
        jacobian[:, :, m, n] = ((Q + step) @ K.T - Q @ K.T) / np.sqrt(d_k)
print("entries:", jacobian.size, "| non-zero:", np.count_nonzero(jacobian))
print("the rule: delta^i_m K^{jn} / sqrt(d_k) is non-zero only when i == m:",
      n_q * n_k * d_k, "entries")
answer = {"entries in all": jacobian.size, "non-zero entries": np.count_nonzero(jacobian)}
''',
        discussion=r"""
The array has \(n_q n_k n_q d_k\) entries, but the claim \(\frac{1}{\sqrt{d_k}}\delta^{i}_{m}K^{jn}\)
says that a query's scores do not depend on another query's vector: only the entries with
\(i = m\) survive, \(n_q n_k d_k\) of them. That is why nobody builds the Jacobian: the gradient
\(\frac{\partial L}{\partial Q} = \frac{1}{\sqrt{d_k}}\frac{\partial L}{\partial S} K\) contracts it
away in one matrix product.
""",
    ),
    Exercise(
        id="notation.which-contraction",
        chapter=CHAPTER,
        kind="choice",
        title="Which expression is the product of queries and keys?",
        prompt=r"""
\(Q\) is \(n_q \times d_k\) and \(K\) is \(n_k \times d_k\) (rows are positions). Which index expression
is the matrix \(Q K^{\top}\)?
""",
        options=(r"\(Q^{ia} K^{ja}\)", r"\(Q^{ia} K^{aj}\)", r"\(Q^{ai} K^{aj}\)", r"\(Q^{ia} K^{ia}\)"),
        answer=_contraction_options,
        solution='''
import numpy as np

rng = np.random.default_rng(0)
Q, K = rng.normal(size=(2, 3)), rng.normal(size=(4, 3))     # n_q = 2, n_k = 4, d_k = 3: nothing is square
for number, spec in enumerate(["ia,ja->ij", "ia,aj->ij", "ai,aj->ij", "ia,ia->i"], start=1):
    try:
        value = np.einsum(spec, Q, K)
        verdict = "equals Q K^T" if value.shape == (2, 4) and np.allclose(value, Q @ K.T) else f"shape {value.shape}, not Q K^T"
    except ValueError:
        verdict = "the indices do not fit the shapes"
    print(f"option {number}: {spec:10} {verdict}")
answer = 0
''',
        discussion=r"""
The summed index \(a\) must run over what the two matrices share, their last axis \(d_k\); the free
indices \(i\) and \(j\) then label the rows of \(Q\) and of \(K\). Testing on matrices with three
different sizes is what makes the check honest: on square matrices a wrong index order often fits
the shapes and gives a number.
""",
    ),
    Exercise(
        id="notation.chain-rule",
        chapter=CHAPTER,
        kind="numeric",
        title="The chain rule as a contraction",
        prompt=r"""
A layer computes \(y^{i} = W^{in} x^{n}\) with \(W = {{ W }}\), and the gradient arriving from
above is \(\frac{\partial L}{\partial y} = {{ g }}\). Compute
\(\frac{\partial L}{\partial x^{n}} = \frac{\partial L}{\partial y^{i}}\frac{\partial y^{i}}{\partial x^{n}}\)
(3 numbers).
""",
        givens=lambda: {"W": np.array([[1.0, -0.5, 2.0], [0.5, 1.5, -1.0]]), "g": np.array([0.2, -0.4])},
        # The reference's linear map is y = x W' with x a row; y = W x is that map with W' = W^T.
        answer=lambda W, g: linear_backward(g[None], linear(np.zeros((1, W.shape[1])), W.T)[1])[0][0],
        atol=1e-3,
        solution='''
# dy^i/dx^n = W^{in}; the chain rule sums over the index i that the two factors share
dx = np.einsum("i,in->n", g, W)
print("dL/dx =", dx, "= W^T g:", np.allclose(dx, W.T @ g))
answer = dx
''',
        discussion=r"""
The local derivative \(\partial y^{i}/\partial x^{n} = W^{in}\) carries the index \(i\) of \(y\); the
chain rule sums over it, which as matrices is \(W^{\top}\frac{\partial L}{\partial y}\): the transpose
comes from the summed index standing first in \(W^{in}\), not from a rule to memorise.
""",
    ),
    Exercise(
        id="notation.chain-rule-claim",
        chapter=CHAPTER,
        kind="symbolic",
        title="Why the paths add up",
        prompt=r"""
\(L\) depends on \(x\) only through every component of \(y\). Write
\(\partial L / \partial x^{n}\) with the summation convention, and say in one sentence why a sum appears.
""",
        claims=("chain-rule.contraction",),
        solution='''
import numpy as np

from derivations.reference import numerical_gradient

rng = np.random.default_rng(3)
W, x = rng.normal(size=(2, 3)), rng.normal(size=3)
L = lambda x: float(np.sum(np.tanh(W @ x) ** 2))           # L depends on x only through y = W x
y = W @ x
dL_dy = 2 * np.tanh(y) * (1 - np.tanh(y) ** 2)
dy_dx = W                                                  # dy^i / dx^n
contracted = np.einsum("i,in->n", dL_dy, dy_dx)            # sum over the shared index i
print("contraction      :", contracted.round(6))
print("finite difference:", numerical_gradient(L, [x], 0).round(6))
''',
        discussion=r"""
Each \(y^{i}\) is one path from \(x^{n}\) to \(L\); a small change of \(x^{n}\) moves every \(y^{i}\) at
once, and the changes of \(L\) they cause add up. The repeated index \(i\) is exactly that sum, and
the run above checks it against central differences.
""",
    ),
]
