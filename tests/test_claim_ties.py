"""Claim, proof and code tied by numbers: every claim that names a reference implementation
gives, on random float64 inputs of several shapes, what that function computes (1e-12 relative).

The claimed formula is evaluated from the very expression SymPy proved
(``derivations.symbolic.numeric``). Where a formula needs a gradient from an earlier step
of the backward pass (``dQ = dS K / sqrt(d_k)`` needs ``dS``), that gradient is the earlier
step's claim, evaluated in turn: so the chain of claims, not just each link, is compared
with the whole backward function. Every harness below draws the inputs and calls the
reference; nothing expected comes from the claims.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from derivations import reference as ref
from derivations.symbolic import CLAIMS, Claim, attention as att, flow, layers
from derivations.symbolic.numeric import evaluate

RTOL = 1e-12
VARIANTS = range(3)  # three shapes per claim, all sizes different within each


@dataclass
class Case:
    point: dict  # size symbol -> int
    values: dict  # name -> array or number: the inputs and the upstream gradient
    expected: dict  # the lhs's name (or "lhs" for a scalar identity) -> the reference's output
    ops: tuple = ()  # ops of the backward chain whose claims and definitions supply missing values
    mask: object = None  # compare only where True (a claim stated for masked entries)


def normal(rng, *shape):
    return rng.standard_normal(shape)


# ----------------------------------------------------------------------------- harnesses, by reference function

def attention_case(claim, rng, variant):
    n_q, n_k, d_k, d_v = [(2, 3, 4, 5), (4, 3, 2, 1), (3, 5, 1, 2)][variant]
    Q, K, V, dO = normal(rng, n_q, d_k), normal(rng, n_k, d_k), normal(rng, n_k, d_v), normal(rng, n_q, d_v)
    _, cache = ref.attention(Q, K, V)
    dQ, dK, dV = ref.attention_backward(dO, cache)
    return Case({att.n_q: n_q, att.n_k: n_k, att.d_k: d_k, att.d_v: d_v}, {"Q": Q, "K": K, "V": V, "dO": dO},
                {"dQ": dQ, "dK": dK, "dV": dV}, ops=(att.scores, att.softmax, att.output))


def softmax_case(claim, rng, variant):
    causal = claim.op is att.causal_softmax
    n_q, n_k = [(2, 3), (4, 4), (3, 1)][variant] if not causal else [(3, 3), (4, 4), (5, 5)][variant]
    S, dA = normal(rng, n_q, n_k), normal(rng, n_q, n_k)
    mask = np.tril(np.ones((n_q, n_k), dtype=bool)) if causal else None
    _, cache = ref.softmax(S, mask=mask)
    dS = ref.softmax_backward(dA, cache)
    point = {att.n_q: n_q} if causal else {att.n_q: n_q, att.n_k: n_k}
    compare = ~mask if claim.when is not None else None  # the zero-gradient claim speaks of masked entries
    return Case(point, {"S": S, "dA": dA}, {"dS": dS}, mask=compare)


def linear_case(claim, rng, variant):
    N, d_in, d_out = [(2, 3, 4), (5, 1, 2), (3, 4, 1)][variant]
    X, W, b, dY = normal(rng, N, d_in), normal(rng, d_in, d_out), normal(rng, 1, d_out), normal(rng, N, d_out)
    _, cache = ref.linear(X, W, b[0])
    dX, dW, db = ref.linear_backward(dY, cache)
    return Case({layers.N: N, layers.d_in: d_in, layers.d_out: d_out}, {"X": X, "W": W, "b": b, "dY": dY},
                {"dX": dX, "dW": dW, "db": db[None, :]})


def layer_norm_case(claim, rng, variant):
    N, D = [(2, 3), (4, 5), (3, 2)][variant]
    eps = [1e-5, 0.3, 1e-2][variant]
    x, gamma, beta, dy = normal(rng, N, D) * 2 + 1, normal(rng, 1, D), normal(rng, 1, D), normal(rng, N, D)
    _, cache = ref.layer_norm(x, gamma[0], beta[0], eps=eps)
    dx, dgamma, dbeta = ref.layer_norm_backward(dy, cache)
    expected = {"dgamma": dgamma[None, :], "dbeta": dbeta[None, :]}
    if claim.op is layers.layer_norm:  # one row: the first
        return Case({layers.d_model: D}, {"x": x[:1], "gamma": gamma, "beta": beta, "dy": dy[:1], "epsilon": eps},
                    {**expected, "dx": dx[:1]})
    xhat = (x - x.mean(axis=1, keepdims=True)) / np.sqrt(x.var(axis=1, keepdims=True) + eps)
    return Case({layers.N: N, layers.d_model: D}, {"Xhat": xhat, "gamma": gamma, "beta": beta, "dY_rows": dy}, expected)


def cross_entropy_case(claim, rng, variant):
    N, C = [(1, 3), (4, 2), (3, 5)][variant]
    if claim.op is layers.cross_entropy:
        N = 1
    logits, targets = normal(rng, N, C), rng.integers(0, C, size=N)
    _, cache = ref.cross_entropy(logits, targets)
    dlogits = ref.cross_entropy_backward(1.0, cache)
    if claim.op is layers.cross_entropy:
        return Case({layers.C: C}, {"z": logits, "y": targets[0]}, {"dz": dlogits})
    return Case({layers.N: N, layers.C: C}, {"Z_logits": logits, "y": targets}, {"dZ_logits": dlogits})


def embedding_case(claim, rng, variant):
    T, V, d = [(4, 3, 2), (2, 5, 3), (6, 2, 1)][variant]
    tokens, E, dout = rng.integers(0, V, size=T), normal(rng, V, d), normal(rng, T, d)
    tokens[-1] = tokens[0]  # a repeated token: its gradients must add up
    _, cache = ref.embedding(tokens, E)
    dE = ref.embedding_backward(dout, cache)
    point = {layers.T: T, layers.vocab: V, layers.d_e: d}
    one_hot = np.eye(V)[tokens]
    return Case(point, {"E": E, "tokens": tokens, "dout": dout, "H_onehot": one_hot, "dX_emb": dout}, {"dE": dE})


def activation_case(claim, rng, variant):
    x = normal(rng, 7) * 3
    if claim.op is layers.relu:
        x[np.abs(x) < 1e-3] = 0.5  # the claim is for x != 0
        _, cache = ref.relu(x)
        return Case({}, {"x": x}, {"lhs": ref.relu_backward(np.ones_like(x), cache)})
    if claim.op is layers.gelu_entrywise:
        N, d = [(2, 3), (4, 1), (1, 5)][variant]
        Z, dU = normal(rng, N, d) * 3, normal(rng, N, d)
        _, cache = ref.gelu(Z)
        return Case({layers.N: N, layers.d_out: d}, {"Z_ffn": Z, "dU": dU}, {"dZ_ffn": ref.gelu_backward(dU, cache)})
    approximate = "tanh" if claim.op is layers.gelu_tanh else "none"
    _, cache = ref.gelu(x, approximate=approximate)
    return Case({}, {"x": x, "c": 0.044715}, {"lhs": ref.gelu_backward(np.ones_like(x), cache)})


def rnn_case(claim, rng, variant):
    B, d_in, d_h = [(2, 3, 4), (1, 2, 1), (3, 1, 2)][variant]
    x, h0, dh = normal(rng, B, d_in), normal(rng, B, d_h), normal(rng, B, d_h)
    W_xh, W_hh, b = normal(rng, d_in, d_h), normal(rng, d_h, d_h), normal(rng, 1, d_h)
    _, cache = ref.rnn_forward(x[None], h0, W_xh, W_hh, b[0])
    dx, dh0, dW_xh, dW_hh, db = ref.rnn_backward(dh[None], cache)
    return Case({flow.B: B, flow.d_in: d_in, flow.d_h: d_h},
                {"x_t": x, "h_tm1": h0, "W_xh": W_xh, "W_hh": W_hh, "b": b, "dh_t": dh},
                {"dh_tm1": dh0, "dx_t": dx[0], "dW_hh": dW_hh, "dW_xh": dW_xh, "db": db[None, :]})


HARNESSES = {
    "attention_backward": attention_case, "softmax_backward": softmax_case, "linear_backward": linear_case,
    "layer_norm_backward": layer_norm_case, "cross_entropy_backward": cross_entropy_case,
    "embedding_backward": embedding_case, "relu_backward": activation_case, "gelu_backward": activation_case,
    "rnn_backward": rnn_case,
}

# ----------------------------------------------------------------------------- the comparison


def function_of(claim: Claim) -> str:
    return claim.impl.split(":")[0].split()[0]


def resolver(case: Case, values: dict):
    """Missing values of a chain: a gradient from the claim that states it, a forward quantity from its op."""
    by_gradient = {c.lhs.name: c for c in CLAIMS if c.op in case.ops and hasattr(c.lhs, "name")}
    definers = {pattern_name(p): op for op in case.ops for p, _ in op.defs}

    def resolve(name):
        if name in by_gradient:
            return evaluate(by_gradient[name], case.point, values, resolve)
        if name in definers:
            quantity = next(p for p, _ in definers[name].defs if pattern_name(p) == name)
            quantity = getattr(quantity, "parent", quantity)
            forward = Claim(f"forward {name}", name, definers[name], quantity, quantity, no_impl="a forward value")
            return evaluate(forward, case.point, values, resolve)
        raise KeyError(f"nothing in the chain gives {name}")

    return resolve


def pattern_name(pattern) -> str:
    return getattr(getattr(pattern, "parent", pattern), "name", str(pattern))


def lhs_names(claim: Claim) -> list[str]:
    parts = claim.lhs.args if type(claim.lhs).__name__ == "Tuple" else (claim.lhs,)
    return [pattern_name(p) if hasattr(getattr(p, "parent", p), "name") else "lhs" for p in parts]


TIED = [c for c in CLAIMS if c.impl]


def test_every_claim_names_an_implementation_or_says_why() -> None:
    for claim in CLAIMS:
        assert bool(claim.impl) != bool(claim.no_impl), claim.id
        if claim.impl:
            assert hasattr(ref, function_of(claim)), f"{claim.id}: no reference function {function_of(claim)!r}"
            assert function_of(claim) in HARNESSES, f"{claim.id}: add a harness for {function_of(claim)} to this file"
        else:
            assert len(claim.no_impl) > 20, f"{claim.id}: say why there is no implementation"


@pytest.mark.parametrize("claim_id", [c.id for c in TIED])
def test_claim_agrees_with_its_reference_function(claim_id: str) -> None:
    (claim,) = [c for c in TIED if c.id == claim_id]
    rng = np.random.default_rng(sum(map(ord, claim_id)))
    for variant in VARIANTS:
        case = HARNESSES[function_of(claim)](claim, rng, variant)
        values = dict(case.values)
        for part, name in enumerate(lhs_names(claim)):
            got = evaluate(claim, case.point, values, resolver(case, values), part=part if len(lhs_names(claim)) > 1 else None)
            expected = np.asarray(case.expected[name], dtype=np.float64).reshape(got.shape)
            if case.mask is not None:
                got, expected = got[case.mask], expected[case.mask]
            scale = max(float(np.max(np.abs(expected), initial=0.0)), 1.0)
            np.testing.assert_allclose(got, expected, rtol=RTOL, atol=RTOL * scale,
                                       err_msg=f"{claim_id} ({name}) at {case.point}")


def test_a_wrong_formula_disagrees_with_the_reference() -> None:
    """The control: the same comparison rejects dV = A dO^T-style slips (here: the scale dropped from dQ)."""
    from dataclasses import replace

    claim = next(c for c in CLAIMS if c.id == "attention.vjp.dQ")
    wrong = replace(claim, rhs=att.dS * att.K)
    case = attention_case(wrong, np.random.default_rng(0), 0)
    values = dict(case.values)
    got = evaluate(wrong, case.point, values, resolver(case, values))
    assert not np.allclose(got, case.expected["dQ"], rtol=1e-3)
