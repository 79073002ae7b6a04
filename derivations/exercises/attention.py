"""Exercises of the attention-gradients chapter: softmax, the four attention gradients, checking them."""

from __future__ import annotations

import numpy as np

from ..reference import attention, attention_backward, multi_head_attention, multi_head_attention_backward, softmax
from ..reference import softmax_backward
from .registry import Exercise, handson_source

CHAPTER = "attention-gradients"


def _softmax_jacobian(x):
    """Column n of the Jacobian is the softmax VJP of the unit vector e_n (the Jacobian is symmetric)."""
    y, cache = softmax(x)
    return np.stack([softmax_backward(np.eye(len(y))[n], cache) for n in range(len(y))], axis=1)


def _attention_of(A, V):
    """Reference attention whose weights are exactly ``A``: scores ``log A`` through ``Q = log A``, ``K = sqrt(n_k) I``."""
    n_k = A.shape[1]
    return attention(np.log(A), np.sqrt(n_k) * np.eye(n_k), V)


def _weights_and_score_gradient(A, V, dO):
    _, cache = _attention_of(A, V)
    dQ, _, dV = attention_backward(dO, cache)
    # With K = sqrt(n_k) I, dQ = dS K / sqrt(n_k) is dS itself.
    return {r"\(\partial L/\partial A\)": dO @ V.T, r"\(\partial L/\partial S\)": dQ}


def _saturation_choice():
    """How many softmax rows are saturated (every Jacobian entry below 1e-3) at scores of +-150 and of
    +-1.5, over 10 draws; the option that matches."""
    saturated = {150.0: [], 1.5: []}
    for seed in range(10):
        scores = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(64, 16))
        for scale in saturated:
            saturated[scale].append(np.mean(np.abs(_batched_jacobian(scale * scores)).max(axis=(1, 2)) < 1e-3))
    if min(saturated[150.0]) > 0.5 and max(saturated[1.5]) == 0:
        return 0  # the gradient through the softmax vanishes for most rows
    return 1 if min(saturated[150.0]) == 0 else 2


def _batched_jacobian(scores):
    y, cache = softmax(scores)
    return np.stack([softmax_backward(np.broadcast_to(np.eye(scores.shape[1])[n], scores.shape), cache)
                     for n in range(scores.shape[1])], axis=-1)


CANDIDATE_MASKS = {
    "lower": lambda n: np.tril(np.ones((n, n), dtype=bool)),
    "upper": lambda n: np.triu(np.ones((n, n), dtype=bool)),
    "full": lambda n: np.ones((n, n), dtype=bool),
    "diagonal": lambda n: np.eye(n, dtype=bool),
}


def _influence(mask, n=5, d=4, seed=0):
    """``[n, n]`` booleans: does output ``i`` depend on input position ``j``? (reference backward, one row at a time)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    influence = np.zeros((n, n), dtype=bool)
    for i in range(n):
        _, cache = attention(X, X, X, mask)
        dO = np.zeros((n, d))
        dO[i] = 1.0
        dQ, dK, dV = attention_backward(dO, cache)
        influence[i] = np.abs(dQ + dK + dV).sum(axis=1) > 1e-12
    return influence


def _causal_choice():
    wanted = np.tril(np.ones((5, 5), dtype=bool))  # every earlier position and itself, nothing later
    right = [name for name, make in CANDIDATE_MASKS.items() if np.array_equal(_influence(make(5)), wanted)]
    if len(right) != 1:
        raise ValueError(f"expected one mask to give the causal pattern, got {right}")
    return list(CANDIDATE_MASKS).index(right[0])


def _single_token_choice():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1, 4))
    Ws = [rng.normal(size=(4, 4)) for _ in range(4)]
    _, cache = multi_head_attention(X, *Ws, n_heads=2)
    _, dW_q, dW_k, dW_v, dW_o = multi_head_attention_backward(rng.normal(size=(1, 4)), cache)
    zero = [bool(np.all(dW == 0)) for dW in (dW_q, dW_k, dW_v, dW_o)]
    options = {(True, True, False, False): 0, (False, False, True, False): 1, (False, False, False, False): 2,
               (True, True, True, True): 3}
    return options[tuple(zero)]


EXERCISES = [
    Exercise(
        id="attention.it-weights",
        chapter=CHAPTER,
        kind="numeric",
        title="Where does \"it\" look?",
        prompt=r"""
In "I saw it", the query of "it" meets the keys of the three words with raw dot products
\(q \cdot k_j = {{ dots }}\), and \(d_k = {{ d_k }}\). Compute the three attention weights of "it",
\(\operatorname{softmax}(q \cdot k_j / \sqrt{d_k})\).
""",
        givens=lambda: {"dots": np.array([0.1, 0.3, 0.6]), "d_k": 4},
        answer=lambda dots, d_k: softmax(dots / np.sqrt(d_k))[0],
        atol=1e-3,
        solution='''
scaled = dots / np.sqrt(d_k)
e = np.exp(scaled - scaled.max())       # subtracting the maximum changes nothing but avoids overflow
weights = e / e.sum()
print("scaled scores:", scaled)
print("weights:      ", weights.round(4), "sum", weights.sum().round(12))
ratio = weights.max() / weights.min()
answer = weights
''',
        discussion=r"""
The output of "it" is \({{ weights[0]:fix3 }}\,v_0 + {{ weights[1]:fix3 }}\,v_1 + {{ weights[2]:fix3 }}\,v_2\):
with scores this close together, the softmax is nearly uniform, and the largest weight is only
{{ ratio:sig2 }} times the smallest.
""",
    ),
    Exercise(
        id="attention.softmax-jacobian",
        chapter=CHAPTER,
        kind="numeric",
        title="The softmax Jacobian, entry by entry",
        prompt=r"""
For \(x = {{ x }}\), compute the Jacobian \(J^{mn} = \partial y^{m} / \partial x^{n}\) of
\(y = \operatorname{softmax}(x)\), a \(3 \times 3\) matrix.
""",
        givens=lambda: {"x": np.array([1.0, 2.0, 3.0])},
        answer=lambda x: _softmax_jacobian(x),
        atol=1e-3,
        solution='''
y = np.exp(x - x.max())
y /= y.sum()
J = np.diag(y) - np.outer(y, y)           # J[m, n] = y_m (delta_mn - y_n)
print("y =", y.round(4))
print(J.round(4))
print("row sums:", J.sum(axis=1).round(15))
answer = J
''',
        discussion=r"""
The diagonal holds \(y^{m}(1 - y^{m})\), the off-diagonal entries \(-y^{m}y^{n}\): raising one score
takes weight from every other entry, because the weights must still sum to one. That is also why
every row sums to zero.
""",
    ),
    Exercise(
        id="attention.softmax-not-diagonal",
        chapter=CHAPTER,
        kind="symbolic",
        title="Why the softmax Jacobian is not diagonal",
        prompt=r"""
Attention's backward pass must go through \(\partial A / \partial S\). Derive
\(\partial A^{ij} / \partial S^{mn}\) for \(A = \operatorname{softmax}(S)\) row by row, and say which of
its entries are zero and why the others are not.
""",
        claims=("softmax.jacobian", "softmax.vjp"),
        solution='''
import numpy as np

from derivations.reference import softmax, softmax_backward

S = np.array([[0.5, -1.0, 2.0], [1.0, 1.0, 0.0]])
A, cache = softmax(S)
dA = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])   # the loss looks at A[0, 0] only
dS = softmax_backward(dA, cache)
print("dS =", dS.round(4).tolist())
print("row 0 is A[0, 0] * (delta - A[0, n]):", np.allclose(dS[0], A[0, 0] * (np.eye(3)[0] - A[0])))
print("row 1 is exactly zero (another query):", not dS[1].any())
''',
        discussion=r"""
The factor \(\delta^{i}_{m}\) makes every entry that couples two different rows (two queries) exactly
zero: each row is its own softmax. Within a row nothing is zero, because every score enters the
normalising sum, so changing one score moves every weight of its row. The backward pass never builds
this Jacobian: the row-sum form costs as much as the forward softmax.
""",
    ),
    Exercise(
        id="attention.saturation",
        chapter=CHAPTER,
        kind="choice",
        title="A flat loss and scores of ±150",
        prompt=r"""
Training does not move: the loss is flat from the first step, and the raw scores \(Q K^{\top}\) range
from about \(-150\) to \(150\). What happens to the gradient through the softmax?
""",
        options=("It all but vanishes: most rows of the softmax are saturated, and their Jacobian is nearly zero.",
                 "It explodes: large scores give large derivatives.",
                 "Nothing: the softmax Jacobian does not depend on the scale of its input."),
        answer=_saturation_choice,
        solution='''
import numpy as np

from derivations.reference import softmax, softmax_backward


def largest_entry_per_row(scores):
    """For each query (row), the largest |dA/dS| entry of its softmax."""
    y, cache = softmax(scores)
    columns = [softmax_backward(np.broadcast_to(np.eye(scores.shape[1])[n], scores.shape), cache)
               for n in range(scores.shape[1])]
    return np.abs(np.stack(columns, axis=-1)).max(axis=(1, 2))


saturated = {150: [], 1.5: []}                    # fraction of rows with every entry below 1e-3
median_row = {150: [], 1.5: []}
for seed in range(10):                             # 10 draws of 64 queries x 16 keys
    scores = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(64, 16))
    for scale in saturated:
        largest = largest_entry_per_row(scale * scores)
        saturated[scale].append(np.mean(largest < 1e-3))
        median_row[scale].append(np.median(largest))
for scale in saturated:
    print(f"scores in +-{scale}: saturated rows {min(saturated[scale]):.0%} to {max(saturated[scale]):.0%}, "
          f"median row's largest entry {min(median_row[scale]):.1e} to {max(median_row[scale]):.1e}")
saturated_low, saturated_high = min(saturated[150]), max(saturated[150])
median_low, median_high = min(median_row[150]), max(median_row[150])
small_median = min(median_row[1.5])

# Dividing by sqrt(d_k) fixes unit-variance queries and keys, not scores that are huge anyway:
weights, _ = softmax(np.array([-100.0, 150.0, -80.0]) / 8.0)
off_weight = np.sort(weights)[:-1].sum()          # the weight left for the other two keys
print("softmax([-100, 150, -80] / 8) =", weights)

# Where the fix applies: unit-variance entries and d_k = 4096
d_k = 4096
rng = np.random.default_rng(0)
q, k = rng.normal(size=(256, d_k)), rng.normal(size=(16, d_k))
raw = q @ k.T
raw_std, scaled_std = raw.std(), (raw / np.sqrt(d_k)).std()
print(f"std of raw scores {raw_std:.1f}, after / sqrt(d_k) {scaled_std:.2f}")
answer = 0
''',
        discussion=r"""
Over 10 draws of scores spread over \(\pm 150\), {{ saturated_low:pct0 }} to {{ saturated_high:pct0 }} of
the rows are saturated (no entry of their softmax Jacobian reaches \(10^{-3}\)); the median row's
largest entry is {{ median_low:sci1 }} to {{ median_high:sci1 }}, against at least {{ small_median:fix2 }}
for scores in \(\pm 1.5\), where no row saturates. Only rows whose top two scores happen to nearly tie
still pass a gradient, so the queries and keys hardly learn. Dividing by \(\sqrt{d_k}\) helps when the
scores are large because \(d_k\) is: with unit-variance entries and \(d_k = {{ d_k }}\) the raw scores have a standard
deviation of {{ raw_std:sig3 }}, the scaled ones {{ scaled_std:fix2 }}. It does not rescue scores that
are huge for another reason: \(\operatorname{softmax}([-100, 150, -80]/8)\) is still one-hot to within
{{ off_weight:sci1 }}.
""",
    ),
    Exercise(
        id="attention.score-gradient",
        chapter=CHAPTER,
        kind="numeric",
        title="Back through the weights and the softmax",
        prompt=r"""
Two queries of an attention layer have the weights, values and upstream gradient

\[
A = {{ A }}, \qquad V = {{ V }}, \qquad \frac{\partial L}{\partial O} = {{ dO }}.
\]

Compute \(\frac{\partial L}{\partial A} = \frac{\partial L}{\partial O} V^{\top}\), then the gradient of
the scores \(\frac{\partial L}{\partial S} = A \odot \big(\frac{\partial L}{\partial A} -
\operatorname{rowsum}(A \odot \frac{\partial L}{\partial A})\big)\).
""",
        givens=lambda: {"A": np.array([[0.5, 0.25, 0.25], [0.1, 0.6, 0.3]]),
                        "V": np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0]]),
                        "dO": np.array([[1.0, -1.0], [0.5, 2.0]])},
        answer=_weights_and_score_gradient,
        atol=1e-3,
        solution='''
dA = dO @ V.T
row_sums = (A * dA).sum(axis=1, keepdims=True)
dS = A * (dA - row_sums)
print("dL/dA =", dA.tolist())
print("rowsum(A * dA) =", row_sums.ravel().tolist())
print("dL/dS =", dS.round(4).tolist())
print("each row of dL/dS sums to zero:", np.allclose(dS.sum(axis=1), 0))
answer = {r"\\(\\partial L/\\partial A\\)": dA, r"\\(\\partial L/\\partial S\\)": dS}
''',
        discussion=r"""
The rows of \(\partial L / \partial S\) sum to zero: adding the same constant to every score of a row
leaves the softmax unchanged, so the loss cannot change along that direction.
""",
    ),
    Exercise(
        id="attention.value-gradient",
        chapter=CHAPTER,
        kind="numeric",
        title="The gradient of the values",
        prompt=r"""
With the same \(A = {{ A }}\) and \(\frac{\partial L}{\partial O} = {{ dO }}\), compute
\(\frac{\partial L}{\partial V}\) (a \(3 \times 2\) matrix).
""",
        givens=lambda: {"A": np.array([[0.5, 0.25, 0.25], [0.1, 0.6, 0.3]]), "dO": np.array([[1.0, -1.0], [0.5, 2.0]])},
        answer=lambda A, dO: attention_backward(dO, _attention_of(A, np.zeros((3, 2)))[1])[2],
        atol=1e-3,
        solution='''
dV = A.T @ dO        # value j collects the upstream gradient of every query, weighted by A[i, j]
print(dV)
answer = dV
''',
        discussion=r"""
The values do not depend on the scores, so their gradient needs no softmax backward: key \(j\)'s value
receives \(\sum_i A^{ij}\,\partial L/\partial O^{i}\), as much from each query as that query attended
to it.
""",
    ),
    Exercise(
        id="attention.query-key-gradients",
        chapter=CHAPTER,
        kind="symbolic",
        title="The gradients of the queries and keys",
        prompt=r"""
Derive \(\frac{\partial L}{\partial Q}\) and \(\frac{\partial L}{\partial K}\) from
\(\frac{\partial L}{\partial S}\) for \(S = Q K^{\top} / \sqrt{d_k}\), and check that the shapes work out
(\(Q\) is \(n_q \times d_k\), \(K\) is \(n_k \times d_k\)). Where does \(\sqrt{d_k}\) go?
""",
        claims=("attention.vjp.dQ", "attention.vjp.dK"),
        solution='''
import numpy as np

from derivations.reference import attention, attention_backward, numerical_gradient

rng = np.random.default_rng(1)
Q, K, V = rng.normal(size=(2, 3)), rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
dO = rng.normal(size=(2, 2))
_, cache = attention(Q, K, V)
dQ, dK, _ = attention_backward(dO, cache)
print("shapes: dQ", dQ.shape, "like Q", Q.shape, "| dK", dK.shape, "like K", K.shape)
loss = lambda Q, K: float(np.sum(attention(Q, K, V)[0] * dO))
print("dQ against central differences:", np.abs(dQ - numerical_gradient(loss, [Q, K], 0)).max())
print("dK against central differences:", np.abs(dK - numerical_gradient(loss, [Q, K], 1)).max())
''',
        discussion=r"""
\(\frac{\partial L}{\partial S}\) is \(n_q \times n_k\); times \(K\) (\(n_k \times d_k\)) it gives
\(n_q \times d_k\), the shape of \(Q\); its transpose times \(Q\) gives \(n_k \times d_k\), the shape of
\(K\). The factor \(1/\sqrt{d_k}\) of the forward pass stays in both gradients; writing
\(\frac{\partial L}{\partial Q} = \frac{\partial L}{\partial S} K\) without it is right only if \(S\)
denotes the unscaled product.
""",
    ),
    Exercise(
        id="attention.gradient-check",
        chapter=CHAPTER,
        kind="explain",
        title="Hands-on: check a gradient by central differences",
        prompt=r"""
Implement `numerical_gradient(f, x, h)` (central differences, one entry at a time) and
`relative_error(a, b)`, test them on \(f(x) = \sum_i (x_i^2 + 3x_i + 2)\), whose gradient is
\(2x + 3\), then use them to check the reference attention backward pass and a version of it with a
bug. What would you compute, what would you compare it with, and what tolerance would you accept?
""",
        starter=handson_source("gradcheck_starter"),
        solution=handson_source("gradcheck_solution"),
        sources=("gradcheck_solution.py",),
        discussion=r"""
Perturb one entry at a time by \(\pm h\) and divide the change of the loss by \(2h\); compare with the
analytic gradient by the largest relative error. In float64 with \(h = 10^{-6}\), the polynomial
agrees to {{ measured[polynomial]:sci1 }} and the reference attention backward to
{{ measured[attention]:sci1 }}, while the version that forgets \(1/\sqrt{d_k}\) in
\(\partial L/\partial Q\) is off by {{ measured[buggy]:sci1 }}. A correct gradient sits near the rounding floor (around
\(10^{-9}\) or below), a wrong one at \(10^{-2}\) or worse, so a threshold like \(10^{-6}\) separates them
with room on both sides.{{ check: measured[separated] }}
""",
    ),
    Exercise(
        id="attention.from-scratch",
        chapter=CHAPTER,
        kind="explain",
        title="Hands-on: attention from scratch",
        prompt=r"""
Implement scaled dot-product attention in NumPy, with an optional boolean mask (True where a query
may attend to a key), returning the output and the weights. Check it against the site's reference
`derivations.reference.attention` on random inputs with and without a causal mask.
""",
        starter=handson_source("attention_starter"),
        solution=handson_source("attention_solution"),
        sources=("attention_solution.py",),
        discussion=r"""
The implementation agrees with the reference: the largest difference over the outputs and weights,
with and without the mask, is {{ measured[max_difference]:sci1 }}. Every row of weights sums to one,
and the masked weights are exactly zero.{{ check: measured[all_good] }}
""",
    ),
    Exercise(
        id="attention.causal-mask",
        chapter=CHAPTER,
        kind="choice",
        title="Which mask makes attention causal?",
        prompt=r"""
A translation model's encoder lets every source position use every other; its decoder must let
position \(i\) use positions \(0, \dots, i\) only, in the forward pass and therefore in the backward
pass. Which mask \(M^{ij}\) (True where query \(i\) may attend to key \(j\)) does the decoder need?
""",
        options=(r"Lower triangular: \(M^{ij}\) is True for \(j \le i\).",
                 r"Upper triangular: \(M^{ij}\) is True for \(j \ge i\).",
                 r"All True (the encoder's).",
                 r"The diagonal: \(M^{ij}\) is True for \(j = i\) only."),
        answer=_causal_choice,
        solution='''
import numpy as np

from derivations.reference import attention, attention_backward


def influence(mask, n=5, d=4):
    """influence[i, j]: does output i depend on input position j? One backward pass per output row."""
    X = np.random.default_rng(0).normal(size=(n, d))
    found = np.zeros((n, n), dtype=bool)
    for i in range(n):
        _, cache = attention(X, X, X, mask)
        dO = np.zeros((n, d))
        dO[i] = 1.0
        dQ, dK, dV = attention_backward(dO, cache)
        found[i] = np.abs(dQ + dK + dV).sum(axis=1) > 1e-12
    return found


masks = {"lower": np.tril(np.ones((5, 5), bool)), "upper": np.triu(np.ones((5, 5), bool)),
         "full": np.ones((5, 5), bool), "diagonal": np.eye(5, dtype=bool)}
for number, (name, mask) in enumerate(masks.items(), start=1):
    print(f"option {number} ({name}): output i depends on inputs", [np.flatnonzero(row).tolist() for row in influence(mask)])
answer = 0
''',
        discussion=r"""
Only the lower triangle gives every output exactly its past and present. The gradient follows the
forward pass: a masked weight is exactly zero, so nothing flows back to a later position. The
encoder's mask is all True; the diagonal would forbid looking back at all.
""",
    ),
    Exercise(
        id="attention.single-token",
        chapter=CHAPTER,
        kind="choice",
        title="Queries and keys route, values carry",
        prompt=r"""
Run multi-head self-attention on a sequence of a single token and backpropagate any upstream
gradient. Which of the four weight matrices get a gradient that is exactly zero?
""",
        options=(r"\(W_q\) and \(W_k\)", r"\(W_v\)", r"None of them", r"All four"),
        answer=_single_token_choice,
        solution='''
import numpy as np

from derivations.reference import multi_head_attention, multi_head_attention_backward

rng = np.random.default_rng(0)
X = rng.normal(size=(1, 4))                         # one token, d_model = 4
W_q, W_k, W_v, W_o = (rng.normal(size=(4, 4)) for _ in range(4))
_, cache = multi_head_attention(X, W_q, W_k, W_v, W_o, n_heads=2)
_, dW_q, dW_k, dW_v, dW_o = multi_head_attention_backward(rng.normal(size=(1, 4)), cache)
for name, dW in [("W_q", dW_q), ("W_k", dW_k), ("W_v", dW_v), ("W_o", dW_o)]:
    print(name, "largest |gradient| =", np.abs(dW).max())
answer = 0
''',
        discussion=r"""
With one key, every weight is 1 whatever the scores are, so the scores, and with them the queries
and keys, cannot change the output: \(W_q\) and \(W_k\) decide *where* a position looks, \(W_v\) (and
\(W_o\)) decide *what* it brings back. With more tokens the weights do depend on the scores, and all
four matrices learn.
""",
    ),
]
