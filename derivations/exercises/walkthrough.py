"""Exercises of the walkthrough notebook: a backward pass by hand, the chain to the first layer, why the
notebook moves its parameters before checking, and a small language model trained end to end."""

from __future__ import annotations

import numpy as np

from ..reference import gelu, gelu_backward, linear, linear_backward, relu, relu_backward
from .registry import Exercise, handson_source

CHAPTER = "walkthrough"


def _two_layer_backward(x, W1, b1, W2, b2, target):
    """The network of the hand calculation, forward and backward with the reference operations."""
    z, cache1 = linear(x[None], W1, b1)
    h, cache_relu = relu(z)
    out, cache2 = linear(h, W2, b2)
    dout = out - target[None]                    # d/d out of 0.5 (out - target)^2
    dh, dW2, db2 = linear_backward(dout, cache2)
    dz = relu_backward(dh, cache_relu)
    _, dW1, db1 = linear_backward(dz, cache1)
    return {r"\(\partial L/\partial\,\text{output}\)": dout[0], r"\(\partial L/\partial W_2\)": dW2,
            r"\(\partial L/\partial b_2\)": db2, r"\(\partial L/\partial\,\text{hidden}\)": dh[0],
            r"\(\partial L/\partial W_1\)": dW1, r"\(\partial L/\partial b_1\)": db1}


def _perturb_choice():
    """At the initial parameters (biases 0), does a GELU derivative taken at X W1 instead of X W1 + b1
    give the right gradient? And after moving the biases?"""
    rng = np.random.default_rng(0)
    X, W1, dU = rng.normal(size=(4, 3)), rng.normal(size=(3, 5)), rng.normal(size=(4, 5))
    errors = []
    for b1 in (np.zeros(5), 0.1 * rng.normal(size=5)):
        _, right = gelu(X @ W1 + b1)
        _, wrong = gelu(X @ W1)                  # the mistake: the bias left out of the derivative's argument
        errors.append(np.abs(gelu_backward(dU, right) - gelu_backward(dU, wrong)).max())
    return 0 if errors[0] == 0.0 and errors[1] > 1e-3 else 1


NETWORK = {"x": np.array([2.0, 1.0]), "W1": np.array([[0.5, -0.3], [0.2, 0.4]]), "b1": np.array([0.1, -0.1]),
           "W2": np.array([[0.6], [0.3]]), "b2": np.array([0.2]), "target": np.array([1.5])}


EXERCISES = [
    Exercise(
        id="walkthrough.hand-backward",
        chapter=CHAPTER,
        kind="numeric",
        title="A whole backward pass by hand",
        prompt=r"""
A two-layer network computes \(\text{hidden} = \operatorname{ReLU}(x W_1 + b_1)\),
\(\text{output} = \text{hidden}\,W_2 + b_2\) and \(L = \tfrac{1}{2}(\text{output} - \text{target})^2\), with

\[
x = {{ x }},\quad W_1 = {{ W1 }},\quad b_1 = {{ b1 }},\quad W_2 = {{ W2 }},\quad b_2 = {{ b2 }},\quad
\text{target} = {{ target }}.
\]

Run the forward pass, then compute every gradient, from the output back to the first layer.
""",
        givens=lambda: dict(NETWORK),
        answer=_two_layer_backward,
        atol=1e-4,
        solution='''
z = x @ W1 + b1
hidden = np.maximum(z, 0.0)
output = hidden @ W2 + b2
loss = 0.5 * np.sum((output - target) ** 2)
print(f"z = {z}, hidden = {hidden}, output = {output}, loss = {loss:.4f}")

d_output = output - target                   # dL/doutput
dW2 = np.outer(hidden, d_output)             # hidden^T dL/doutput
db2 = d_output
d_hidden = d_output @ W2.T                   # back through W2
dz = np.where(z > 0, d_hidden, 0.0)          # back through ReLU: the second unit was off
dW1 = np.outer(x, dz)
db1 = dz
for name, value in [("dL/doutput", d_output), ("dL/dW2", dW2), ("dL/db2", db2), ("dL/dhidden", d_hidden),
                    ("dL/dW1", dW1), ("dL/db1", db1)]:
    print(f"{name:11} {(value.round(4) + 0.0).tolist()}")   # + 0.0 prints -0.0 as 0.0
answer = {r"\\(\\partial L/\\partial\\,\\text{output}\\)": d_output, r"\\(\\partial L/\\partial W_2\\)": dW2,
          r"\\(\\partial L/\\partial b_2\\)": db2, r"\\(\\partial L/\\partial\\,\\text{hidden}\\)": d_hidden,
          r"\\(\\partial L/\\partial W_1\\)": dW1, r"\\(\\partial L/\\partial b_1\\)": db1}
''',
        discussion=r"""
The second hidden unit's input is \({{ z[1]:fix1 }}\), so ReLU switches it off: its column of
\(\partial L/\partial W_1\) and its entry of \(\partial L/\partial b_1\) are exactly zero, although
\(\partial L/\partial\,\text{hidden}\) is not. Every weight gradient is an outer product of the layer's
input with the gradient at its output; every bias gradient is the gradient at its output.
""",
    ),
    Exercise(
        id="walkthrough.chain-to-first-layer",
        chapter=CHAPTER,
        kind="symbolic",
        title="The chain of derivatives to the first layer",
        prompt=r"""
With \(L = f(\text{output})\), \(\text{output} = \text{hidden}\,W_2\) and
\(\text{hidden} = \operatorname{ReLU}(x W_1)\), write \(\partial L / \partial W_1\) as a chain of the
local derivatives, from \(G = \partial L / \partial\,\text{output}\) back to \(W_1\).
""",
        claims=("linear.vjp.dx", "relu.derivative", "linear.vjp.dW"),
        solution='''
import numpy as np

from derivations.reference import numerical_gradient

rng = np.random.default_rng(0)
x, W1, W2 = rng.normal(size=(3, 4)), rng.normal(size=(4, 5)), rng.normal(size=(5, 2))
f = lambda output: float(np.sum(np.sin(output)))            # any scalar function of the output
loss = lambda W1: f(np.maximum(x @ W1, 0.0) @ W2)

z = x @ W1
G = np.cos(np.maximum(z, 0.0) @ W2)                         # dL/doutput for this f
d_hidden = G @ W2.T                                         # linear.vjp.dx, through W2
dz = d_hidden * (z > 0)                                     # relu.derivative
dW1 = x.T @ dz                                              # linear.vjp.dW
print(f"chain against central differences: {np.abs(dW1 - numerical_gradient(loss, [W1], 0)).max():.1e}")
''',
        discussion=r"""
Three claims, applied from the output back:
\(\frac{\partial L}{\partial W_1} = x^{\top}\Big[\big(G\,W_2^{\top}\big) \odot H(x W_1)\Big]\),
with \(H\) the step function: back through \(W_2\) (a product with its transpose), through the ReLU (an
entrywise mask), and into \(W_1\) (an outer product with the layer's input). The run checks the chain
against central differences.
""",
    ),
    Exercise(
        id="walkthrough.why-perturb",
        chapter=CHAPTER,
        kind="choice",
        title="Why the notebook moves its parameters before checking",
        prompt=r"""
The walkthrough moves every parameter a little away from its initial value (biases 0, LayerNorm
scales 1) before checking its hand-written backward pass. Suppose the backward pass takes GELU's
derivative at \(X W_1\) instead of at \(Z = X W_1 + b_1\). What would a check at the initial
parameters report?
""",
        options=(r"No error at all: with \(b_1 = 0\) the wrong argument equals the right one, so only moved "
                 "parameters expose the mistake.",
                 "A large error, at the initial parameters as well as after moving them."),
        answer=_perturb_choice,
        solution='''
import numpy as np

from derivations.reference import gelu, gelu_backward

rng = np.random.default_rng(0)
X, W1, dU = rng.normal(size=(4, 3)), rng.normal(size=(3, 5)), rng.normal(size=(4, 5))
for label, b1 in [("initial, b1 = 0", np.zeros(5)), ("moved b1", 0.1 * rng.normal(size=5))]:
    _, right = gelu(X @ W1 + b1)
    _, wrong = gelu(X @ W1)                     # the bug: the derivative's argument without the bias
    error = np.abs(gelu_backward(dU, right) - gelu_backward(dU, wrong)).max()
    print(f"{label:16} largest difference between the two backward passes: {error:.1e}")
answer = 0
''',
        discussion=r"""
A check can only catch a mistake that changes the numbers at the point where it is run. Zero biases
and unit scales make several wrong formulas agree with the right one (a missing \(\gamma\), a missing
bias), so a gradient check at initialisation passes them; a small random move of every parameter
costs nothing and removes those coincidences.
""",
    ),
    Exercise(
        id="walkthrough.tiny-language-model",
        chapter=CHAPTER,
        kind="explain",
        title="Hands-on: a tiny causal language model",
        prompt=r"""
Build a decoder-only transformer that predicts the next character at every position, with a causal
mask, from the reference operations and their backward passes; check it (the future must not change
the past, and the gradients must match central differences); train it with Adam for a few hundred
steps on the site's own short text (`derivations/exercises/data/mill.txt`, about 4 KB); and show
what it writes with greedy decoding.
""",
        starter=handson_source("lm_starter"),
        solution=handson_source("lm_solution"),
        sources=("lm_solution.py",),
        discussion=r"""
The model passes both checks (largest relative gradient error {{ measured[gradient_error]:sci1 }}) and
learns: on the tenth of the text it never trained on, its loss falls from {{ measured[before]:sig3 }} to
{{ measured[after]:sig3 }} nats per character, below the {{ measured[uniform]:sig3 }} of guessing
uniformly among its {{ measured[vocabulary] }} characters.{{ check: measured[loss_fell] }} With a few
seconds of training on four kilobytes, it has learned frequent words and the shape of the text;
greedy decoding, which always takes the likeliest character, soon falls into a loop. Sampling from
the probabilities instead, more text and more steps are the next things to try.
""",
    ),
]
