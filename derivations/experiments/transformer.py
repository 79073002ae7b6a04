"""The experiments of the whole-transformer chapter, shared by its page and its figures.

Each function measures one thing the chapter says about the model of
:mod:`derivations.reference.model`, with the reference forward and backward passes
(never a gradient derived here by hand). Everything is float64 and seeded; what the
page calls "typical" is measured over the initialisations :data:`SEEDS`.

The sections follow the chapter:

- the example and helpers: :func:`example_batch`, :func:`flatten`, :func:`random_direction`,
  :func:`directional_derivative`, :func:`parameter_group`
- at initialisation, over seeds: :func:`initial_losses`, :func:`zeroed_fraction`,
  :func:`zeroed_fractions`, :func:`layer_norm_rescaling`, :func:`gelu_gradient_gap`,
  :func:`stage_gradient_norms`
- updating the parameters: :func:`first_steps`, :func:`zero_gradient_sources`
- checking the gradient: :func:`gradient_check`, :func:`truncation_estimate`, :func:`kinks_crossed`
- cost: :func:`training_memory`, :func:`cache_arrays`, :func:`activation_bytes_by_length`,
  :func:`elementwise_operations_bound`
- batches: :func:`batch_gradient_deviation`
- training: :func:`first_evaluation_reaching`, :func:`answer_attention_share`, :func:`probe_gradient_norms`
- pitfalls: :func:`gamma_gradient_without_skip`
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..reference._checks import require
from ..reference.layers import layer_norm, layer_norm_backward
from ..reference.model import (
    TransformerConfig,
    cache_nbytes,
    forward,
    forward_backward,
    init_params,
    model_loss,
)
from ..reference.optim import adam_init, adam_step, sgd_step
from ..reference.task import Dataset, encode_example, make_split
from ..reference.train import TrainingSettings

__all__ = [
    "EXAMPLE",
    "SEEDS",
    "example_batch",
    "flatten",
    "random_direction",
    "directional_derivative",
    "parameter_group",
    "initial_losses",
    "zeroed_fraction",
    "zeroed_fractions",
    "layer_norm_rescaling",
    "gelu_gradient_gap",
    "stage_gradient_norms",
    "FirstSteps",
    "first_steps",
    "zero_gradient_sources",
    "GradientCheck",
    "gradient_check",
    "truncation_estimate",
    "kinks_crossed",
    "training_memory",
    "activation_bytes_by_length",
    "elementwise_operations_bound",
    "cache_arrays",
    "batch_gradient_deviation",
    "first_evaluation_reaching",
    "answer_attention_share",
    "probe_gradient_norms",
    "gamma_gradient_without_skip",
]

#: The chapter's worked example.
EXAMPLE = "Max(1,6,2)"
#: Initialisations over which the chapter states what is typical (seed 0 is the worked example's).
SEEDS = tuple(range(10))


# ----------------------------------------------------------------------------- the example and helpers


def example_batch(text: str = EXAMPLE) -> tuple[np.ndarray, np.ndarray]:
    """A batch of one expression: ``tokens [1, T]`` and ``targets [1]``, int64.

    Examples
    --------
    >>> tokens, targets = example_batch()
    >>> tokens.tolist(), targets.tolist()
    ([[15, 17, 3, 19, 8, 19, 4, 18]], [8])
    """
    tokens, target = encode_example(text)
    return tokens[None, :], np.array([target], dtype=np.int64)


def flatten(arrays: dict, names=None) -> np.ndarray:
    """The arrays of a parameter-shaped dict as one vector, in the order of ``names`` (default: the dict's).

    Examples
    --------
    >>> flatten({"a": np.ones((2, 2)), "b": np.zeros(1)}).tolist()
    [1.0, 1.0, 1.0, 1.0, 0.0]
    """
    names = list(arrays) if names is None else list(names)
    return np.concatenate([np.asarray(arrays[k], dtype=np.float64).ravel() for k in names])


def random_direction(like: dict, rng: np.random.Generator) -> dict:
    """A random unit vector in the space of all of ``like``'s entries, shaped like ``like``.

    The entries are standard normal draws (in ``like``'s order) divided by their joint norm, so
    every direction is equally likely.

    Examples
    --------
    >>> u = random_direction({"a": np.zeros((3, 2)), "b": np.zeros(4)}, np.random.default_rng(0))
    >>> u["a"].shape, round(float(np.linalg.norm(flatten(u))), 12)
    ((3, 2), 1.0)
    """
    draws = {k: rng.standard_normal(np.shape(v)) for k, v in like.items()}
    norm = np.linalg.norm(flatten(draws))
    return {k: v / norm for k, v in draws.items()}


def directional_derivative(params, tokens, targets, config: TransformerConfig, direction: dict,
                           step: float) -> float:
    """Central difference of the model's loss along ``direction``: ``(L(p + s u) - L(p - s u)) / 2s``.

    ``direction`` may hold only some of the parameters; the others stay where they are.
    """
    require(step > 0, f"step must be positive, got {step}")
    unknown = set(direction) - set(params)
    require(not unknown, f"direction names parameters the model does not have: {sorted(unknown)}")

    def moved(sign):
        return {k: v + sign * step * direction[k] if k in direction else v for k, v in params.items()}

    plus, minus = (model_loss(moved(sign), tokens, targets, config) for sign in (+1, -1))
    return (plus - minus) / (2 * step)


def parameter_group(name: str) -> str:
    """The group a parameter belongs to: ``embed``, ``block{l}.attn``, ``block{l}.ln1``, ..., ``ln_final``, ``head``.

    Examples
    --------
    >>> [parameter_group(n) for n in ("embed", "block1.ffn.W1", "ln_final.gamma", "W_out", "b_out")]
    ['embed', 'block1.ffn', 'ln_final', 'head', 'head']
    """
    if name in ("W_out", "b_out"):
        return "head"
    if name.startswith("block"):
        return ".".join(name.split(".")[:2])
    return name.split(".")[0]


def _traced(params, tokens, targets, config):
    return forward_backward(params, tokens, targets, config, record=True)


# ----------------------------------------------------------------------------- at initialisation, over seeds


def initial_losses(seeds=SEEDS, data: Dataset | None = None, config: TransformerConfig = TransformerConfig(),
                   example: str = EXAMPLE) -> tuple[np.ndarray, np.ndarray]:
    """The untrained model's loss on the example and its mean loss on ``data``, for each seed.

    ``data`` defaults to the first 64 held-out inputs of the training run's split.

    Returns
    -------
    example_loss, data_loss : ndarray ``[len(seeds)]``
    """
    data = _held_out_sample() if data is None else data
    tokens, targets = example_batch(example)
    example_loss, data_loss = [], []
    for seed in seeds:
        params = init_params(config, seed)
        example_loss.append(model_loss(params, tokens, targets, config))
        data_loss.append(model_loss(params, data.tokens, data.targets, config))
    return np.array(example_loss), np.array(data_loss)


def _held_out_sample(size: int = 64) -> Dataset:
    s = TrainingSettings()
    _, held_out = make_split(s.n_train, s.n_held_out, s.data_seed)
    return Dataset(held_out.tokens[:size], held_out.targets[:size])


def zeroed_fraction(trace: dict, block: int) -> float:
    """Share of the non-zero gradient entries arriving at block ``block``'s FFN activation that it sets to 0.

    Read from a recorded pass (``trace`` of :func:`~derivations.reference.model.forward_backward`):
    an entry counts when the gradient at the activation's output (``ffn.act``) is non-zero and
    the gradient the backward pass sends to its input (``ffn.pre``) is exactly zero. Rows that
    receive no gradient at all (positions the loss never reads) are not counted.
    """
    arriving = trace["grads"][f"block{block}.ffn.act"] != 0
    require(bool(np.any(arriving)), f"no gradient arrives at block {block}'s activation")
    blocked = arriving & (trace["grads"][f"block{block}.ffn.pre"] == 0)
    return float(blocked.sum() / arriving.sum())


def zeroed_fractions(params, data: Dataset, config: TransformerConfig) -> np.ndarray:
    """:func:`zeroed_fraction` of every block on ``data``, ``[n_layers]``."""
    _, _, trace = _traced(params, data.tokens, data.targets, config)
    return np.array([zeroed_fraction(trace, block) for block in range(config.n_layers)])


def layer_norm_rescaling(params, tokens, targets, config: TransformerConfig) -> dict[str, np.ndarray]:
    """How far each LayerNorm's backward pass is from multiplying the gradient by ``gamma / sigma``.

    For every LayerNorm of a post-norm model and every row that carries gradient, the ratio
    ``||dL/dx|| * sigma / ||gamma * dL/dy||``, with ``sigma = sqrt(var(x) + eps)`` of the row's
    input ``x``. It is below 1 by what the two projections of the backward pass remove (the
    gradient's mean and its component along ``x_hat``).

    Returns
    -------
    dict
        ``{"block{l}.ln1": ratios, "block{l}.ln2": ratios}``, each ``[rows carrying gradient]``.
    """
    require(config.norm == "post", "layer_norm_rescaling reads the post-norm stages (add1/ln1.out, add2/out)")
    _, _, trace = _traced(params, tokens, targets, config)
    acts, grads = trace["activations"], trace["grads"]
    ratios = {}
    for block in range(config.n_layers):
        for ln, before, after in (("ln1", "add1", "ln1.out"), ("ln2", "add2", "out")):
            x = acts[f"block{block}.{before}"].reshape(-1, config.d_model)
            dy = grads[f"block{block}.{after}"].reshape(-1, config.d_model)
            dx = grads[f"block{block}.{before}"].reshape(-1, config.d_model)
            rows = np.any(dy != 0, axis=1)
            sigma = np.sqrt(x[rows].var(axis=1) + config.ln_eps)
            scaled = np.linalg.norm(params[f"block{block}.{ln}.gamma"] * dy[rows], axis=1)
            ratios[f"block{block}.{ln}"] = np.linalg.norm(dx[rows], axis=1) * sigma / scaled
    return ratios


def gelu_gradient_gap(params, tokens, targets, config: TransformerConfig = TransformerConfig(),
                      direction_seed: int = 5, step: float = 1e-4) -> tuple[float, float, float]:
    """How far apart the whole-model gradients of exact GELU and tanh GELU are, and whether a check sees it.

    ``config`` gives the model's sizes; its activation is replaced by each GELU in turn.

    Returns
    -------
    gap : float
        ``||g_exact - g_tanh|| / ||g_exact||`` over all parameters.
    right, wrong : float
        Relative errors of ``g_exact . u`` and ``g_tanh . u`` against the central difference
        of the exact-GELU model's loss along a random unit direction ``u``.
    """
    import dataclasses

    exact_config = dataclasses.replace(config, activation="gelu")
    tanh_config = dataclasses.replace(config, activation="gelu_tanh")
    exact = forward_backward(params, tokens, targets, exact_config)[1]
    approx = forward_backward(params, tokens, targets, tanh_config)[1]
    gap = np.linalg.norm(flatten(exact) - flatten(approx)) / np.linalg.norm(flatten(exact))
    u = random_direction(params, np.random.default_rng(direction_seed))
    numeric = directional_derivative(params, tokens, targets, exact_config, u, step)
    right, wrong = (abs(numeric - flatten(g) @ flatten(u, g)) / abs(numeric) for g in (exact, approx))
    return float(gap), float(right), float(wrong)


def stage_gradient_norms(params, tokens, targets, config: TransformerConfig) -> dict[str, float]:
    """Frobenius norm of the loss gradient at every recorded stage, in backward order (logits first)."""
    _, _, trace = _traced(params, tokens, targets, config)
    return {stage: float(np.linalg.norm(trace["grads"][stage])) for stage in list(trace["grads"])[::-1]}


# ----------------------------------------------------------------------------- updating the parameters


class FirstSteps(NamedTuple):
    """One step of SGD and one of Adam from the same parameters and gradients, as flat vectors."""

    gradient: np.ndarray  # [n_params]
    sgd: np.ndarray  # the change SGD makes to each parameter
    adam: np.ndarray  # the change Adam's first step makes
    eps: float  # Adam's epsilon
    moved: np.ndarray  # bool: the parameters with a non-zero gradient


def first_steps(params, grads, lr: float) -> FirstSteps:
    """The first update of :func:`~derivations.reference.optim.sgd_step` and of ``adam_step`` (PyTorch defaults)."""
    import inspect

    eps = inspect.signature(adam_step).parameters["eps"].default
    after_sgd = sgd_step(params, grads, lr=lr)
    after_adam, _ = adam_step(params, grads, adam_init(params), lr=lr)
    start, g = flatten(params), flatten(grads, params)
    return FirstSteps(g, flatten(after_sgd, params) - start, flatten(after_adam, params) - start, float(eps), g != 0)


def zero_gradient_sources(grads, trace: dict, tokens, config: TransformerConfig) -> dict[str, int]:
    """Account for the exact zeros of a one-sequence gradient (post-norm, ReLU).

    Counts, from the recorded pass: the tokens absent from the sequence (their embedding rows get no
    gradient); in the last block, the FFN units whose input is ``<= 0`` at the last position (the only
    row that reaches the loss); in the blocks below, the units whose input is ``<= 0`` at every
    position. Each such unit leaves its column of ``W1``, its entry of ``b1`` and its row of ``W2`` at
    zero. ``"zeros"`` is the number of exact zeros in ``grads``, for comparison with the accounted sum
    ``"accounted"``.
    """
    tokens = np.asarray(tokens)
    require(tokens.ndim == 2 and tokens.shape[0] == 1, f"tokens {tokens.shape} must be one sequence, [1, T]")
    require(config.norm == "post" and config.activation == "relu", "the accounting assumes post-norm blocks with ReLU")
    last = config.n_layers - 1
    absent = config.vocab_size - len(set(tokens[0].tolist()))
    off_last = int(np.sum(trace["activations"][f"block{last}.ffn.pre"][0, -1] <= 0))
    off_below = [int(np.sum(np.all(trace["activations"][f"block{b}.ffn.pre"][0] <= 0, axis=0))) for b in range(last)]
    per_unit = 2 * config.d_model + 1
    return {
        "absent_tokens": absent,
        "off_last": off_last,
        "off_below": int(sum(off_below)),
        "accounted": absent * config.d_model + (off_last + sum(off_below)) * per_unit,
        "zeros": int(sum(np.sum(np.asarray(g) == 0) for g in grads.values())),
    }


# ----------------------------------------------------------------------------- checking the gradient


class GradientCheck(NamedTuple):
    """Analytic against central-difference derivatives, along random directions and single entries."""

    step: float
    direction_analytic: np.ndarray  # [n_directions]
    direction_numeric: np.ndarray
    entry_names: list  # [n_entries] parameter name of each sampled entry
    entry_analytic: np.ndarray  # [n_entries]
    entry_numeric: np.ndarray
    loss: float
    gradient_norm: float  # over all parameters
    n_params: int

    @property
    def direction_errors(self) -> np.ndarray:
        return np.abs(self.direction_numeric - self.direction_analytic) / np.abs(self.direction_analytic)

    @property
    def entry_errors(self) -> np.ndarray:
        scale = np.maximum(np.maximum(np.abs(self.entry_analytic), np.abs(self.entry_numeric)), 1e-12)
        return np.abs(self.entry_numeric - self.entry_analytic) / scale


def gradient_check(params, tokens, targets, config: TransformerConfig, n_directions: int = 10,
                   entries_per_array: int = 2, step: float = 1e-4, seed: int = 7) -> GradientCheck:
    """Compare the reference gradient with central differences of the loss.

    Along ``n_directions`` random unit directions in the space of all parameters (every parameter
    at once), and along ``entries_per_array`` randomly chosen single entries of every parameter
    array. Directions and entries come from ``np.random.default_rng(seed)``.
    """
    require(n_directions >= 1 and entries_per_array >= 0, "need at least one direction and entries_per_array >= 0")
    rng = np.random.default_rng(seed)
    loss, grads = forward_backward(params, tokens, targets, config)
    directions = [random_direction(params, rng) for _ in range(n_directions)]
    analytic = np.array([flatten(grads, params) @ flatten(u, params) for u in directions])
    numeric = np.array([directional_derivative(params, tokens, targets, config, u, step) for u in directions])
    names, entry_analytic, entry_numeric = [], [], []
    for name, value in params.items():
        for index in rng.choice(value.size, size=min(entries_per_array, value.size), replace=False):
            unit = np.zeros(value.shape)
            unit.flat[index] = 1.0
            names.append(name)
            entry_analytic.append(grads[name].flat[index])
            entry_numeric.append(directional_derivative(params, tokens, targets, config, {name: unit}, step))
    return GradientCheck(step, analytic, numeric, names, np.array(entry_analytic), np.array(entry_numeric),
                         float(loss), float(np.linalg.norm(flatten(grads))), int(flatten(params).size))


def truncation_estimate(params, tokens, targets, config: TransformerConfig, step: float = 1e-4,
                        seed: int = 7) -> float:
    """The truncation error of the central difference along the first direction of :func:`gradient_check`.

    The error of a central difference is ``c s^2`` plus rounding; with step ``2s`` it is ``4 c s^2``,
    so ``|D(2s) - D(s)| / 3`` estimates ``c s^2`` (as long as rounding is smaller).
    """
    u = random_direction(params, np.random.default_rng(seed))
    at = [directional_derivative(params, tokens, targets, config, u, s) for s in (step, 2 * step)]
    return abs(at[1] - at[0]) / 3


def kinks_crossed(params, tokens, config: TransformerConfig, step: float, n_directions: int = 10,
                  seed: int = 7) -> int:
    """How many ReLU inputs change sign when the parameters move by ``+-step`` along the check's directions.

    The directions are those of :func:`gradient_check` with the same ``seed``. Zero means that every
    central difference of the check stayed on one side of every kink.
    """
    rng = np.random.default_rng(seed)

    def signs(p):
        acts = forward(p, tokens, config, record=True)[1]["activations"]
        return np.concatenate([acts[f"block{b}.ffn.pre"].ravel() > 0 for b in range(config.n_layers)])

    base = signs(params)
    crossed = 0
    for _ in range(n_directions):
        u = random_direction(params, rng)
        for sign in (1, -1):
            crossed += int(np.sum(signs({k: v + sign * step * u[k] for k, v in params.items()}) != base))
    return crossed


# ----------------------------------------------------------------------------- cost


def cache_arrays(obj):
    """Every array in a nested cache (tuples, lists, dicts)."""
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from cache_arrays(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from cache_arrays(item)


def training_memory(params, config: TransformerConfig, tokens) -> dict[str, int]:
    """Bytes a training step with Adam holds, for the batch ``tokens [B, T]``.

    Returns ``{"parameters", "gradients", "Adam moments", "activations"}``: the parameters, one
    gradient per parameter, Adam's two moments per parameter, and the arrays the forward cache keeps
    for the backward pass (:func:`~derivations.reference.model.cache_nbytes`: shared buffers once,
    the parameters themselves not again).
    """
    tokens = np.array(tokens)  # a copy: a view would make the cache hold the whole array it views
    _, cache = forward(params, tokens, config)
    state = adam_init(params)
    size = sum(np.asarray(v).nbytes for v in params.values())
    return {
        "parameters": size,
        "gradients": size,  # a gradient has its parameter's shape and dtype
        "Adam moments": sum(v.nbytes for part in ("m", "v") for v in state[part].values()),
        "activations": cache_nbytes(cache, params),
    }


def activation_bytes_by_length(params, config: TransformerConfig, tokens, lengths) -> tuple[np.ndarray, np.ndarray]:
    """Bytes of the forward cache of one sequence at each length, and the attention weights' share of them.

    The sequence is ``tokens`` (one row) repeated to each length; the model is ``config`` with a
    positional encoding long enough for the longest. The attention weights are the arrays a recorded
    pass lists under ``"attention"``: the very arrays the blocks' caches keep for the backward pass.

    Returns
    -------
    total, attention : ndarray of int ``[len(lengths)]``
    """
    tokens = np.asarray(tokens)
    require(tokens.ndim == 2 and tokens.shape[0] == 1, f"tokens {tokens.shape} must be one sequence, [1, T]")
    require(config.positions == "sinusoidal",
            "activation_bytes_by_length lengthens the sinusoidal encoding; a learned position table "
            f"(config.positions = {config.positions!r}) has no rows beyond seq_len = {config.seq_len}")
    longer = TransformerConfig(**{**config.as_dict(), "seq_len": max(max(lengths), config.seq_len)})
    total, attention = [], []
    for T in lengths:
        sequence = np.resize(tokens[0], (1, T)).copy()  # np.resize may return a view of a longer array
        _, cache = forward(params, sequence, longer, record=True)
        total.append(cache_nbytes(cache, params))  # the recorded extras are not counted
        kept = {id(a) for a in cache_arrays(cache["blocks"])}
        require(all(id(A) in kept for A in cache["attention"]), "the attention weights are not in the blocks' caches")
        attention.append(sum(A.nbytes for A in cache["attention"]))
    return np.array(total), np.array(attention)


def elementwise_operations_bound(params, tokens, config: TransformerConfig, per_element: int = 10) -> int:
    """A generous count of the operations outside the matrix products of one forward pass.

    ``per_element`` operations for every entry of every elementwise result (the residual sums, the
    LayerNorms, the activations, the attention weights) and one per entry where a bias is added
    (the FFN's two linear maps and the logits). Ten per entry is more than a LayerNorm (mean,
    variance, normalise, scale, shift) or a softmax (max, subtract, exp, sum, divide) needs.
    """
    _, cache = forward(params, tokens, config, record=True)
    acts = cache["activations"]
    elementwise = sum(v.size for k, v in acts.items()
                      if k.startswith("block") and k.split(".", 1)[1] in ("add1", "ln1.out", "ffn.act", "add2", "out"))
    weights = sum(A.size for A in cache["attention"])
    biased = sum(v.size for k, v in acts.items() if k.endswith(("ffn.pre", "ffn.out", "logits")))
    return int(per_element * (elementwise + weights) + biased)


# ----------------------------------------------------------------------------- batches


def batch_gradient_deviation(params, pool: Dataset, config: TransformerConfig, batch_sizes=(1, 4, 16, 64),
                             draws: int = 10, seed: int = 0) -> np.ndarray:
    """How far the gradient of a random batch is from the gradient of the whole ``pool``.

    For each batch size ``B`` and each of ``draws`` batches drawn uniformly with replacement from
    ``pool`` (``np.random.default_rng(seed)``), the relative distance
    ``||g_batch - g_pool|| / ||g_pool||`` between the mean-loss gradients over all parameters.
    With replacement, ``E ||g_batch - g_pool||^2 = tr(Sigma) / B`` for the per-example covariance
    ``Sigma`` of the pool: the distance shrinks like ``1 / sqrt(B)``.

    Returns
    -------
    ndarray ``[len(batch_sizes), draws]``
    """
    require(draws >= 1 and all(int(b) >= 1 for b in batch_sizes), "batch sizes and draws must be >= 1")
    rng = np.random.default_rng(seed)
    full = flatten(forward_backward(params, pool.tokens, pool.targets, config)[1])
    out = np.empty((len(batch_sizes), draws))
    for i, size in enumerate(batch_sizes):
        for k in range(draws):
            rows = rng.integers(0, len(pool), size=int(size))
            g = flatten(forward_backward(params, pool.tokens[rows], pool.targets[rows], config)[1])
            out[i, k] = np.linalg.norm(g - full) / np.linalg.norm(full)
    return out


# ----------------------------------------------------------------------------- training


def first_evaluation_reaching(run, accuracy: float) -> int | None:
    """The first evaluation step at which the run's held-out accuracy is at least ``accuracy`` (None if never)."""
    reached = np.flatnonzero(np.asarray(run.held_out_accuracy) >= accuracy)
    return int(run.eval_steps[reached[0]]) if reached.size else None


def answer_attention_share(params, data: Dataset, config: TransformerConfig) -> np.ndarray:
    """For every block and head, the share of ``data``'s inputs on which the last position's largest
    attention weight falls on a position holding the answer digit.

    Returns
    -------
    ndarray ``[n_layers, n_heads]``
    """
    _, cache = forward(params, data.tokens, config, record=True)
    holds_answer = data.tokens == data.targets[:, None]  # [N, T]: the target is a digit token
    shares = np.empty((config.n_layers, config.n_heads))
    for block, weights in enumerate(cache["attention"]):  # [N, H, T, T]
        focus = np.argmax(weights[:, :, -1, :], axis=-1)  # [N, H]: the last query's favourite key
        shares[block] = np.mean(np.take_along_axis(holds_answer, focus, axis=1), axis=0)
    return shares


def probe_gradient_norms(settings: TrainingSettings = TrainingSettings(), seeds=SEEDS) -> tuple[dict, dict]:
    """The gradient norms a training run records at step 0, for several initialisations.

    Same probe batch (the first ``settings.probe_size`` training inputs) and model as the run of
    ``settings``, with ``init_params(config, seed)`` for each seed; for ``settings.init_seed`` this
    is the run's own step 0.

    Returns
    -------
    stages : dict
        ``{stage: ndarray [len(seeds)]}``, the norm of the gradient at every recorded stage.
    groups : dict
        ``{group: ndarray [len(seeds)]}``, the norm of the gradient of every parameter group
        (:func:`parameter_group`), in parameter order.
    """
    train_set, _ = make_split(settings.n_train, settings.n_held_out, settings.data_seed)
    tokens, targets = train_set.tokens[: settings.probe_size], train_set.targets[: settings.probe_size]
    stages, groups = [], []
    for seed in seeds:
        _, grads, trace = _traced(init_params(settings.config, seed), tokens, targets, settings.config)
        stages.append({stage: np.linalg.norm(g) for stage, g in trace["grads"].items()})
        squares: dict[str, float] = {}
        for name, g in grads.items():
            squares[parameter_group(name)] = squares.get(parameter_group(name), 0.0) + float(np.sum(g * g))
        groups.append({group: np.sqrt(v) for group, v in squares.items()})
    return ({stage: np.array([n[stage] for n in stages]) for stage in stages[0]},
            {group: np.array([n[group] for n in groups]) for group in groups[0]})


# ----------------------------------------------------------------------------- pitfalls


def gamma_gradient_without_skip(params, trace: dict, config: TransformerConfig,
                                block: int) -> tuple[np.ndarray, np.ndarray]:
    """``dL/dgamma`` of block ``block``'s first LayerNorm, right and with the residual copy dropped.

    At ``ln1.out`` the gradient is the sum of the copy that skipped the FFN (the gradient at
    ``add2``) and the copy that went through it. Dropping the skip copy leaves the FFN copy alone;
    both are passed back through the reference ``layer_norm_backward`` (post-norm only).

    Returns
    -------
    right, wrong : ndarray ``[d_model]``
    """
    require(config.norm == "post", "the dropped skip copy is modelled for post-norm blocks")
    p = f"block{block}."
    x = trace["activations"][p + "add1"]
    _, cache = layer_norm(x, params[p + "ln1.gamma"], params[p + "ln1.beta"], config.ln_eps)
    both = trace["grads"][p + "ln1.out"]
    ffn_copy = both - trace["grads"][p + "add2"]
    return layer_norm_backward(both, cache)[1], layer_norm_backward(ffn_copy, cache)[1]
