"""Exercises of the transformer-backward chapter: the loss gradient, the head, ReLU, LayerNorm, embeddings,
the optimisers, the whole model's backward pass and what it costs."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..reference import (
    adam_init,
    adam_step,
    cross_entropy,
    cross_entropy_backward,
    embedding,
    embedding_backward,
    linear,
    linear_backward,
    momentum_init,
    momentum_step,
    multi_head_attention,
    multi_head_attention_backward,
    relu,
    relu_backward,
    sgd_step,
)
from ..reference.model import TransformerConfig, init_params, model_loss
from ..reference.task import encode_example, tokenize
from .registry import Exercise, handson_source

CHAPTER = "transformer-backward"


def _loss_gradient(logits, target):
    _, cache = cross_entropy(logits[None], [target])
    return cross_entropy_backward(1.0, cache)[0]


def _softmax(logits):
    return cross_entropy(logits[None], [0])[1][0][0]


def _negative_entries_choice():
    """Over 1000 random logit vectors and targets: which entries of p - onehot are negative?"""
    patterns = set()
    for seed in range(10):
        rng = np.random.default_rng(seed)
        for _ in range(100):
            logits, target = rng.normal(scale=3.0, size=20), int(rng.integers(20))
            negative = tuple(np.flatnonzero(_loss_gradient(logits, target) < 0))
            patterns.add("target only" if negative == (target,) else "other")
    return 0 if patterns == {"target only"} else 3


def _small_loss(loss, vocab):
    """Logits whose cross-entropy is ``loss`` (target 0, the rest shared equally); the target's p and gradient."""
    p_target = np.exp(-loss)
    logits = np.log(np.r_[p_target, np.full(vocab - 1, (1 - p_target) / (vocab - 1))])
    value, cache = cross_entropy(logits[None], [0])
    assert abs(value - loss) < 1e-12
    return {"probability of the target": cache[0][0, 0],
            "gradient of its logit": cross_entropy_backward(1.0, cache)[0, 0]}


def _output_column(final_repr, column, upstream):
    vocab = column + 3
    dlogits = np.zeros((1, vocab))
    dlogits[0, column] = upstream
    _, cache = linear(final_repr[None], np.zeros((len(final_repr), vocab)), np.zeros(vocab))
    return linear_backward(dlogits, cache)[1][:, column]


def _finite_difference_losses(expression, entry, h):
    config = TransformerConfig()
    params = init_params(config, seed=0)
    tokens, target = encode_example(expression)
    losses = {}
    for sign, name in ((1, "loss_plus"), (-1, "loss_minus")):
        moved = dict(params, W_out=params["W_out"].copy())
        moved["W_out"][tuple(entry)] += sign * h
        losses[name] = model_loss(moved, tokens[None], [target], config)
    losses["w"] = params["W_out"][tuple(entry)]
    return losses


def _sgd_answer(w, g, lr, goal):
    after = sgd_step({"w": w}, {"w": g}, lr)["w"]
    # Exactly, in decimals: how many steps of lr * |g| from w to the goal.
    steps = (Fraction(str(goal)) - Fraction(str(w))) / (Fraction(str(lr)) * abs(Fraction(str(g))))
    return {"W after one step": after, "steps to reach the goal": int(np.ceil(float(steps)))}


def _optimisers(w0, grads, lr):
    sgd, momentum, adam = {"w": w0}, {"w": w0}, {"w": w0}
    m_state, a_state = momentum_init(momentum), adam_init(adam)
    for g in grads:
        sgd = sgd_step(sgd, {"w": g}, lr)
        momentum, m_state = momentum_step(momentum, {"w": g}, m_state, lr, momentum=0.9)
        adam, a_state = adam_step(adam, {"w": g}, a_state, lr=lr, beta1=0.9, beta2=0.999)
    return {"SGD": sgd["w"], "SGD with momentum 0.9": momentum["w"], "Adam": adam["w"]}


def _head_independence_choice():
    """Change head 1's keys; does head 0's block of dW_q move, with the upstream gradient held fixed?"""
    rng = np.random.default_rng(0)
    d, heads = 8, 2
    X, dout = rng.normal(size=(5, d)), rng.normal(size=(5, d))
    W_q, W_k, W_v, W_o = (rng.normal(size=(d, d)) for _ in range(4))
    W_k_moved = W_k.copy()
    W_k_moved[:, d // heads:] += rng.normal(size=(d, d // heads))  # head 1's columns only
    blocks = []
    for keys in (W_k, W_k_moved):
        _, cache = multi_head_attention(X, W_q, keys, W_v, W_o, heads)
        blocks.append(multi_head_attention_backward(dout, cache)[1][:, : d // heads])
    return 0 if np.array_equal(blocks[0], blocks[1]) else 1


EXERCISES = [
    Exercise(
        id="transformer.loss-gradient",
        chapter=CHAPTER,
        kind="numeric",
        title="The gradient of the loss at the logits",
        prompt=r"""
A model outputs the logits \(z = {{ logits }}\) and the right answer is token \(y = {{ target }}\)
(counting from 0). The probabilities are \(p = \operatorname{softmax}(z) \approx {{ probs:fix4 }}\).
Compute \(\frac{\partial L}{\partial z}\) for the cross-entropy \(L = -\log p^{y}\) (4 numbers).
""",
        givens=lambda: {"logits": np.array([0.5, 1.2, -0.3, 2.1]), "target": 3},
        hints=lambda logits, target: {"probs": _softmax(logits)},
        answer=_loss_gradient,
        atol=1e-3,
        solution='''
p = np.exp(logits - logits.max())
p /= p.sum()
one_hot = np.zeros_like(p)
one_hot[target] = 1.0
gradient = p - one_hot
print("p        =", p.round(4))
print("p - y    =", gradient.round(4), "| sum", round(gradient.sum(), 15))
answer = gradient
''',
        discussion=r"""
The gradient is \(p - y\) (claim `cross-entropy.softmax-gradient`): every wrong token gets its own
probability, the right one its probability minus one. The entries sum to zero.
""",
    ),
    Exercise(
        id="transformer.negative-entry",
        chapter=CHAPTER,
        kind="choice",
        title="Which entries of the logit gradient are negative?",
        prompt=r"""
For a softmax followed by cross-entropy, which entries of \(\frac{\partial L}{\partial z} = p - y\)
are negative, and what does a gradient-descent step then do to the logits?
""",
        options=("Only the target's entry: the step raises the target's logit and lowers every other.",
                 "Every entry except the target's.",
                 "None: probabilities are positive, so every entry is.",
                 "It depends on the logits: any entry can be negative."),
        answer=_negative_entries_choice,
        solution='''
import numpy as np

from derivations.reference import cross_entropy, cross_entropy_backward

only_target, draws, largest_sum = 0, 0, 0.0
for seed in range(10):
    rng = np.random.default_rng(seed)
    for _ in range(100):
        logits, target = rng.normal(scale=3.0, size=20), int(rng.integers(20))
        _, cache = cross_entropy(logits[None], [target])
        gradient = cross_entropy_backward(1.0, cache)[0]
        only_target += np.array_equal(np.flatnonzero(gradient < 0), [target])
        largest_sum = max(largest_sum, abs(gradient.sum()))
        draws += 1
print(f"only the target's entry is negative in {only_target} of {draws} draws; largest |sum| {largest_sum:.1e}")
answer = 0
''',
        discussion=r"""
\(p^{y} - 1 < 0\) unless the model is already certain, and \(p^{n} > 0\) for every other token.
Descending the gradient therefore pushes the target's logit up by \(1 - p^{y}\) times the step and
every other logit down by its own probability: the more probable a wrong answer, the harder it is
pushed down.
""",
    ),
    Exercise(
        id="transformer.small-loss",
        chapter=CHAPTER,
        kind="numeric",
        title="A loss of 0.03 still has a gradient",
        prompt=r"""
On one example over a vocabulary of {{ vocab }} tokens, the cross-entropy is already \(L = {{ loss }}\).
What probability does the model give the target, and what is the gradient of the target's logit?
Why do the parameters keep changing?
""",
        givens=lambda: {"loss": 0.03, "vocab": 20},
        answer=_small_loss,
        atol=1e-4,
        solution='''
from derivations.reference import adam_init, adam_step

p_target = np.exp(-loss)                   # L = -log p_target
gradient = p_target - 1.0                  # the target's entry of p - y
print(f"p_target = {p_target:.6f}, dL/dz_target = {gradient:.6f}")

# Adam divides by the running root mean square of the gradient: its first step has the size lr
# whether the gradient is small or large.
params = {"w": np.array([0.0])}
step_small = abs(adam_step(params, {"w": np.array([gradient])}, adam_init(params))[0]["w"][0])
step_large = abs(adam_step(params, {"w": np.array([100 * gradient])}, adam_init(params))[0]["w"][0])
print(f"Adam's first step: {step_small:.6f} for this gradient, {step_large:.6f} for one 100 times larger")
answer = {"probability of the target": p_target, "gradient of its logit": gradient}
''',
        discussion=r"""
The gradient vanishes only when \(p^{y} = 1\), which no finite logits reach, so every step still
moves the parameters. With SGD the move shrinks with the gradient; with Adam it does not: its first
step is {{ step_small:sci2 }} for this gradient and {{ step_large:sci2 }} for one a hundred times
larger, the learning rate in both cases. That is one reason a trained model keeps drifting, and why
learning rates are decayed or training is stopped on a held-out measure.
""",
    ),
    Exercise(
        id="transformer.bounded-gradient",
        chapter=CHAPTER,
        kind="explain",
        title="How large can the logit gradient be?",
        prompt=r"""
Show that every entry of \(\frac{\partial L}{\partial z} = p - y\) lies between \(-1\) and \(1\), and
say why that helps training. Is it true that most entries are very small (below 0.01)? Measure it
on the site's model before and after training.
""",
        solution='''
import numpy as np

from derivations.reference import cross_entropy
from derivations.reference.model import forward, init_params
from derivations.reference.task import make_split
from derivations.reference.train import load_or_train

run = load_or_train()                       # the chapter's training run (cached)
config = run.settings.config
_, held_out = make_split(run.settings.n_train, run.settings.n_held_out, run.settings.data_seed)
small_fraction, extremes = {}, {}
for name, params in (("initial", init_params(config, run.settings.init_seed)), ("trained", run.params)):
    logits, _ = forward(params, held_out.tokens, config)
    p = cross_entropy(logits, held_out.targets)[1][0]
    gradient = p - np.eye(config.vocab_size)[held_out.targets]      # one example at a time, not divided by N
    small_fraction[name] = np.mean(np.abs(gradient) < 0.01)
    extremes[name] = (gradient.min(), gradient.max())
    print(f"{name:8} entries in [{gradient.min():+.4f}, {gradient.max():+.4f}], "
          f"below 0.01 in size: {small_fraction[name]:.1%}")
initial_small, trained_small = small_fraction["initial"], small_fraction["trained"]
bounded = all(-1 < low and high < 1 for low, high in extremes.values())
''',
        discussion=r"""
Each \(p^{n}\) lies in \((0, 1)\), so the wrong tokens' entries are in \((0, 1)\) and the target's,
\(p^{y} - 1\), in \((-1, 0)\): whatever the logits, the loss sends back a gradient of bounded size, and
a confident mistake cannot produce an arbitrarily large one (a squared error on probabilities or an
unnormalised score could).{{ check: bounded }} Whether the entries are small depends on the model:
on the held-out examples, {{ initial_small:pct1 }} of them are below 0.01 in size for the untrained
model, whose probabilities are spread over 20 tokens, and {{ trained_small:pct1 }} after training,
when the model is nearly certain and right.
""",
    ),
    Exercise(
        id="transformer.output-column",
        chapter=CHAPTER,
        kind="numeric",
        title="One column of the output head's gradient",
        prompt=r"""
The final representation is \(h = {{ final_repr }}\) and the gradient of the loss with respect to
logit {{ column }} is \(\frac{\partial L}{\partial z^{ {{ column }} }} = {{ upstream }}\). The head is
\(z = h W_{\text{out}} + b\). Compute column {{ column }} of \(\frac{\partial L}{\partial W_{\text{out}}}\)
(3 numbers). What shape does the whole gradient have?
""",
        givens=lambda: {"final_repr": np.array([0.8, -0.4, 0.6]), "column": 5, "upstream": -0.25},
        answer=_output_column,
        atol=1e-4,
        solution='''
column_gradient = final_repr * upstream     # dL/dW[a, 5] = h[a] * dL/dz[5]
print("dL/dW_out[:, 5] =", column_gradient)
answer = column_gradient
''',
        discussion=r"""
\(\frac{\partial L}{\partial W_{\text{out}}} = h^{\top}\frac{\partial L}{\partial z}\) is an outer
product with the shape of \(W_{\text{out}}\), \(d_{\text{model}} \times \text{vocab}\); column 5 is \(h\)
scaled by that logit's gradient. The gradient is negative, as only the target's is, so a descent step
adds a multiple of \(h\) to column 5, and the logit \(h \cdot W_{\text{out}}^{\,\cdot 5}\) grows.
""",
    ),
    Exercise(
        id="transformer.relu-backward",
        chapter=CHAPTER,
        kind="numeric",
        title="Back through ReLU",
        prompt=r"""
A ReLU received \(z = {{ z }}\) in the forward pass, and the gradient arriving from the next layer
is \({{ upstream }}\). Compute the gradient that flows back to \(z\) (5 numbers), and say which
entries are zeroed and why.
""",
        givens=lambda: {"z": np.array([-1.5, 2.3, 0.0, -0.7, 1.8]), "upstream": np.array([0.5, -0.3, 0.2, -0.4, 0.6])},
        answer=lambda z, upstream: relu_backward(upstream, relu(z)[1]),
        atol=1e-6,
        solution='''
passes = z > 0                               # the derivative of max(z, 0): 1 where z > 0, else 0
dz = np.where(passes, upstream, 0.0)
print("passes:", passes.astype(int), "| dL/dz =", dz)
answer = dz
''',
        discussion=r"""
Where the input was negative the unit was off and its output did not depend on \(z\): the gradient
there is zero, whatever arrives from above. At exactly \(z = 0\) ReLU has no derivative; the
reference (like PyTorch) uses 0 there (claim `relu.derivative`).
""",
    ),
    Exercise(
        id="transformer.layernorm-backward",
        chapter=CHAPTER,
        kind="symbolic",
        title="Why LayerNorm's backward pass has extra terms",
        prompt=r"""
LayerNorm computes \(y = \gamma \odot (x - \mu)/\sigma + \beta\) over the features of each row.
Derive \(\partial L / \partial x\). Why is it more than \(\gamma \odot \frac{\partial L}{\partial y} / \sigma\),
which is what a per-feature scaling would give, and what do the extra terms remove?
""",
        claims=("layernorm.vjp.dx",),
        solution='''
import numpy as np

from derivations.reference import layer_norm, layer_norm_backward

rng = np.random.default_rng(0)
x, gamma, beta = rng.normal(size=(1, 6)), np.ones(6), np.zeros(6)
dy = rng.normal(size=(1, 6))
y, cache = layer_norm(x, gamma, beta, eps=1e-300)     # a variance floor far below rounding: the identities hold exactly
dx = layer_norm_backward(dy, cache)[0]
sigma = x.std()
naive = gamma * dy / sigma                   # as if mu and sigma did not depend on x
x_hat = (x - x.mean()) / sigma
print("naive gradient, sum over features:   ", naive.sum().round(6))
print("LayerNorm gradient, sum over features:", dx.sum().round(12))
print("LayerNorm gradient . x_hat:           ", (dx * x_hat).sum().round(12))
''',
        discussion=r"""
\(\mu\) and \(\sigma\) depend on every feature of the row, so each \(x^{n}\) also reaches every output
through them. Those paths add two terms: one removes the mean of the gradient (shifting all features
together does not change the output), the other its component along \(\hat{x}\) (scaling the row does
not either). The run above shows both: the gradient sums to zero and is orthogonal to \(\hat{x}\),
which the naive one is not.
""",
    ),
    Exercise(
        id="transformer.finite-difference",
        chapter=CHAPTER,
        kind="numeric",
        title="A central difference on the real model",
        prompt=r"""
In the untrained model of the chapter, the weight \(W_{\text{out}}^{ {{ entry[0] }}\,{{ entry[1] }} } = {{ w:fix6 }}\).
With the input "{{ expression:text }}" the loss is \(L_{+} = {{ loss_plus:fix12 }}\) when this weight is raised by
\(h = {{ h }}\) and \(L_{-} = {{ loss_minus:fix12 }}\) when it is lowered by \(h\). Compute the central
difference \((L_{+} - L_{-}) / 2h\). Should it match the gradient of the backward pass, and how
closely?
""",
        givens=lambda: {"expression": "Max(1,6,2)", "entry": [2, 3], "h": 1e-5},
        hints=_finite_difference_losses,
        answer=lambda expression, entry, h: (lambda L: (L["loss_plus"] - L["loss_minus"]) / (2 * h))(
            _finite_difference_losses(expression, entry, h)),
        rtol=1e-4,
        atol=1e-8,
        solution='''
from derivations.reference.model import TransformerConfig, init_params, loss_and_grads, model_loss
from derivations.reference.task import encode_example

config = TransformerConfig()
params = init_params(config, seed=0)
tokens, target = encode_example(expression)
losses = []
for sign in (+1, -1):
    moved = dict(params, W_out=params["W_out"].copy())
    moved["W_out"][tuple(entry)] += sign * h
    losses.append(model_loss(moved, tokens[None], [target], config))
central = (losses[0] - losses[1]) / (2 * h)
_, grads = loss_and_grads(params, tokens[None], [target], config)
analytic = grads["W_out"][tuple(entry)]
relative = abs(central - analytic) / abs(analytic)
print(f"central difference {central:.10f}, backward pass {analytic:.10f}, relative error {relative:.1e}")
answer = central
''',
        discussion=r"""
They should agree to far more digits than a typo could survive: here the backward pass gives
{{ analytic:sig8 }} and the relative difference is {{ relative:sci1 }}. The central difference's
truncation error shrinks like \(h^{2}\), its rounding error grows like \(10^{-16}/h\), so with
\(h = 10^{-5}\) a relative difference near \(10^{-8}\) or below means the gradient is right, while a
wrong formula is usually off by \(10^{-2}\) or more.
""",
    ),
    Exercise(
        id="transformer.repeated-token",
        chapter=CHAPTER,
        kind="numeric",
        title="A token that occurs twice",
        prompt=r"""
The input "{{ expression:text }}" is the token ids \({{ tokens }}\); the comma (id 19) occurs at
positions 3 and 5. The gradient arriving at the embedded sequence (one row per position, 3 features
to keep it small) is

\[
\frac{\partial L}{\partial X} = {{ dout }}.
\]

Compute the comma's row of \(\frac{\partial L}{\partial E}\), the gradient of the embedding table
(3 numbers).
""",
        givens=lambda: {"expression": "Max(1,6,2)",
                        "dout": np.random.default_rng(4).normal(size=(8, 3)).round(1) + 0.0},  # + 0.0: no -0
        hints=lambda expression, dout: {"tokens": np.array(tokenize(expression))},
        answer=lambda expression, dout: embedding_backward(
            dout, embedding(np.array(tokenize(expression)), np.zeros((20, dout.shape[1])))[1])[19],
        atol=1e-6,
        solution='''
from derivations.reference.task import tokenize

tokens = np.array(tokenize(expression))
comma = tokens[3]
rows = np.flatnonzero(tokens == comma)
comma_gradient = dout[rows].sum(axis=0)       # every position that looked up the row sends its gradient back
print("comma at positions", rows.tolist(), "| dL/dE[comma] =", comma_gradient)
answer = comma_gradient
''',
        discussion=r"""
Looking up row \(v\) at two positions uses the same parameters twice, so its gradient is the sum of
the two positions' gradients (claim `embedding.scatter-add`). In NumPy, `dE[tokens] += dX` would keep
only one of them: the reference uses `np.add.at`.
""",
    ),
    Exercise(
        id="transformer.sgd-steps",
        chapter=CHAPTER,
        kind="numeric",
        title="One SGD step, and how many to reach a goal",
        prompt=r"""
A weight \(W = {{ w }}\) has the gradient \({{ g }}\), and the learning rate is \({{ lr }}\). What is
\(W\) after one SGD step? If the gradient stayed the same, how many steps would bring \(W\) to
\({{ goal }}\)?
""",
        givens=lambda: {"w": 0.234, "g": -0.05, "lr": 0.001, "goal": 0.25},
        answer=_sgd_answer,
        rtol=1e-7,
        atol=1e-9,
        solution='''
from fractions import Fraction

after = w - lr * g                          # minus the gradient: a negative gradient raises W
steps = (Fraction(str(goal)) - Fraction(str(w))) / (Fraction(str(lr)) * abs(Fraction(str(g))))
print(f"W after one step: {after}; steps, in exact arithmetic: {steps}")

# The same count with a float64 loop: 320 additions of 5e-05 fall just short of 0.25.
weight, float_steps = w, 0
while weight < goal:
    weight, float_steps = weight - lr * g, float_steps + 1
print(f"a float64 loop stops after {float_steps} steps")
exact_steps = int(steps)
answer = {"W after one step": after, "steps to reach the goal": exact_steps}
''',
        discussion=r"""
Each step moves \(W\) by \(\text{lr} \times 0.05 = 5 \times 10^{-5}\), and \(0.016\) takes
{{ exact_steps }} such steps. A loop in float64 counts {{ float_steps }}: none of 0.234, 0.001 or
0.05 is exact in binary, and the rounding errors of 320 additions leave the weight a hair below
0.25. Compare floats with a tolerance, never with `<` on a value you expect to hit exactly.
""",
    ),
    Exercise(
        id="transformer.optimisers",
        chapter=CHAPTER,
        kind="numeric",
        title="SGD, momentum and Adam on five gradients",
        prompt=r"""
One parameter starts at \(W = {{ w0 }}\) and receives the gradients \({{ grads }}\) in five steps,
with learning rate {{ lr }}. Where does it end with plain SGD, with SGD and momentum 0.9 (PyTorch's
rule: \(v \leftarrow 0.9 v + g\), \(W \leftarrow W - \text{lr}\, v\)), and with Adam
(\(\beta_1 = 0.9\), \(\beta_2 = 0.999\), \(\epsilon = 10^{-8}\), bias-corrected)?
""",
        givens=lambda: {"w0": 0.5, "grads": [-0.1, -0.08, -0.12, -0.09, -0.11], "lr": 0.01},
        answer=_optimisers,
        atol=1e-6,
        solution='''
sgd = momentum = adam = w0
v = m = s = 0.0
print("step   SGD        momentum   Adam")
for t, g in enumerate(grads, start=1):
    sgd -= lr * g
    v = 0.9 * v + g
    momentum -= lr * v
    m = 0.9 * m + 0.1 * g                    # first moment
    s = 0.999 * s + 0.001 * g * g            # second moment
    m_hat, s_hat = m / (1 - 0.9**t), s / (1 - 0.999**t)
    adam -= lr * m_hat / (s_hat**0.5 + 1e-8)
    print(f"{t:4}   {sgd:.6f}   {momentum:.6f}   {adam:.6f}")
momentum_ratio = (momentum - w0) / (sgd - w0)
answer = {"SGD": sgd, "SGD with momentum 0.9": momentum, "Adam": adam}
''',
        discussion=r"""
SGD moves by a tenth of a gradient each step. Momentum adds the gradients up, so consistent
gradients build speed: after five steps it has moved {{ momentum_ratio:sig3 }} times as far as SGD.
Adam divides by the root mean square of recent gradients, so every step is close to the learning
rate whatever the gradients' size: here almost exactly 0.01 per step.
""",
    ),
    Exercise(
        id="transformer.adam-scale",
        chapter=CHAPTER,
        kind="explain",
        title="What Adam's two moments buy",
        prompt=r"""
Adam keeps a running mean \(m\) and a running mean square \(v\) of each parameter's gradient.
Explain, with measurements on the five gradients of the previous exercise, what each buys compared
with SGD.
""",
        givens=lambda: {"w0": 0.5, "grads": [-0.1, -0.08, -0.12, -0.09, -0.11], "lr": 0.01},
        solution='''
from derivations.reference import adam_init, adam_step, sgd_step


def final(step, scale):
    params, state = {"w": np.array([w0])}, adam_init({"w": np.array([w0])})
    for g in grads:
        if step == "sgd":
            params = sgd_step(params, {"w": np.array([scale * g])}, lr)
        else:
            params, state = adam_step(params, {"w": np.array([scale * g])}, state, lr=lr)
    return params["w"][0] - w0


sgd_ratio = final("sgd", 100.0) / final("sgd", 1.0)
adam_ratio = final("adam", 100.0) / final("adam", 1.0)
print(f"gradients x100: SGD moves {sgd_ratio:.1f} times as far, Adam {adam_ratio:.6f} times")

# Noisy gradients, mean 0.05 and spread 0.1: how often does a step go downhill (against the mean)?
downhill = {"SGD": [], "Adam": []}
for seed in range(10):
    noisy = np.random.default_rng(seed).normal(0.05, 0.1, size=200)
    params, state = {"w": np.array([0.0])}, adam_init({"w": np.array([0.0])})
    moves = []
    for g in noisy:
        before = params["w"][0]
        params, state = adam_step(params, {"w": np.array([g])}, state, lr=lr)
        moves.append(params["w"][0] - before)
    downhill["SGD"].append(np.mean(noisy > 0))          # an SGD step goes downhill when its own g > 0
    downhill["Adam"].append(np.mean(np.array(moves[20:]) < 0))   # after Adam's moments have warmed up
for name, values in downhill.items():
    print(f"{name:4} steps downhill: {min(values):.0%} to {max(values):.0%} over 10 draws")
sgd_low, sgd_high = min(downhill["SGD"]), max(downhill["SGD"])
adam_low, adam_high = min(downhill["Adam"]), max(downhill["Adam"])
scale_free = abs(adam_ratio - 1) < 1e-6 and abs(sgd_ratio - 100) < 1e-9
''',
        discussion=r"""
The mean square \(v\) makes the step size independent of the gradient's scale: multiplying every
gradient by 100 moves SGD {{ sgd_ratio:sig3 }} times as far and Adam {{ adam_ratio:fix6 }} times as
far.{{ check: scale_free }} Each parameter gets a step of about the learning rate, however large or small its
gradients, which matters in a transformer whose embedding, attention and output gradients differ by
orders of magnitude. The mean \(m\) is momentum: it averages recent gradients, so noise that changes sign from step to
step cancels while the consistent part adds up. With gradients of mean 0.05 and spread 0.1 (10 draws
of 200 steps), an SGD step goes downhill only {{ sgd_low:pct0 }} to {{ sgd_high:pct0 }} of the time,
an Adam step {{ adam_low:pct0 }} to {{ adam_high:pct0 }} of the time once its moments have warmed up.
A heavy ball rolling downhill is the usual picture: it keeps its direction through small bumps.
""",
    ),
    Exercise(
        id="transformer.backward-path",
        chapter=CHAPTER,
        kind="explain",
        title="What flows backward, and along which path",
        prompt=r"""
Why is backpropagation "backward"? Trace the path from the loss to \(W_q\) of the first block
(`block0`), and say which part of \(\frac{\partial L}{\partial W_q}\) belongs to its second head.
Measure the size of the gradient along the way on the untrained model.
""",
        solution='''
import numpy as np

from derivations.reference.model import TransformerConfig, forward_backward, init_params
from derivations.reference.task import encode_example

config = TransformerConfig()
params = init_params(config, seed=0)
tokens, target = encode_example("Max(1,6,2)")
loss, grads, trace = forward_backward(params, tokens[None], [target], config, record=True)
forward_order = list(trace["activations"])
path = forward_order[::-1]                 # the backward pass visits the stages in reverse
wanted = [s for s in path if s.startswith(("logits", "final", "block1.out", "block0"))]
for stage in wanted:
    print(f"{stage:18} shape {str(trace['grads'][stage].shape):12} |dL/d.| = {np.linalg.norm(trace['grads'][stage]):.4f}")
d_head = config.d_model // config.n_heads
head_1 = grads["block0.attn.W_q"][:, d_head:2 * d_head]
others = np.delete(grads["block0.attn.W_q"], np.s_[d_head:2 * d_head], axis=1)
print(f"dW_q of block0: columns {d_head} to {2 * d_head - 1} are head 1's, norm {np.linalg.norm(head_1):.4f}")
same_shapes = all(trace["grads"][s].shape == trace["activations"][s].shape for s in forward_order)
stages_between = len(path[: path.index("block0.attn.out") + 1])
head_first, head_last = d_head, 2 * d_head - 1
''',
        discussion=r"""
What flows backward is the gradient of the one scalar loss with respect to each intermediate result,
an array of the same shape as that result.{{ check: same_shapes }} It is computed from the loss
toward the inputs because each stage's gradient needs the gradient of the stage after it (the
chain rule), while the forward pass needs the stage before it. From the logits it passes the output
head and the whole second block; in the first block it goes back through LayerNorm 2, splits at the
residual sum into the FFN branch and the skip, joins again before LayerNorm 1, splits again at the
first residual sum, and reaches the attention output ({{ stages_between }} recorded stages; the output
below lists them with the size of the gradient at each). There the
multi-head backward pass splits it into heads. Head 1 owns columns {{ head_first }} to {{ head_last }} of
\(W_q\) (the heads are column blocks of one matrix), and its block of \(\frac{\partial L}{\partial W_q}\)
is \(X^{\top}\frac{\partial L}{\partial Q_1}\).
""",
    ),
    Exercise(
        id="transformer.stored-activations",
        chapter=CHAPTER,
        kind="explain",
        title="What training must keep that inference can drop",
        prompt=r"""
Why does the backward pass need the activations of the forward pass, and what would happen without
them? Compare what a training step keeps in memory with what inference needs, on the chapter's model
with a batch of 32.
""",
        solution='''
import numpy as np

from derivations.reference.model import TransformerConfig, cache_nbytes, forward, init_params
from derivations.reference.task import make_split

config = TransformerConfig()
params = init_params(config, seed=0)
batch = make_split(32, 1, seed=0)[0].tokens
logits, cache = forward(params, batch, config)
kept = cache_nbytes(cache, params)
parameter_bytes = sum(p.nbytes for p in params.values())
_, recorded = forward(params, batch, config, record=True)
largest = max(a.nbytes for a in recorded["activations"].values())
print(f"kept for the backward pass: {kept:,} bytes; parameters: {parameter_bytes:,} bytes")
print(f"largest single activation (what inference holds at a time, with its input): {largest:,} bytes")
print(f"the attention weights of one block: {recorded['attention'][0].nbytes:,} bytes")
kept_kib, parameter_kib, largest_kib = round(kept / 1024), round(parameter_bytes / 1024), round(largest / 1024)
ratio = kept / largest
''',
        discussion=r"""
A local derivative is evaluated where the forward pass was: ReLU's needs the sign of its input,
\(\partial L / \partial W = X^{\top}\frac{\partial L}{\partial Y}\) needs \(X\), the softmax backward
needs the weights \(A\). Without them the backward pass would have to recompute the forward pass
(which is what checkpointing does on purpose). For a batch of 32, a training step keeps
{{ kept_kib }} KiB of activations, against {{ parameter_kib }} KiB of parameters; inference
can drop each activation once the next layer has used it, so it holds about one at a time, at most
{{ largest_kib }} KiB here: {{ ratio:sig2 }} times less. The kept activations grow with the batch
and, through the attention weights, with the square of the sequence length.
""",
    ),
    Exercise(
        id="transformer.checkpointing",
        chapter=CHAPTER,
        kind="explain",
        title="Gradient checkpointing: memory for arithmetic",
        prompt=r"""
Gradient checkpointing keeps only some activations (say each block's input) and recomputes the rest
during the backward pass. What is saved, and what does the recomputation cost? Measure both on the
chapter's model with a batch of 32.
""",
        solution='''
import numpy as np

from derivations.reference.model import TransformerConfig, cache_nbytes, forward, init_params, matmul_flops
from derivations.reference.task import make_split

config = TransformerConfig()
params = init_params(config, seed=0)
batch = make_split(32, 1, seed=0)[0].tokens
_, cache = forward(params, batch, config, record=True)
everything = cache_nbytes(cache, params)
checkpoints = sum(cache["activations"][f"block{l}.in"].nbytes for l in range(config.n_layers))
flops = matmul_flops(cache)
forward_flops = sum(stage["forward"] for stage in flops.values())
backward_flops = sum(stage["backward"] for stage in flops.values())
print(f"all activations: {everything:,} bytes; block inputs only: {checkpoints:,} bytes")
print(f"matrix-product FLOPs: forward {forward_flops:,}, backward {backward_flops:,}")
memory_fraction = checkpoints / everything
extra_work = forward_flops / (forward_flops + backward_flops)
''',
        discussion=r"""
Keeping only the inputs of the two blocks takes {{ memory_fraction:pct0 }} of the memory of keeping
every activation. During the backward pass each block is run forward once more from its saved
input, which recreates its cache just before it is needed; the price is a second forward pass, and
the backward pass costs about twice the forward one (it multiplies by each weight twice, for the
input's gradient and the weight's), so a step does {{ extra_work:pct0 }} more matrix arithmetic. For
large models the activations, not the parameters, fill the accelerator's memory, and that trade
is what makes long sequences and large batches fit.
""",
    ),
    Exercise(
        id="transformer.gelu",
        chapter=CHAPTER,
        kind="symbolic",
        title="An activation without dead units",
        prompt=r"""
ReLU's derivative is 0 for every negative input, so a unit that only sees negative inputs never
learns again. Propose an activation whose derivative is almost never exactly zero but that is still
cheap, and write its forward and backward passes. (The site's model can use GELU,
\(x\,\Phi(x)\).)
""",
        claims=("gelu.exact-derivative",),
        solution='''
import numpy as np

from derivations.reference import gelu, gelu_backward, gradcheck, relu, relu_backward

x = np.random.default_rng(0).normal(size=100_000)
relu_grad = relu_backward(np.ones_like(x), relu(x)[1])
gelu_grad = gelu_backward(np.ones_like(x), gelu(x)[1])
relu_zero, gelu_zero, gelu_min = np.mean(relu_grad == 0), np.mean(gelu_grad == 0), gelu_grad.min()
print(f"zero derivatives on N(0, 1) inputs: ReLU {relu_zero:.1%}, GELU {gelu_zero:.1%}")
print(f"smallest GELU derivative {gelu_min:.4f} (it dips below zero left of the origin)")
error = gradcheck(lambda x: float(np.sum(gelu(x)[0])), [x[:50]], [gelu_grad[:50]])[0]
print(f"GELU backward against central differences: {error:.1e}")
''',
        discussion=r"""
GELU weighs its input by the probability \(\Phi(x)\) that a standard normal is below it. Its
derivative \(\Phi(x) + x\,\varphi(x)\) is small for negative inputs, even slightly negative below
about \(-0.75\) (the smallest measured is {{ gelu_min:sig3 }}), but it is zero only at that one point:
on normal inputs ReLU's derivative is exactly zero {{ relu_zero:pct0 }} of the time, GELU's
{{ gelu_zero:pct0 }}. No unit is cut off for good. It costs an `erf` per entry (or a `tanh` in the approximation), more than ReLU's
comparison but small next to the matrix products. Leaky ReLU (\(\max(x, 0.01x)\)) is the cheapest
answer: derivative 1 or 0.01, never 0.
""",
    ),
    Exercise(
        id="transformer.visualise-attention",
        chapter=CHAPTER,
        kind="explain",
        title="Hands-on: look at the trained model's attention",
        prompt=r"""
Load the site's trained model (`derivations.reference.train.load_or_train()`, cached after its first
run), run it on a few held-out expressions with `record=True`, and draw the attention weights of
every head of both blocks. Where does the final position look, and does it depend on the operation?
""",
        starter=handson_source("visualise_starter"),
        solution=handson_source("visualise_solution"),
        sources=("visualise_solution.py",),
        discussion=r"""
In the second block, the final position (whose representation the head reads) looks at the digit
the operation names: averaged over the four heads and the held-out examples, it puts
{{ measured[first]:pct0 }} of its weight on the first digit for `First` and {{ measured[second]:pct0 }}
on the second digit for `Second`.{{ check: measured[names_the_digit] }} For `Last` it looks mostly at the
operation token ({{ measured[last_on_op]:pct0 }}). For `Max` and `Min` no position is right in advance,
and the weight spreads over the three digits ({{ measured[max_spread]:pct0 }} of it on the digits for
`Max`).
The first block mixes more evenly: it prepares the representations the second block compares.
""",
    ),
    Exercise(
        id="transformer.gradient-noise",
        chapter=CHAPTER,
        kind="explain",
        title="Noisy gradients from small batches",
        prompt=r"""
Why does a batch of 1 give a noisier gradient than a batch of 32? Measure how far each lands from
the gradient of a large batch on the chapter's untrained model. Is the noise always bad?
""",
        solution='''
import numpy as np

from derivations.reference.model import TransformerConfig, init_params, loss_and_grads
from derivations.reference.task import make_split

config = TransformerConfig()
params = init_params(config, seed=0)
data = make_split(1024, 1, seed=0)[0]


def flat(grads):
    return np.concatenate([g.ravel() for g in grads.values()])


full = flat(loss_and_grads(params, data.tokens, data.targets, config)[1])
errors = {1: [], 32: []}
for seed in range(10):
    rng = np.random.default_rng(seed)
    for size in errors:
        rows = rng.choice(len(data.targets), size=size, replace=False)
        estimate = flat(loss_and_grads(params, data.tokens[rows], data.targets[rows], config)[1])
        errors[size].append(np.linalg.norm(estimate - full) / np.linalg.norm(full))
for size, values in errors.items():
    print(f"batch {size:2}: |g_batch - g| / |g| from {min(values):.2f} to {max(values):.2f} over 10 draws")
one_low, one_high = min(errors[1]), max(errors[1])
many_low, many_high = min(errors[32]), max(errors[32])
noise_ratio = np.mean(errors[1]) / np.mean(errors[32])
always_better = max(errors[32]) < min(errors[1])
''',
        discussion=r"""
A batch gradient is an average of per-example gradients; averaging \(B\) independent ones divides the
variance by \(B\), the typical error by \(\sqrt{B}\) (\(\sqrt{32} \approx 5.7\)). Measured against the
gradient of 1,024 examples over 10 draws, one example is off by {{ one_low:sig2 }} to
{{ one_high:sig2 }} times the gradient's own size, a batch of 32 by {{ many_low:sig2 }} to
{{ many_high:sig2 }}; the mean errors differ by a factor of {{ noise_ratio:sig2 }}, and every batch of 32 was closer than every
single example.{{ check: always_better }} The noise is not all loss: a step costs less with a small
batch, so many noisy steps can beat a few accurate ones, and the noise can shake the parameters out
of sharp minima that generalise worse.
""",
    ),
    Exercise(
        id="transformer.head-independence",
        chapter=CHAPTER,
        kind="choice",
        title="Do heads share their gradients?",
        prompt=r"""
Multi-head attention with several heads has one \(W_q\), \(W_k\), \(W_v\) each, split into column
blocks, one per head. Hold the upstream gradient \(\frac{\partial L}{\partial \text{out}}\) fixed and
change only head 1's keys. Does head 0's block of \(\frac{\partial L}{\partial W_q}\) change?
""",
        options=("No: with the upstream gradient fixed it does not change at all; heads meet only through "
                 "the output map and what comes after it.",
                 "Yes, a little: the heads share one matrix, so their gradients mix."),
        answer=_head_independence_choice,
        solution='''
import numpy as np

from derivations.reference import multi_head_attention, multi_head_attention_backward

rng = np.random.default_rng(0)
d, heads = 8, 2
X, dout = rng.normal(size=(5, d)), rng.normal(size=(5, d))
W_q, W_k, W_v, W_o = (rng.normal(size=(d, d)) for _ in range(4))
W_k_moved = W_k.copy()
W_k_moved[:, d // heads:] += rng.normal(size=(d, d // heads))     # head 1's key columns only
blocks = []
for keys in (W_k, W_k_moved):
    _, cache = multi_head_attention(X, W_q, keys, W_v, W_o, heads)
    blocks.append(multi_head_attention_backward(dout, cache)[1][:, : d // heads])
print("largest change of head 0's block of dW_q:", np.abs(blocks[1] - blocks[0]).max())
answer = 0
''',
        discussion=r"""
Within the layer each head's backward pass uses only its own weights, values, queries and keys, so
head 0's block is bitwise unchanged. Heads do interact, but through the upstream gradient: in a
whole model the loss, and so \(\frac{\partial L}{\partial \text{out}}\), depends on every head's output.
""",
    ),
    Exercise(
        id="transformer.overfitting",
        chapter=CHAPTER,
        kind="explain",
        title="Training loss and held-out loss",
        prompt=r"""
After 50 epochs a model has a training loss of 0.12 and a held-out loss of 0.45. What is happening,
should training continue, and what would you change? Compare with the site's own training run.
""",
        solution='''
from derivations.reference.train import load_or_train

run = load_or_train()
train_loss = run.losses[-50:].mean()                 # the last 50 training batches
held_out_loss = run.held_out_loss[-1]
held_out_accuracy = run.held_out_accuracy[-1]
print(f"training loss (last 50 batches) {train_loss:.4f}, held-out loss {held_out_loss:.4f}, "
      f"held-out accuracy {held_out_accuracy:.1%}")
gap_ratio = held_out_loss / train_loss
no_large_gap = gap_ratio < 2
''',
        discussion=r"""
A held-out loss almost four times the training loss means the model fits its training examples
better than it has learned the task: it is overfitting, and more training of the same kind will
widen the gap. Stop on the held-out loss (early stopping), and add data, weight decay (AdamW),
dropout or a smaller model. The site's run shows the opposite situation: after its last step the
training loss is {{ train_loss:sig2 }} and the held-out loss {{ held_out_loss:sig2 }}, a ratio of
{{ gap_ratio:sig2 }}, with {{ held_out_accuracy:pct1 }} of the held-out expressions right.{{ check: no_large_gap }}
Its task has a rule that covers unseen inputs exactly, and 4,000 of the 5,000 possible inputs
to learn it from.
""",
    ),
]
