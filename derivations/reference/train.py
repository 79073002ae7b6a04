"""Train the chapter's model on the digits task with the reference backward pass and Adam.

:func:`train` is the whole loop, seeded and deterministic. :func:`load_or_train`
is what pages and figures call: it returns a cached run when one exists for
exactly this code and these settings, and trains (once) otherwise.

The cache key hashes the source of the modules of ``derivations.reference``
that compute a run (:data:`DEPENDENCIES`), the NumPy version and the settings,
so a change to any of them trains again and an unrelated change (a page, a
figure, another reference module) does not. The
cache lives in ``.cache/training/`` at the repository root, or under
``$DERIVATIONS_CACHE/training/`` when that variable is set.

A cache miss trains in a child process with one BLAS thread. On a two-core
machine a multi-threaded BLAS spends longer coordinating threads than
multiplying the model's small matrices (a step gets several times slower when
another process is busy), and one thread also makes the arithmetic order, and
so the result, independent of the machine's load.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._checks import as_int, as_real, require
from .layers import cross_entropy
from .model import (TransformerConfig, backward, final_logits, forward, forward_backward, init_params,
                    stage_names)
from .optim import adam_init, adam_step
from .task import encode_example, make_split

__all__ = ["TrainingSettings", "TrainingRun", "train", "load_or_train", "cache_path", "time_forward_backward"]

_REFERENCE = Path(__file__).resolve().parent
_ENV_CACHE = "DERIVATIONS_CACHE"


@dataclass(frozen=True)
class TrainingSettings:
    """Everything a training run depends on besides the code; the defaults are the chapter's run.

    Attributes
    ----------
    config : TransformerConfig
    init_seed : int
        Seed of :func:`~.model.init_params`.
    data_seed : int
        Seed of the train/held-out split (:func:`~.task.make_split`).
    batch_seed : int
        Seed of the generator that draws the training batches.
    n_train, n_held_out : int
        Sizes of the split (out of 5000 possible inputs).
    batch_size, steps : int
    lr : float
        Adam's learning rate (the other Adam constants are PyTorch's defaults).
    eval_every : int
        Held-out loss and accuracy are measured every ``eval_every`` steps (and at the end).
    probe_size : int
        The first ``probe_size`` training examples form a fixed batch on which
        the per-stage gradient norms are recorded at ``probe_steps``.
    probe_steps : tuple of int
        Steps (parameters before that step's update; ``steps`` means the trained
        model) at which the probe gradients are recorded.
    example : str
        The expression whose attention weights are recorded before and after training.
    timing_repeats : int
        Timed forward and backward passes (the median is kept).
    """

    config: TransformerConfig = field(default_factory=TransformerConfig)
    init_seed: int = 0
    data_seed: int = 0
    batch_seed: int = 1
    n_train: int = 4000
    n_held_out: int = 1000
    batch_size: int = 32
    steps: int = 500  # held-out accuracy stays at or above 99 % from step 250: the chapter needs no more
    lr: float = 1e-3
    eval_every: int = 50
    probe_size: int = 256
    probe_steps: tuple = (0, 100, 500)
    example: str = "Max(1,6,2)"
    timing_repeats: int = 25

    def __post_init__(self):
        require(isinstance(self.config, TransformerConfig),
                f"config must be a TransformerConfig, got {type(self.config).__name__}")
        for name in ("init_seed", "data_seed", "batch_seed", "n_held_out", "steps"):
            as_int(getattr(self, name), name, minimum=0)
        for name in ("n_train", "batch_size", "eval_every", "probe_size", "timing_repeats"):
            as_int(getattr(self, name), name, minimum=1)
        require(self.probe_size <= self.n_train,
                f"probe_size = {self.probe_size} must be <= n_train = {self.n_train} (the probe is training examples)")
        as_real(self.lr, "lr", low=0.0, low_open=True)
        require(isinstance(self.probe_steps, tuple), f"probe_steps must be a tuple of steps, got {self.probe_steps!r}")
        for step in self.probe_steps:
            as_int(step, f"probe_steps entry {step!r}", minimum=0)
        require(isinstance(self.example, str), f"example must be an expression such as 'Max(1,6,2)', got {self.example!r}")
        encode_example(self.example)  # raises a ValueError naming a malformed expression

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["probe_steps"] = list(self.probe_steps)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainingSettings":
        d = dict(d)
        d["config"] = TransformerConfig(**d["config"])
        d["probe_steps"] = tuple(d["probe_steps"])
        return cls(**d)


@dataclass
class TrainingRun:
    """The record of one training run (all arrays float64 unless said otherwise).

    Attributes
    ----------
    settings : TrainingSettings
    losses : ndarray ``[steps]``
        Mean cross-entropy of each step's training batch, before its update.
    eval_steps : ndarray of int ``[n_evals]``
        Steps at which the held-out set was evaluated (parameters before that step's update).
    held_out_loss, held_out_accuracy : ndarray ``[n_evals]``
    probe_steps : ndarray of int
    stage_grad_norms : dict of str to ndarray ``[len(probe_steps)]``
        Frobenius norm of the gradient of the probe batch's mean loss with
        respect to each stage's activation (:func:`~.model.stage_names`).
    param_grad_norms : dict of str to ndarray ``[len(probe_steps)]``
        Frobenius norm of each parameter's gradient on the probe batch.
    attention_before, attention_after : ndarray ``[n_layers, n_heads, T, T]``
        Attention weights of ``settings.example``, at initialisation and after training.
    params : dict of str to ndarray
        The trained parameters.
    forward_seconds, backward_seconds : float
        Median wall-clock time of one forward and one backward pass on a
        training batch, measured once, when the run was computed.
    train_seconds : float
        Wall-clock time of the training loop.
    """

    settings: TrainingSettings
    losses: np.ndarray
    eval_steps: np.ndarray
    held_out_loss: np.ndarray
    held_out_accuracy: np.ndarray
    probe_steps: np.ndarray
    stage_grad_norms: dict
    param_grad_norms: dict
    attention_before: np.ndarray
    attention_after: np.ndarray
    params: dict
    forward_seconds: float
    backward_seconds: float
    train_seconds: float

    _SCALARS = ("forward_seconds", "backward_seconds", "train_seconds")
    _ARRAYS = ("losses", "eval_steps", "held_out_loss", "held_out_accuracy", "probe_steps",
               "attention_before", "attention_after")
    _DICTS = ("stage_grad_norms", "param_grad_norms", "params")

    def save(self, path: Path) -> None:
        """Write to ``path`` (an ``.npz`` file, no pickles)."""
        arrays = {name: getattr(self, name) for name in self._ARRAYS}
        for group in self._DICTS:
            arrays.update({f"{group}/{k}": v for k, v in getattr(self, group).items()})
        meta = {"settings": self.settings.as_dict(), **{k: getattr(self, k) for k in self._SCALARS},
                "order": {g: list(getattr(self, g)) for g in self._DICTS}}
        arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
        with open(path, "wb") as out:
            np.savez(out, **arrays)

    @classmethod
    def load(cls, path: Path) -> "TrainingRun":
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            kwargs = {name: data[name] for name in cls._ARRAYS}
            for group in cls._DICTS:
                kwargs[group] = {k: data[f"{group}/{k}"] for k in meta["order"][group]}
        kwargs.update({k: meta[k] for k in cls._SCALARS})
        return cls(settings=TrainingSettings.from_dict(meta["settings"]), **kwargs)

    @property
    def final_accuracy(self) -> float:
        return float(self.held_out_accuracy[-1])


# ----------------------------------------------------------------------------- the loop


def _probe(params, probe, config):
    """Per-stage and per-parameter gradient norms on the probe batch."""
    _, grads, trace = forward_backward(params, probe.tokens, probe.targets, config, record=True)
    stages = {s: float(np.linalg.norm(trace["grads"][s])) for s in stage_names(config)}
    return stages, {k: float(np.linalg.norm(g)) for k, g in grads.items()}


def _evaluate(params, data, config):
    logits = final_logits(params, data.tokens, config)  # no backward follows: no caches, final position only
    loss, _ = cross_entropy(logits, data.targets)
    return loss, float(np.mean(np.argmax(logits, axis=1) == data.targets))


def _attention(params, example, config):
    tokens, target = encode_example(example)
    _, _, trace = forward_backward(params, tokens[None], [target], config, record=True)
    return np.stack([A[0] for A in trace["attention"]])


def time_forward_backward(params, tokens, targets, config, repeats: int = 25) -> tuple[float, float]:
    """Median seconds of one :func:`~.model.forward` and of one :func:`~.model.backward` on this batch."""
    from .layers import cross_entropy_backward

    forward_times, backward_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        logits, cache = forward(params, tokens, config)
        middle = time.perf_counter()
        _, cache_loss = cross_entropy(logits, targets)
        dlogits = cross_entropy_backward(1.0, cache_loss)
        before_backward = time.perf_counter()
        backward(dlogits, cache)
        end = time.perf_counter()
        forward_times.append(middle - start)
        backward_times.append(end - before_backward)
    return float(np.median(forward_times)), float(np.median(backward_times))


def train(settings: TrainingSettings = TrainingSettings()) -> TrainingRun:
    """Run the training loop in this process and return its record (no cache).

    Each step draws a batch with replacement from the training set, computes
    :func:`~.model.loss_and_grads` and applies :func:`~.optim.adam_step`. The
    same settings give the same run, bit for bit, on the same machine and
    BLAS thread count.
    """
    s = settings
    config = s.config
    train_set, held_out = make_split(s.n_train, s.n_held_out, s.data_seed)
    probe = type(train_set)(train_set.tokens[: s.probe_size], train_set.targets[: s.probe_size])
    params = init_params(config, s.init_seed)
    attention_before = _attention(params, s.example, config)
    state = adam_init(params)
    rng = np.random.default_rng(s.batch_seed)

    losses, eval_steps, eval_loss, eval_acc = [], [], [], []
    stage_norms, param_norms = [], []
    start = time.perf_counter()
    for step in range(s.steps + 1):
        if step in s.probe_steps:
            stages, per_param = _probe(params, probe, config)
            stage_norms.append(stages)
            param_norms.append(per_param)
        if step % s.eval_every == 0 or step == s.steps:
            loss, accuracy = _evaluate(params, held_out, config)
            eval_steps.append(step)
            eval_loss.append(loss)
            eval_acc.append(accuracy)
        if step == s.steps:
            break
        rows = rng.integers(0, len(train_set), size=s.batch_size)
        loss, grads = forward_backward(params, train_set.tokens[rows], train_set.targets[rows], config)
        losses.append(loss)
        params, state = adam_step(params, grads, state, lr=s.lr)
    train_seconds = time.perf_counter() - start

    rows = np.random.default_rng(s.batch_seed + 1).integers(0, len(train_set), size=s.batch_size)
    forward_seconds, backward_seconds = time_forward_backward(
        params, train_set.tokens[rows], train_set.targets[rows], config, s.timing_repeats)
    probe_steps = [p for p in sorted(s.probe_steps) if p <= s.steps]
    return TrainingRun(
        settings=s,
        losses=np.array(losses),
        eval_steps=np.array(eval_steps, dtype=np.int64),
        held_out_loss=np.array(eval_loss),
        held_out_accuracy=np.array(eval_acc),
        probe_steps=np.array(probe_steps, dtype=np.int64),
        stage_grad_norms={k: np.array([n[k] for n in stage_norms]) for k in stage_names(config)},
        param_grad_norms={k: np.array([n[k] for n in param_norms]) for k in params},
        attention_before=attention_before,
        attention_after=_attention(params, s.example, config),
        params=params,
        forward_seconds=forward_seconds,
        backward_seconds=backward_seconds,
        train_seconds=train_seconds,
    )


# ----------------------------------------------------------------------------- the cache


#: The modules of ``derivations.reference`` a run depends on: this one and everything it imports,
#: directly or not (a test checks the list against the imports). Only their source enters the cache
#: key, so editing another module of the package does not retrain.
DEPENDENCIES = ("_checks", "attention", "layers", "model", "multi_head", "optim", "task", "train")


def _code_hash() -> str:
    digest = hashlib.sha256()
    for name in DEPENDENCIES:
        path = _REFERENCE / f"{name}.py"
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(f"numpy=={np.__version__}".encode())
    return digest.hexdigest()


def cache_path(settings: TrainingSettings = TrainingSettings(), cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the run of ``settings`` is cached: ``<cache>/training/<hash>.npz``.

    ``cache_dir`` defaults to ``$DERIVATIONS_CACHE`` if set, else ``.cache`` at
    the repository root. The hash covers the reference modules a run depends
    on (:data:`DEPENDENCIES`), NumPy's version and the settings.
    """
    if cache_dir is None:
        cache_dir = os.environ.get(_ENV_CACHE) or _REFERENCE.parent.parent / ".cache"
    key = hashlib.sha256((_code_hash() + json.dumps(settings.as_dict(), sort_keys=True)).encode()).hexdigest()[:24]
    return Path(cache_dir) / "training" / f"{key}.npz"


def train_to_file(settings: TrainingSettings, path: Path) -> None:
    """Train in a child process with one BLAS thread and write the run to ``path`` (module docstring)."""
    env = {**os.environ, **{name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}}
    # The child imports this very package (not another copy an editable install may point to).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "derivations.reference.train", json.dumps(settings.as_dict()), str(path)],
        env=env, capture_output=True, text=True,
    )
    if result.returncode != 0 or not path.exists():
        raise RuntimeError(f"training failed (exit code {result.returncode}):\n{result.stdout}\n{result.stderr}")


def load_or_train(settings: TrainingSettings = TrainingSettings(),
                  cache_dir: str | os.PathLike | None = None) -> TrainingRun:
    """The run of ``settings``: from the cache if present, else trained once and cached.

    Concurrent callers (two builds, a build and the tests) wait on a lock file
    instead of training twice; the run is written to a temporary file and
    renamed, so a reader never sees half a file.
    """
    path = cache_path(settings, cache_dir)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not path.exists():
                partial = path.with_suffix(f".{os.getpid()}.partial")
                try:
                    train_to_file(settings, partial)
                    partial.replace(path)
                finally:
                    partial.unlink(missing_ok=True)
    return TrainingRun.load(path)


def _main(argv: list[str]) -> int:
    settings_json, out = argv
    run = train(TrainingSettings.from_dict(json.loads(settings_json)))
    run.save(Path(out))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
