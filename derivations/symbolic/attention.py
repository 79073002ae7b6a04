"""Claims of the attention chapter: the chain rule, scores, softmax, output, masking.

Forward pass, one op per equation (``i`` query, ``j``/``k`` key, ``a`` key feature,
``b`` value feature)::

    scores   S = Q K^T / sqrt(d_k)
    softmax  A^{ij} = e^{S^{ij}} / Z^{i},   Z^{i} = sum_k e^{S^{ik}}
    output   O = A V

Each backward claim is stated with respect to its op's own input (``dQ`` from ``dS``, not
from ``dO``): a polynomial or softmax identity SymPy proves for all sizes. The whole
backward pass is their composition, which the tests evaluate numerically against
``attention_backward``.
"""

from __future__ import annotations

import sympy as sp

from .notation import (Contraction, RowSum, Softmax, grad, i, j, k, m, matrix, n, a, b, size)
from .registry import Claim, Derivation, Op, define
from .chain import chain_rule, chain_rule_matrix, x, y, dx, dy, X, Y, dX, dY, n_y, m_y

D, delta, sqrt = sp.Derivative, sp.KroneckerDelta, sp.sqrt
odot = sp.HadamardProduct

n_q, n_k = size("n_q", "queries"), size("n_k", "keys")
d_k, d_v = size("d_k", "key features"), size("d_v", "value features")
Q, K, V = matrix("Q", n_q, d_k), matrix("K", n_k, d_k), matrix("V", n_k, d_v)
S, A, O, Z = matrix("S", n_q, n_k), matrix("A", n_q, n_k), matrix("O", n_q, d_v), matrix("Z", n_q, 1)
dQ, dK, dV, dS, dA, dO = map(grad, (Q, K, V, S, A, O))

# ----------------------------------------------------------------------------- the ops

scores = Op("scores", defs=(define(S, Q * K.T / sqrt(d_k)),))
softmax = Op("softmax", defs=(define(A[i, j], sp.exp(S[i, j]) / Z[i, 0]),
                              define(Z[i, 0], sp.Sum(sp.exp(S[i, k]), (k, 0, n_k - 1)))))
output = Op("output", defs=(define(O, A * V),))

# Causal attention is square: n_k = n_q. Its op works at grid sizes, where the mask is explicit.
S_c, A_c = S.subs(n_k, n_q), A.subs(n_k, n_q)
causal_softmax = Op("causal softmax", defs=(define(A_c, Softmax(S_c, causal=True)),), grid={n_q: (1, 2, 3)})


def softmax_vjp_rows(A, dA):
    """The softmax backward in row-sum form, ``A * (dA - rowsum(A * dA))``."""
    return odot(A, dA - RowSum(odot(A, dA)))


components = Op("components")  # no definitions: only what it means to differentiate a component

JACOBIAN = "a Jacobian entry: the backward pass contracts it with the upstream gradient and never builds it"

# ----------------------------------------------------------------------------- the claims

CLAIMS = [
    Claim("chain-rule.contraction", "Chain rule: the intermediate index is summed", chain_rule,
          dx[0, n], Contraction(dy[0, i] * D(y[0, i], x[0, n]), (i, 0, n_y - 1)),
          no_impl="a rule of calculus, not an operation"),
    Claim("chain-rule.contraction-matrix", "Chain rule for matrices: both intermediate indices are summed",
          chain_rule_matrix, dX[m, n], Contraction(dY[i, b] * D(Y[i, b], X[m, n]), (i, 0, n_y - 1), (b, 0, m_y - 1)),
          no_impl="a rule of calculus, not an operation"),
    Claim("notation.component-derivative", "A component's derivative is a product of deltas", components,
          D(Q[i, a], Q[m, n]), delta(i, m) * delta(a, n), no_impl="notation, not an operation"),
    Claim("attention.scores.dQ", "Scores with respect to queries", scores,
          D(S[i, j], Q[m, n]), delta(i, m) * K[j, n] / sqrt(d_k), no_impl=JACOBIAN),
    Claim("attention.scores.dK", "Scores with respect to keys", scores,
          D(S[i, j], K[m, n]), delta(j, m) * Q[i, n] / sqrt(d_k), no_impl=JACOBIAN),
    Claim("attention.output.dA", "Output with respect to attention weights", output,
          D(O[i, b], A[m, n]), delta(i, m) * V[n, b], no_impl=JACOBIAN),
    Claim("attention.output.dV", "Output with respect to values", output,
          D(O[i, b], V[m, n]), A[i, m] * delta(b, n), no_impl=JACOBIAN),
    Claim("softmax.jacobian", "Softmax Jacobian", softmax,
          D(A[i, j], S[m, n]), delta(i, m) * A[i, j] * (delta(j, n) - A[i, n]), no_impl=JACOBIAN),
    Claim("softmax.vjp", "Softmax backward in index form", softmax,
          dS[m, n], A[m, n] * (dA[m, n] - sp.Sum(A[m, k] * dA[m, k], (k, 0, n_k - 1))),
          impl="softmax_backward:dx"),
    Claim("softmax.vjp-rowsum", "Softmax backward in row-sum form", softmax,
          dS, softmax_vjp_rows(A, dA), impl="softmax_backward:dx"),
    Claim("attention.vjp.dV", "Attention backward: values", output, dV, A.T * dO, impl="attention_backward:dV"),
    Claim("attention.vjp.dA", "Attention backward: weights", output, dA, dO * V.T,
          no_impl="an intermediate of attention_backward, which returns dQ, dK and dV; the tests check it "
                  "through them (attention.vjp.dQ and dK are evaluated from it)"),
    Claim("attention.vjp.dQ", "Attention backward: queries", scores, dQ, dS * K / sqrt(d_k),
          impl="attention_backward:dQ"),
    Claim("attention.vjp.dK", "Attention backward: keys", scores, dK, dS.T * Q / sqrt(d_k),
          impl="attention_backward:dK"),
    Claim("attention.rowsum-identity", "The row sum used by memory-efficient kernels", output,
          sp.Sum(A[i, j] * dA[i, j], (j, 0, n_k - 1)), sp.Sum(dO[i, b] * O[i, b], (b, 0, d_v - 1)),
          no_impl="the reference computes the row sum from the weights (softmax_backward); "
                  "the page's blockwise sketch uses this form"),
    Claim("attention.causal.zero-gradient", "Causal mask: masked scores get exactly zero gradient", causal_softmax,
          grad(S_c)[i, j], sp.Integer(0), when=j > i, impl="softmax_backward:dx"),
    Claim("attention.causal.vjp", "Causal softmax backward: the row-sum form with the masked weights",
          causal_softmax, grad(S_c), softmax_vjp_rows(A_c, grad(A_c)), impl="softmax_backward:dx"),
]

# ----------------------------------------------------------------------------- the derivations

DERIVATIONS = [
    Derivation("chain-rule.summation", "The summation convention, written out", chain_rule, (
        dx[0, n],
        Contraction(dy[0, i] * D(y[0, i], x[0, n]), (i, 0, n_y - 1)),
        sp.Sum(dy[0, i] * D(y[0, i], x[0, n]), (i, 0, n_y - 1)),
    )),
    Derivation("attention.vjp.dV.index", "Values: the delta removes the sum over features", output, (
        dV[m, n],
        Contraction(dO[i, b] * D(O[i, b], V[m, n]), (i, 0, n_q - 1), (b, 0, d_v - 1)),
        Contraction(dO[i, b] * A[i, m] * delta(b, n), (i, 0, n_q - 1), (b, 0, d_v - 1)),
        Contraction(A[i, m] * dO[i, n], (i, 0, n_q - 1)),
    )),
    Derivation("attention.vjp.dA.index", "Weights: the delta removes the sum over queries", output, (
        dA[m, n],
        Contraction(dO[i, b] * D(O[i, b], A[m, n]), (i, 0, n_q - 1), (b, 0, d_v - 1)),
        Contraction(dO[i, b] * delta(i, m) * V[n, b], (i, 0, n_q - 1), (b, 0, d_v - 1)),
        Contraction(dO[m, b] * V[n, b], (b, 0, d_v - 1)),
    )),
    Derivation("softmax.quotient-rule", "Softmax within one row: the quotient rule", softmax, (
        D(A[i, j], S[i, n]),
        (delta(j, n) * sp.exp(S[i, j]) * Z[i, 0] - sp.exp(S[i, j]) * sp.exp(S[i, n])) / Z[i, 0] ** 2,
        A[i, j] * delta(j, n) - A[i, j] * A[i, n],
    )),
    Derivation("softmax.vjp.index", "Softmax backward: contracting the Jacobian", softmax, (
        dS[m, n],
        sp.Sum(dA[i, j] * delta(i, m) * A[i, j] * (delta(j, n) - A[i, n]), (i, 0, n_q - 1), (j, 0, n_k - 1)),
        sp.Sum(dA[m, j] * A[m, j] * delta(j, n), (j, 0, n_k - 1))
        - sp.Sum(A[m, j] * dA[m, j], (j, 0, n_k - 1)) * A[m, n],
        A[m, n] * (dA[m, n] - sp.Sum(A[m, k] * dA[m, k], (k, 0, n_k - 1))),
    ), concludes="softmax.vjp"),
    Derivation("attention.vjp.dQ.index", "Queries: the delta removes the sum over queries", scores, (
        dQ[m, n],
        Contraction(dS[i, j] * D(S[i, j], Q[m, n]), (i, 0, n_q - 1), (j, 0, n_k - 1)),
        Contraction(dS[i, j] * delta(i, m) * K[j, n] / sqrt(d_k), (i, 0, n_q - 1), (j, 0, n_k - 1)),
        Contraction(dS[m, j] * K[j, n], (j, 0, n_k - 1)) / sqrt(d_k),
    )),
    Derivation("attention.vjp.dK.index", "Keys: the delta removes the sum over keys", scores, (
        dK[m, n],
        Contraction(dS[i, j] * D(S[i, j], K[m, n]), (i, 0, n_q - 1), (j, 0, n_k - 1)),
        Contraction(dS[i, j] * delta(j, m) * Q[i, n] / sqrt(d_k), (i, 0, n_q - 1), (j, 0, n_k - 1)),
        Contraction(dS[i, m] * Q[i, n], (i, 0, n_q - 1)) / sqrt(d_k),
    )),
    Derivation("attention.rowsum-identity.steps", "The row sum from the output", output, (
        Contraction(sp.Sum(A[i, j] * dO[i, b] * V[j, b], (j, 0, n_k - 1)), (b, 0, d_v - 1)),
        Contraction(dO[i, b] * sp.Sum(A[i, j] * V[j, b], (j, 0, n_k - 1)), (b, 0, d_v - 1)),
        Contraction(dO[i, b] * O[i, b], (b, 0, d_v - 1)),
    )),
]
