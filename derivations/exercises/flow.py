"""Exercises of the gradient-flow chapter: chains, residual paths, clipping, learning rates, precision,
and what the site's own model measures (the sources' numbers here were illustrative; these are computed)."""

from __future__ import annotations

import numpy as np

from ..reference import clip_grad_norm, linear, linear_backward, sgd_step
from .registry import Exercise

CHAPTER = "gradient-flow"

#: The stages whose gradient norms the attenuation exercise gives, in backward order.
STAGES = ("logits", "block1.out", "block1.add1", "block0.out", "block0.add1", "embed.out")


def _chain(depth, branch, residual):
    """d(output)/d(input) of ``depth`` scalar layers ``x -> branch * x`` (plus ``x`` when residual),
    by the reference linear backward pass, one layer at a time."""
    x = np.ones((1, 1))
    caches = []
    for _ in range(depth):
        y, cache = linear(x, np.array([[branch]]))
        caches.append(cache)
        x = x + y if residual else y
    g = np.ones((1, 1))
    for cache in reversed(caches):
        through_branch = linear_backward(g, cache)[0]
        g = g + through_branch if residual else through_branch
    return g[0, 0]


def _learning_rates(w0, target, lrs, steps):
    finals = {}
    for lr in lrs:
        params = {"w": np.array(w0)}
        for _ in range(steps):
            params = sgd_step(params, {"w": params["w"] - target}, lr)  # d/dW of (W - 3)^2 / 2
        finals[f"lr = {lr}"] = params["w"]
    return finals


def _stage_norms():
    from ..reference.train import load_or_train

    norms = load_or_train().stage_grad_norms
    return {"stages": list(STAGES), "norms": np.array([float(f"{norms[s][0]:.3g}") for s in STAGES])}


EXERCISES = [
    Exercise(
        id="flow.residual-chain",
        chapter=CHAPTER,
        kind="numeric",
        title="Ten layers with and without a skip",
        prompt=r"""
A chain of {{ depth }} layers where each layer's own derivative is {{ branch }} (scalar layers
\(x \mapsto {{ branch }}\,x\), to keep it simple). What reaches the first layer, \(\partial y / \partial x\),
without residual connections, and with them (\(x \mapsto x + {{ branch }}\,x\) at every layer)?
""",
        givens=lambda: {"depth": 10, "branch": 0.8},
        answer=lambda depth, branch: {"without residual connections": _chain(depth, branch, residual=False),
                                      "with residual connections": _chain(depth, branch, residual=True)},
        rtol=1e-3,
        solution='''
without = branch ** depth                  # the chain rule multiplies the local derivatives
with_skip = (1 + branch) ** depth          # each residual layer's derivative is 1 + branch
print(f"without: {without:.4f}; with: {with_skip:.1f}")
print(f"with a branch of -0.5 instead: {(1 - 0.5) ** depth:.4f}; of 0: {(1 + 0) ** depth}")
answer = {"without residual connections": without, "with residual connections": with_skip}
''',
        discussion=r"""
Without the skip, ten factors of 0.8 leave about a tenth of the gradient. With it, each factor is
\(1 + 0.8\), and the product grows to {{ with_skip:sig3 }}: a residual connection does not pass the
gradient "unchanged", it adds the identity to the branch's Jacobian (claim `residual.jacobian`). What
it guarantees is a path whose factor is exactly 1 at every layer, so the gradient cannot vanish
merely because the branches are small; whether it grows depends on the branches, which is why
residual networks also scale their branches at initialisation and normalise.
""",
    ),
    Exercise(
        id="flow.residual-identity",
        chapter=CHAPTER,
        kind="symbolic",
        title="What a residual connection guarantees, and what it does not",
        prompt=r"""
A block computes \(y = x + f(x)\). Write \(\partial y^{m} / \partial x^{n}\) and the gradient that reaches
\(x\) from \(g = \partial L / \partial y\). Someone claims the identity path makes at least \(g\) flow back,
so \(\lVert \partial L/\partial x \rVert \ge \lVert g \rVert\). Prove it or find a counterexample.
""",
        claims=("residual.jacobian",),
        solution='''
import numpy as np

g = np.array([1.0, 2.0])
J = np.array([[-0.5, 0.0], [0.0, -0.5]])           # a branch whose Jacobian shrinks its input
through_identity = g
through_branch = J.T @ g
dx = through_identity + through_branch             # the two paths add
print("identity path:", through_identity, "| branch path:", through_branch, "| sum:", dx)
print(f"|dL/dx| = {np.linalg.norm(dx):.4f} < |g| = {np.linalg.norm(g):.4f}")
''',
        discussion=r"""
The Jacobian is \(\delta^{m}_{n} + \partial f^{m}/\partial x^{n}\), so
\(\frac{\partial L}{\partial x} = g + J_f^{\top} g\): the identity path does deliver \(g\) itself, but
the branch path adds \(J_f^{\top} g\), which can point against it. With \(J_f = -\tfrac{1}{2}I\) the sum is
\(g/2\). The claim is wrong; what holds is that the gradient is never *only* a product of branch
Jacobians, so it cannot vanish just because every branch is small.
""",
    ),
    Exercise(
        id="flow.clip",
        chapter=CHAPTER,
        kind="numeric",
        title="Clipping a gradient by its norm",
        prompt=r"""
A gradient \(g = {{ g }}\) has norm \(\lVert g \rVert = 2.5\). Clip it to `max_norm` \(= {{ max_norm }}\)
as PyTorch does (multiply by \(\text{max\_norm} / (\lVert g \rVert + 10^{-6})\) when the norm exceeds
it). What is the clipped gradient?
""",
        givens=lambda: {"g": np.array([1.5, -2.0]), "max_norm": 1.0},
        answer=lambda g, max_norm: clip_grad_norm([g], max_norm)[0][0],
        atol=1e-5,
        solution='''
norm = np.sqrt(np.sum(g**2))
scale = max_norm / (norm + 1e-6) if norm > max_norm else 1.0
clipped = g * scale
print(f"norm {norm}, scale {scale:.8f}, clipped {clipped.round(7)}, new norm {np.linalg.norm(clipped):.7f}")
answer = clipped
''',
        discussion=r"""
Clipping rescales the whole gradient, so its direction is unchanged (claim `clip.preserves-direction`)
and only the step's length is capped, here from 2.5 to just under 1. Clipping each entry separately
would change the direction.
""",
    ),
    Exercise(
        id="flow.learning-rates",
        chapter=CHAPTER,
        kind="numeric",
        title="Four learning rates on a parabola",
        prompt=r"""
Minimise \(L(W) = \tfrac{1}{2}(W - 3)^2\) by gradient descent from \(W = 0\). Where is \(W\) after 10 steps
with learning rate 0.1, 0.5, 1.0 and 2.1? What goes wrong with 2.1, and where is the limit?
""",
        givens=lambda: {"w0": 0.0, "target": 3.0, "lrs": [0.1, 0.5, 1.0, 2.1], "steps": 10},
        answer=_learning_rates,
        rtol=1e-4,
        atol=1e-4,
        solution='''
answer = {}
for lr in lrs:
    w, path = w0, [w0]
    for _ in range(steps):
        w = w - lr * (w - target)               # dL/dW = W - 3
        path.append(w)
    answer[f"lr = {lr}"] = w
    print(f"lr {lr}: " + " ".join(f"{x:.3g}" for x in path))
factors = {lr: 1 - lr for lr in lrs}           # the error W - 3 is multiplied by 1 - lr at every step
print("error factor per step:", factors)
final_error = abs(answer["lr = 2.1"] - target)
''',
        discussion=r"""
The error \(W - 3\) is multiplied by \(1 - \text{lr}\) at every step. With 0.1 it shrinks slowly, with 0.5
fast, with 1.0 the first step lands on the minimum. With 2.1 the factor is \(-1.1\): the iterate jumps
across the minimum and lands farther away every time, {{ final_error:sig3 }} away after ten steps, and
it diverges. The limit is \(|1 - \text{lr}| < 1\), \(\text{lr} < 2\): two over the curvature. A real
loss has many curvatures at once, and the largest sets the limit; a rate far below it wastes steps
along the flat directions.
""",
    ),
    Exercise(
        id="flow.attenuation",
        chapter=CHAPTER,
        kind="numeric",
        title="How much of the gradient reaches the embeddings?",
        prompt=r"""
Before training, the site's model was measured on a batch of 256 examples: the norm of the gradient
of the loss with respect to the logits is {{ norms[0] }}, at the output of the second block
{{ norms[1] }}, after its attention sum {{ norms[2] }}, at the output of the first block {{ norms[3] }},
after its attention sum {{ norms[4] }} and at the embedded input {{ norms[5] }}. Compute the
attenuation from the logits to the embeddings, \(\lVert\partial L/\partial X_{\text{emb}}\rVert /
\lVert\partial L/\partial z\rVert\). Which stage has the smallest gradient, and is this a problem?
""",
        givens=_stage_norms,
        answer=lambda stages, norms: norms[-1] / norms[0],
        rtol=1e-3,
        solution='''
ratio = norms[-1] / norms[0]
smallest = stages[int(np.argmin(norms))]
spread = norms.max() / norms.min()
print(f"embeddings / logits = {ratio:.3f}; smallest: {smallest}; largest / smallest = {spread:.2f}")
answer = ratio
''',
        discussion=r"""
Almost all of it: the ratio is {{ ratio:sig3 }}, and the smallest gradient is at {{ smallest:text }},
within a factor of {{ spread:sig2 }} of the largest. Through two post-norm blocks each residual sum
adds the skip's gradient to the branch's and each LayerNorm rescales by \(\gamma/\sigma\), so nothing
compounds. This is not a problem; a product of many factors below one would be (compare the ten
factors of 0.8 in `flow.residual-chain`).
""",
    ),
    Exercise(
        id="flow.vanishing-fixes",
        chapter=CHAPTER,
        kind="explain",
        title="Three ways to stop a gradient from vanishing",
        prompt=r"""
In a deep network the gradient at the first layer is \(10^{-12}\) of the one at the output. Name three
architectural changes that fix it and explain how each helps. Measure them on a stack of 30 ReLU
layers of width 32.
""",
        solution='''
import numpy as np

from derivations.reference import layer_norm, layer_norm_backward, linear, linear_backward, relu, relu_backward


def first_layer_ratio(kind, seed, depth=30, width=32, batch=16):
    """|dL/dx_0| / |dL/dx_depth| for a unit upstream gradient, with the reference backward passes."""
    rng = np.random.default_rng(seed)
    gain = {"He initialisation": 2.0, "scaled residual": 2.0 / depth}.get(kind, 1.0)   # weight variance x width
    x = rng.normal(size=(batch, width))
    caches = []
    for _ in range(depth):
        W = rng.normal(size=(width, width)) * np.sqrt(gain / width)
        h = x
        if kind == "pre-norm residual":
            h, ln = layer_norm(x, np.ones(width), np.zeros(width))
        z, lin = linear(h, W)
        a, act = relu(z)
        caches.append((lin, act, ln if kind == "pre-norm residual" else None))
        x = x + a if "residual" in kind else a
    g = np.ones_like(x)
    top = np.linalg.norm(g)
    for lin, act, ln in reversed(caches):
        branch = linear_backward(relu_backward(g, act), lin)[0]
        if ln is not None:
            branch = layer_norm_backward(branch, ln)[0]
        g = g + branch if "residual" in kind else branch
    return np.linalg.norm(g) / top


kinds = ["plain", "He initialisation", "residual", "scaled residual", "pre-norm residual"]
ratios = {kind: [first_layer_ratio(kind, seed) for seed in range(10)] for kind in kinds}
for kind, values in ratios.items():
    print(f"{kind:18} first/last gradient norm: {min(values):.1e} to {max(values):.1e} (10 seeds)")
plain_low, plain_high = min(ratios["plain"]), max(ratios["plain"])
he_low, he_high = min(ratios["He initialisation"]), max(ratios["He initialisation"])
res_low, res_high = min(ratios["residual"]), max(ratios["residual"])
scaled_low, scaled_high = min(ratios["scaled residual"]), max(ratios["scaled residual"])
pre_low, pre_high = min(ratios["pre-norm residual"]), max(ratios["pre-norm residual"])
plain_vanishes = plain_high < 1e-3
fixes_hold = min(he_low, scaled_low, pre_low) > 0.1 and max(he_high, scaled_high, pre_high) < 100
''',
        discussion=r"""
With weights of variance \(1/\text{width}\), each ReLU layer halves the second moment of the signal and
of the gradient, and over 30 layers the first layer receives {{ plain_low:sci1 }} to
{{ plain_high:sci1 }} of the output's gradient (10 seeds).{{ check: plain_vanishes }} Three fixes, measured
the same way:

1. **Initialise for the activation** (He: variance \(2/\text{width}\)): each layer then preserves the
   second moment, and the ratio is {{ he_low:sig2 }} to {{ he_high:sig2 }}.
2. **Residual connections**: every layer adds the identity to its Jacobian, so a path with factor 1
   skips every branch and the gradient cannot vanish. It can grow instead, since every branch adds
   to the identity: with the plain weights the ratio is {{ res_low:sci1 }} to {{ res_high:sci1 }}.
   Scaling each branch's initial weights by \(1/\text{depth}\) (variance \(2/(\text{width}\cdot\text{depth})\),
   the idea of GPT-2's residual scaling) brings it to {{ scaled_low:sig2 }} to {{ scaled_high:sig2 }}.
3. **Normalisation in the residual branches** (pre-norm LayerNorm): each branch sees an input of unit
   scale however large the stream has grown, which keeps the branches' contributions in check even
   with the plain weights: the ratio is {{ pre_low:sig2 }} to {{ pre_high:sig2 }}.{{ check: fixes_hold }}

Gated recurrences (LSTM, GRU) are the same idea as 2 for recurrent networks: an additive path
through time.
""",
    ),
    Exercise(
        id="flow.mixed-precision",
        chapter=CHAPTER,
        kind="explain",
        title="Why updates need more precision than gradients",
        prompt=r"""
Mixed-precision training computes the forward and backward passes in float16 but keeps a float32
copy of the weights for the update. Why is low precision fine for the gradients but not for the
weights? Measure it.
""",
        solution='''
import numpy as np

spacing_at_one = float(np.spacing(np.float16(1.0)))      # the gap to the next float16 above 1
w16, w32 = np.float16(1.0), np.float32(1.0)
update = 1e-4                                           # a typical lr * gradient
for _ in range(1000):
    w16 = np.float16(w16 + np.float16(update))
    w32 = np.float32(w32 + np.float32(update))
print(f"float16 spacing at 1.0: {spacing_at_one}")
print(f"after 1000 updates of {update}: float16 weight {float(w16)}, float32 weight {float(w32):.5f}")

g = np.random.default_rng(0).normal(size=10_000) * 1e-3  # gradients of a typical size
relative = np.abs(g.astype(np.float16).astype(np.float64) - g) / np.abs(g)
print(f"rounding a gradient to float16: median relative error {np.median(relative):.1e}")
tiny = np.float16(1e-8)
print(f"but 1e-8 in float16 is {float(tiny)}: small gradients underflow (hence loss scaling)")
float16_weight, float32_weight = float(w16), float(w32)
median_error = np.median(relative)
update_lost = float16_weight == 1.0
''',
        discussion=r"""
An update is a small number added to a large one. Near 1.0, float16 numbers are
{{ spacing_at_one:sci2 }} apart, so adding \(10^{-4}\) rounds back to 1.0: after 1,000 such updates the
float16 weight is still {{ float16_weight:fix1 }} while the float32 one has reached
{{ float32_weight:sig4 }}.{{ check: update_lost }} A gradient, on the other hand, is used once, in a
product: a relative error of {{ median_error:sci1 }} (the median of float16 rounding) barely changes the
direction of a step. The danger for gradients is range, not precision: values below about
\(6 \times 10^{-8}\) flush to zero, which is why mixed precision multiplies the loss by a large factor
before the backward pass and divides the gradients by it afterwards.
""",
    ),
    Exercise(
        id="flow.parameter-gradients",
        chapter=CHAPTER,
        kind="explain",
        title="Do gradients shrink on their way back?",
        prompt=r"""
The gradient of the output head's weights is larger than that of the embedding table. Do gradients
get smaller as they travel backward through the site's model, and is it a problem? Compare the
parameter gradients with the gradients of the activations they sit between, measured before
training.
""",
        solution='''
import numpy as np

from derivations.reference.train import load_or_train

run = load_or_train()
params, stages = run.param_grad_norms, run.stage_grad_norms   # norms on 256 examples, before step 0
w_out, embed = params["W_out"][0], params["embed"][0]
at_logits, at_embedding = stages["logits"][0], stages["embed.out"][0]
print(f"parameters:  |dL/dW_out| {w_out:.3f}, |dL/dE| {embed:.3f}, ratio {w_out / embed:.1f}")
print(f"activations: |dL/dz| {at_logits:.4f}, |dL/dX_emb| {at_embedding:.4f}, ratio {at_logits / at_embedding:.2f}")
parameter_ratio = w_out / embed
activation_ratio = at_logits / at_embedding
activations_hold = 0.5 < activation_ratio < 2
''',
        discussion=r"""
The parameter gradients differ: \(\lVert\partial L/\partial W_{\text{out}}\rVert\) is {{ parameter_ratio:sig2 }}
times \(\lVert\partial L/\partial E\rVert\). But the gradient that travels, the one with respect to the
activations, does not shrink: it is {{ activation_ratio:sig3 }} times larger at the logits than at the
embedded input.{{ check: activations_hold }} A weight's gradient is the outer product of its layer's input with
the gradient at its output (\(X^{\top}\frac{\partial L}{\partial Y}\)), so its size also reflects the
size of that input and how many positions share the weight; the head sees LayerNorm outputs of norm
about \(\sqrt{64}\) per row. It is no problem for Adam, which scales each parameter's step by its own
gradient history; it would be one for plain SGD, whose single learning rate suits one scale.
""",
    ),
    Exercise(
        id="flow.component-gradients",
        chapter=CHAPTER,
        kind="explain",
        title="What each component does to the gradient",
        prompt=r"""
Design an experiment that measures how much each component (attention, FFN, residual sums,
LayerNorm) changes the gradient's size, run it on the site's untrained model over 10
initialisations, and say what you learn.
""",
        solution='''
import numpy as np

from derivations.reference.model import TransformerConfig, forward_backward, init_params
from derivations.reference.task import make_split

config = TransformerConfig()
data = make_split(64, 1, seed=0)[0]
steps = {  # (gradient after the component, gradient before it), in backward order, block 1
    "LayerNorm 2": ("block1.add2", "block1.out"),
    "FFN branch + skip": ("block1.ln1.out", "block1.add2"),
    "FFN branch alone": ("block1.ffn.pre", "block1.ffn.out"),
    "LayerNorm 1": ("block1.add1", "block1.ln1.out"),
    "attention branch + skip": ("block1.in", "block1.add1"),
}
factors = {name: [] for name in steps}
for seed in range(10):
    _, _, trace = forward_backward(init_params(config, seed), data.tokens, data.targets, config, record=True)
    for name, (after, before) in steps.items():
        factors[name].append(np.linalg.norm(trace["grads"][after]) / np.linalg.norm(trace["grads"][before]))
for name, values in factors.items():
    print(f"{name:24} gradient norm x {min(values):.2f} to {max(values):.2f}")
ln2_low, ln2_high = min(factors["LayerNorm 2"]), max(factors["LayerNorm 2"])
ffn_low, ffn_high = min(factors["FFN branch + skip"]), max(factors["FFN branch + skip"])
branch_low, branch_high = min(factors["FFN branch alone"]), max(factors["FFN branch alone"])
attn_low, attn_high = min(factors["attention branch + skip"]), max(factors["attention branch + skip"])
sums_keep = min(factors["FFN branch + skip"] + factors["attention branch + skip"]) > 0.5
''',
        discussion=r"""
Record the gradient with respect to every intermediate result (the reference does with
`record=True`) and divide its norm after each component by its norm before, over 10
initialisations. In the second block, LayerNorm 2 multiplies the gradient's norm by
{{ ln2_low:sig2 }} to {{ ln2_high:sig2 }}; the FFN branch alone by {{ branch_low:sig2 }} to
{{ branch_high:sig2 }}, but the branch plus its skip by {{ ffn_low:sig2 }} to {{ ffn_high:sig2 }}; the
attention branch plus its skip by {{ attn_low:sig2 }} to {{ attn_high:sig2 }}.{{ check: sums_keep }}
What you learn: the residual sums keep the gradient's scale whatever a branch does, the LayerNorms
rescale it by \(\gamma/\sigma\) of their input, and a component that multiplied it by much less than one
at every block would be the place to look when the first layers stop learning.
""",
    ),
]
