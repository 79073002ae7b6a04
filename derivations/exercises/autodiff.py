"""Exercises of the autodiff-engines chapter: accumulation, freed graphs, forward or reverse mode,
positions, and what attention costs as sequences grow."""

from __future__ import annotations

import numpy as np

from ..autodiff import Var
from ..reference import attention, layer_norm, multi_head_attention, positional_encoding
from ..reference.model import TransformerConfig, count_params, init_params
from .registry import Exercise, handson_source

CHAPTER = "autodiff-engines"


def _accumulated(w, passes):
    x = Var(w, requires_grad=True)
    loss = (x * x).sum()
    for k in range(passes):
        loss.backward(retain_graph=k < passes - 1)
    return x.grad


def _second_backward_choice():
    x = Var([1.0, 2.0], requires_grad=True)
    loss = (x * x).sum()
    loss.backward()
    try:
        loss.backward()
    except RuntimeError:
        return 0
    return 1


def _position_choice():
    """Swap the first two tokens: which change makes the last position's output notice?"""
    rng = np.random.default_rng(0)
    n, d = 5, 8
    X = rng.normal(size=(n, d))
    weights = [rng.normal(size=(d, d)) / np.sqrt(d) for _ in range(4)]
    swapped = X[[1, 0, 2, 3, 4]]

    def last_output(X, variant):
        if variant == "positions":
            X = X + positional_encoding(n, d)
        out, _ = multi_head_attention(X, *weights, n_heads=4 if variant == "heads" else 2)
        if variant == "layernorm":
            out, _ = layer_norm(out, np.ones(d), np.zeros(d))
        if variant == "scale":
            out = out * np.sqrt(d)
        return out[-1]

    variants = ["scale", "positions", "heads", "layernorm"]
    notices = [not np.allclose(last_output(X, v), last_output(swapped, v), rtol=0, atol=1e-12) for v in variants]
    if sum(notices) != 1:
        raise ValueError(f"expected one variant to break the symmetry, got {dict(zip(variants, notices))}")
    return notices.index(True)


def _cache_bytes(n, d):
    """Bytes of one head's attention cache (Q, K, V and the weights A), measured on the reference."""
    rng = np.random.default_rng(0)
    _, cache = attention(rng.normal(size=(n, d)), rng.normal(size=(n, d)), rng.normal(size=(n, d)))
    return sum(array.nbytes for array in cache)


def _growth(n_from, n_to, d):
    """Memory and matrix-product FLOPs of one head, from n_from to n_to positions.

    Memory is a n^2 + b n in n: both coefficients are read from two small measured caches, then
    evaluated at the long lengths (whose caches would not fit comfortably in memory here).
    """
    small, large = 64, 128
    m_small, m_large = _cache_bytes(small, d), _cache_bytes(large, d)
    a = (m_large / large - m_small / small) / (large - small)
    b = m_small / small - a * small
    memory = lambda n: a * n * n + b * n  # noqa: E731
    flops = lambda n: 2 * n * n * d + 2 * n * n * d  # noqa: E731  S = Q K^T and O = A V
    return {"memory factor": memory(n_to) / memory(n_from), "FLOPs factor": flops(n_to) / flops(n_from)}


EXERCISES = [
    Exercise(
        id="autodiff.accumulate",
        chapter=CHAPTER,
        kind="numeric",
        title="Two backward passes, no zeroing",
        prompt=r"""
With \(w = {{ w }}\) and \(L = \sum_i w_i^2\), an engine that accumulates into `.grad` (PyTorch does, and
so does this site's engine) runs the backward pass twice, keeping the graph, without zeroing in
between. What is `w.grad` afterwards?
""",
        givens=lambda: {"w": np.array([1.0, 2.0, 3.0])},
        answer=lambda w: _accumulated(w, passes=2),
        atol=1e-9,
        solution='''
from derivations.autodiff import Var, zero_grad

x = Var(w, requires_grad=True)
loss = (x * x).sum()
loss.backward(retain_graph=True)
print("after one backward pass: ", x.grad)
loss.backward()
print("after two backward passes:", x.grad)
answer = x.grad

# Training without zeroing: every step applies the sum of all gradients so far.
largest = {}
for zeroing in (True, False):
    x, sizes = Var(w, requires_grad=True), []
    for step in range(50):
        if zeroing:
            zero_grad([x])
        (x * x).sum().backward()
        x.value = x.value - 0.1 * x.grad       # one SGD step on x
        sizes.append(np.abs(x.value).max())
    largest[zeroing] = max(sizes[-10:])
    print(f"50 SGD steps, zeroing={zeroing}: largest |w| over the last 10 steps {largest[zeroing]:.2e}")
with_zeroing, without_zeroing = largest[True], largest[False]
settles = with_zeroing < 1e-3 < without_zeroing
''',
        discussion=r"""
Each pass adds \(2w\) to `.grad`, so two passes leave \(4w\). In a training loop that never zeroes,
step \(t\) applies the sum of all \(t\) gradients so far, a momentum that never decays: on
\(L = \sum w^2\) with learning rate 0.1, fifty steps with zeroing bring the weights to within
{{ with_zeroing:sci1 }} of the minimum, while without zeroing they still swing as far as
{{ without_zeroing:sig2 }} from it over the last ten steps.{{ check: settles }} With a larger rate or a
less forgiving loss the swings grow until the weights are destroyed. Call `optimizer.zero_grad()` (or the
engine's `zero_grad`) once per step; accumulating on purpose, over several small batches before one
step, is the only reason not to.
""",
    ),
    Exercise(
        id="autodiff.second-backward",
        chapter=CHAPTER,
        kind="choice",
        title="A second backward pass through a freed graph",
        prompt=r"""
After `loss.backward()` (without `retain_graph=True`), the same `loss.backward()` is called again.
What happens? (TensorFlow's `GradientTape` asks the same question: a tape created with the default
`persistent=False` answers one gradient request.)
""",
        options=("An error: the first pass freed the saved tensors the backward pass needs.",
                 "The gradients are computed again and added to `.grad`.",
                 "The gradients of the first pass are returned again.",
                 "The gradients come out as zeros."),
        answer=_second_backward_choice,
        solution='''
from derivations.autodiff import Var

x = Var([1.0, 2.0], requires_grad=True)
loss = (x * x).sum()
loss.backward()
try:
    loss.backward()
    answer = 1
except RuntimeError as error:
    print("RuntimeError:", str(error).split(") ", 1)[1])   # the message, without the node's serial number
    answer = 0
''',
        discussion=r"""
A backward pass needs what the forward pass saved (here \(x\), for the derivative \(2x\)); an engine
frees it as soon as each rule has run, since most graphs are used once and the saved tensors are
most of a step's memory. Keep them with `retain_graph=True` (PyTorch, this engine) or
`persistent=True` (a TensorFlow tape, which must then be deleted by hand) when a second pass is
really needed; otherwise run the forward pass again.
""",
    ),
    Exercise(
        id="autodiff.forward-or-reverse",
        chapter=CHAPTER,
        kind="numeric",
        title="How many passes does a gradient cost?",
        prompt=r"""
Forward mode computes one Jacobian-vector product per pass, reverse mode one vector-Jacobian product.
How many passes of each does the gradient of the loss of the chapter's model (one number, with
respect to every parameter) take?
""",
        answer=lambda: {"forward-mode passes": count_params(init_params(TransformerConfig(), 0)), "reverse-mode passes": 1},
        atol=0.5,
        solution='''
import numpy as np

from derivations.autodiff import count_flops, jacfwd, jacrev, ops
from derivations.reference.model import TransformerConfig, count_params, init_params

f = lambda x: ops.tanh(x * x).sum()                 # R^6 -> R: one output, six inputs
x = np.linspace(-1.0, 1.0, 6)
with count_flops() as forward_mode:
    J_forward = jacfwd(f, x)
with count_flops() as reverse_mode:
    J_reverse = jacrev(f, x)
print("same Jacobian:", np.allclose(J_forward, J_reverse))
print("JVP passes (one per input):", forward_mode["jvp calls"] // 3, "| VJP passes (one per output):",
      reverse_mode["vjp calls"] // 3)                # each pass runs the three ops' rules
parameters = count_params(init_params(TransformerConfig(), 0))
answer = {"forward-mode passes": parameters, "reverse-mode passes": 1}
print(f"the model's gradient: {parameters:,} forward-mode passes or 1 reverse-mode pass")
''',
        discussion=r"""
Forward mode pushes one input direction through the whole computation per pass, so a gradient needs
as many passes as there are parameters, {{ parameters }} here; reverse mode pulls the one output's
cotangent back and gets every parameter's derivative at once. That asymmetry is why training uses
reverse mode. Forward mode wins for the opposite shape, few inputs and many outputs.
""",
    ),
    Exercise(
        id="autodiff.positions",
        chapter=CHAPTER,
        kind="choice",
        title="What tells attention where a token is?",
        prompt=r"""
Self-attention without anything else treats its input as a set: swap two tokens and the other
outputs do not change, nor do their gradients. Which of these changes makes the last position's
output depend on the order of the first two tokens?
""",
        options=(r"Multiplying the output by \(\sqrt{d}\).",
                 "Adding sinusoidal positional encodings to the inputs.",
                 "Using four heads instead of two.",
                 "Applying LayerNorm to the output."),
        answer=_position_choice,
        solution='''
import numpy as np

from derivations.reference import layer_norm, multi_head_attention, positional_encoding

rng = np.random.default_rng(0)
n, d = 5, 8
X = rng.normal(size=(n, d))
weights = [rng.normal(size=(d, d)) / np.sqrt(d) for _ in range(4)]
swapped = X[[1, 0, 2, 3, 4]]                            # the first two tokens exchanged


def last_output(X, variant):
    if variant == "positions":
        X = X + positional_encoding(n, d)
    out, _ = multi_head_attention(X, *weights, n_heads=4 if variant == "heads" else 2)
    if variant == "layernorm":
        out, _ = layer_norm(out, np.ones(d), np.zeros(d))
    if variant == "scale":
        out = out * np.sqrt(d)
    return out[-1]


for number, variant in enumerate(["scale", "positions", "heads", "layernorm"], start=1):
    change = np.abs(last_output(X, variant) - last_output(swapped, variant)).max()
    print(f"option {number} ({variant}): the last output changes by {change:.1e}")
answer = 1
''',
        discussion=r"""
Attention weighs keys by content alone, and a sum does not care about order, so scaling, more heads
or a LayerNorm leave the last output unchanged up to rounding. Adding a position-dependent vector to
each input gives two tokens with the same content different keys and values; learned position
embeddings (a trainable table) do the same and receive gradients of their own. A causal mask also
breaks the symmetry, by letting position \(i\) see only its past.
""",
    ),
    Exercise(
        id="autodiff.attention-memory",
        chapter=CHAPTER,
        kind="numeric",
        title="From 4K to 32K tokens",
        prompt=r"""
A context of {{ n_from }} tokens grows to {{ n_to }}, eight times longer. For one attention head with
\(d_{\text{head}} = {{ d_head }}\), by what factors do the memory the backward pass keeps (the
saved \(Q\), \(K\), \(V\) and weights \(A\)) and the arithmetic of the two products \(Q K^{\top}\) and
\(A V\) grow? Why not eight?
""",
        givens=lambda: {"n_from": 4096, "n_to": 32768, "d_head": 64},
        answer=lambda n_from, n_to, d_head: _growth(n_from, n_to, d_head),
        rtol=1e-3,
        solution='''
from derivations.reference import attention

rng = np.random.default_rng(0)
for n in (64, 128):
    _, cache = attention(rng.normal(size=(n, d_head)), rng.normal(size=(n, d_head)), rng.normal(size=(n, d_head)))
    measured = sum(array.nbytes for array in cache)
    print(f"n = {n}: saved {measured:,} bytes = 8 (3 n d + n^2) = {8 * (3 * n * d_head + n * n):,}")

memory = lambda n: 8 * (3 * n * d_head + n * n)      # float64: Q, K, V are n x d, A is n x n
flops = lambda n: 4 * n * n * d_head                 # 2 n^2 d for Q K^T, 2 n^2 d for A V
print(f"memory: {memory(n_from) / 2**20:,.0f} MiB -> {memory(n_to) / 2**20:,.0f} MiB per head")
answer = {"memory factor": memory(n_to) / memory(n_from), "FLOPs factor": flops(n_to) / flops(n_from)}
memory_factor = answer["memory factor"]
weights_share = n_to * n_to / (3 * n_to * d_head + n_to * n_to)
''',
        discussion=r"""
Every query meets every key, so \(A\) has \(n^2\) entries and both products \(2n^2 d\) operations: eight
times the tokens, \(8^2 = 64\) times the arithmetic. The memory grows a little less,
{{ memory_factor:sig3 }}-fold, because \(Q\), \(K\) and \(V\) grow only eightfold; at 32K tokens the weights are
{{ weights_share:pct1 }} of what the head keeps. Memory-efficient attention (FlashAttention) avoids storing
\(A\) at all and recomputes it blockwise in the backward pass: the arithmetic stays quadratic, the
memory becomes linear.
""",
    ),
    Exercise(
        id="autodiff.mask-or-delete",
        chapter=CHAPTER,
        kind="explain",
        title="Why mask the future instead of deleting it?",
        prompt=r"""
A decoder must not let position \(i\) see tokens after it. Why not simply delete the future tokens
from the input? Compare one masked pass over a sequence with one pass per prefix.
""",
        solution='''
import numpy as np

from derivations.reference import multi_head_attention

rng = np.random.default_rng(0)
T, d = 16, 16
X = rng.normal(size=(T, d))
weights = [rng.normal(size=(d, d)) / np.sqrt(d) for _ in range(4)]
masked, _ = multi_head_attention(X, *weights, n_heads=2, mask=np.tril(np.ones((T, T), dtype=bool)))
prefix_rows, difference = 0, 0.0
for i in range(1, T + 1):                               # the future deleted: one pass per prefix
    out, _ = multi_head_attention(X[:i], *weights, n_heads=2)
    difference = max(difference, np.abs(out[-1] - masked[i - 1]).max())
    prefix_rows += i
print(f"largest difference, masked pass vs prefixes: {difference:.1e}")
print(f"passes: 1 against {T}; rows through the projections: {T} against {prefix_rows}")
same = difference < 1e-12
''',
        discussion=r"""
They compute the same thing: each position's output from the masked pass equals the last output of
the pass over its prefix (largest difference {{ difference:sci1 }}).{{ check: same }} But the masked
pass gives all {{ T }} next-token predictions of a training sequence at once, as one batch of
matrix products of fixed shape, while deleting takes {{ T }} passes of growing length and projects
{{ prefix_rows }} rows instead of {{ T }}. On a GPU the fixed shapes matter as much as the count:
sequences of a batch stay aligned, nothing is resized, and the masked weights cost only the
arithmetic of entries that come out as zero.
""",
    ),
    Exercise(
        id="autodiff.attention-cost",
        chapter=CHAPTER,
        kind="explain",
        title="Hands-on: attention's memory and arithmetic against sequence length",
        prompt=r"""
Measure, for sequence lengths from 64 to 1,024, how many bytes one attention head keeps for its
backward pass and how many floating-point operations its two matrix products take, and fit the
growth exponent. (Wall-clock time grows the same way but depends on the machine; the starter code
times it too, but this site shows only what is the same on every machine.)
""",
        starter=handson_source("cost_starter"),
        solution=handson_source("cost_solution"),
        sources=("cost_solution.py",),
        discussion=r"""
The arithmetic grows with exponent {{ measured[flops_slope]:fix3 }} at every length, and so do the bytes of
the attention weights \(A\): doubling the sequence quadruples both. The total the head keeps grows a
little slower at first, because \(Q\), \(K\) and \(V\) add \(3 n d\) entries that grow linearly: its
exponent rises from {{ measured[first_slope]:fix3 }} between 64 and 128 tokens to
{{ measured[memory_slope]:fix3 }} between 512 and 1,024, toward 2 as the \(n^2\) weights take
over.{{ check: measured[quadratic] }}
""",
    ),
]
