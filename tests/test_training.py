"""Training: reproducible, learning, cached (a second call does not train), keyed on code and settings.

The chapter's figures drawn from a run are tested in ``test_transformer_figures.py``.

Every run here uses a tiny configuration; the chapter's full run is never started by these tests.
"""

from __future__ import annotations

import ast
import dataclasses
import shutil
import subprocess
import sys

import numpy as np
import pytest

from derivations.reference import train as training
from derivations.reference.model import TransformerConfig, stage_names
from derivations.reference.train import TrainingRun, TrainingSettings, cache_path, load_or_train, train

TINY = TrainingSettings(
    config=TransformerConfig(d_model=16, n_heads=2, d_ff=32, n_layers=1),
    n_train=400, n_held_out=100, batch_size=16, steps=60, lr=3e-3, eval_every=20, probe_size=16,
    probe_steps=(0, 30, 60), timing_repeats=2, init_seed=3, data_seed=2,  # seeds unlike every default
)
TIMINGS = {"forward_seconds", "backward_seconds", "train_seconds"}


@pytest.fixture(scope="module")
def tiny_run() -> TrainingRun:
    return train(TINY)


@pytest.fixture(scope="module")
def second_run() -> TrainingRun:
    """The same settings trained again (once for every test that compares two runs)."""
    return train(TINY)


def assert_same_run(a: TrainingRun, b: TrainingRun, exact: bool = True) -> None:
    compare = np.testing.assert_array_equal if exact else (lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6))
    assert a.settings == b.settings
    for field in dataclasses.fields(TrainingRun):
        if field.name in TIMINGS or field.name == "settings":
            continue
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, dict):
            assert list(x) == list(y), field.name
            for key in x:
                compare(x[key], y[key])
        else:
            compare(x, y)


def test_training_is_reproducible(tiny_run, second_run):
    assert_same_run(tiny_run, second_run)


def test_another_seed_gives_another_run(tiny_run):
    other = train(dataclasses.replace(TINY, batch_seed=TINY.batch_seed + 1))
    assert not np.array_equal(other.losses, tiny_run.losses)


def test_the_run_learns_and_its_record_has_the_promised_shapes(tiny_run):
    run, config = tiny_run, TINY.config
    assert run.losses.shape == (TINY.steps,)
    # below log 10: more than "the answer is one of the ten digits", which alone takes the loss from log 20 to log 10
    assert run.losses[-10:].mean() < np.log(10) < run.losses[:3].mean()
    assert run.eval_steps.tolist() == [0, 20, 40, 60]
    assert run.held_out_accuracy[-1] > run.held_out_accuracy[0]
    assert np.all((run.held_out_accuracy >= 0) & (run.held_out_accuracy <= 1))
    assert run.probe_steps.tolist() == [0, 30, 60]
    assert list(run.stage_grad_norms) == stage_names(config)
    assert all(v.shape == (3,) and np.all(v > 0) for v in run.stage_grad_norms.values())
    assert run.attention_before.shape == (1, 2, 8, 8)
    np.testing.assert_allclose(run.attention_after.sum(axis=-1), 1.0, rtol=1e-12)
    assert not np.allclose(run.attention_before, run.attention_after)
    assert run.forward_seconds > 0 and run.backward_seconds > 0


def test_save_and_load_round_trip(tiny_run, tmp_path):
    path = tmp_path / "run.npz"
    tiny_run.save(path)
    loaded = TrainingRun.load(path)
    assert_same_run(tiny_run, loaded)
    assert {k: getattr(loaded, k) for k in TIMINGS} == {k: getattr(tiny_run, k) for k in TIMINGS}


def test_second_call_reads_the_cache_instead_of_training(tiny_run, tmp_path, monkeypatch):
    first = load_or_train(TINY, cache_dir=tmp_path)
    assert cache_path(TINY, tmp_path).exists() and cache_path(TINY, tmp_path).parent == tmp_path / "training"

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the run was cached")

    monkeypatch.setattr(training, "train_to_file", no_training)
    monkeypatch.setattr(training, "train", no_training)
    second = load_or_train(TINY, cache_dir=tmp_path)
    assert_same_run(first, second)
    assert second.forward_seconds == first.forward_seconds  # the stored measurement, not a new one
    # the child process (one BLAS thread) computes the same run as this process, up to rounding
    assert_same_run(first, tiny_run, exact=False)
    # and the guard is real: a miss with the loop disabled fails
    with pytest.raises(AssertionError, match="trained although"):
        load_or_train(dataclasses.replace(TINY, steps=3), cache_dir=tmp_path)


def test_cache_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DERIVATIONS_CACHE", str(tmp_path))
    assert cache_path(TINY).parent == tmp_path / "training"
    monkeypatch.delenv("DERIVATIONS_CACHE")
    assert cache_path(TINY).parent.parent.name == ".cache"


def test_cache_key_depends_on_settings_and_code(tmp_path, monkeypatch):
    keys = {cache_path(TINY, tmp_path)}
    for change in ({"lr": 1e-2}, {"steps": 61}, {"config": TransformerConfig(n_layers=1)}, {"init_seed": 5}):
        keys.add(cache_path(dataclasses.replace(TINY, **change), tmp_path))
    assert len(keys) == 5
    copy = tmp_path / "reference"
    shutil.copytree(training._REFERENCE, copy)
    monkeypatch.setattr(training, "_REFERENCE", copy)
    unchanged = cache_path(TINY, tmp_path)
    (copy / "unrelated_module.py").write_text("x = 1\n")
    assert cache_path(TINY, tmp_path) == unchanged  # not a dependency of the run
    (copy / "layers.py").write_text((copy / "layers.py").read_text() + "\n# changed\n")
    assert cache_path(TINY, tmp_path) != unchanged


def test_dependencies_list_every_module_the_run_imports():
    """Parse the relative imports of the listed modules: the list must be closed under them."""
    found = set()
    for name in training.DEPENDENCIES:
        tree = ast.parse((training._REFERENCE / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found.update([node.module] if node.module else [a.name for a in node.names])
    assert found <= set(training.DEPENDENCIES), found - set(training.DEPENDENCIES)


def test_the_package_does_not_import_mkdocs():
    code = ("import sys, derivations, derivations.reference.train, derivations.figures, derivations.symbolic; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mkdocs', 'markdown_exec')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- the run against an independent loop


@pytest.fixture(scope="module")
def torch_replay():
    """TINY's training loop written again with the torch model and ``torch.optim.Adam``, same batches."""
    import torch

    from derivations.reference.model import init_params
    from derivations.reference.task import encode_example, make_split
    from torch_model import TorchTransformer

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        train_set, held_out = make_split(TINY.n_train, TINY.n_held_out, TINY.data_seed)
        model = TorchTransformer(TINY.config)
        model.load(init_params(TINY.config, TINY.init_seed))
        optimizer = torch.optim.Adam(model.parameters(), lr=TINY.lr)
        rng = np.random.default_rng(TINY.batch_seed)
        probe = (torch.tensor(train_set.tokens[:TINY.probe_size]), torch.tensor(train_set.targets[:TINY.probe_size]))
        example_tokens, example_target = encode_example(TINY.example)
        example = (torch.tensor(example_tokens[None]), torch.tensor([example_target]))
        record = {"losses": [], "held_out_loss": [], "held_out_accuracy": [], "stage_norms": [], "param_norms": [],
                  "attention": []}

        def evaluate():
            loss, stages, _ = model(torch.tensor(held_out.tokens), torch.tensor(held_out.targets), record=True)
            record["held_out_loss"].append(loss.item())
            record["held_out_accuracy"].append(float((stages["logits"].argmax(1).numpy() == held_out.targets).mean()))

        def probe_norms():
            model.zero_grad()
            loss, stages, _ = model(*probe, record=True)
            loss.backward()
            record["stage_norms"].append({k: float(t.grad.norm()) for k, t in stages.items()})
            record["param_norms"].append({n: float(np.linalg.norm(g)) for n, g in model.grads().items()})
            model.zero_grad()

        def attention_weights():
            _, _, weights = model(*example, record=True)
            record["attention"].append(np.stack([w[0].detach().numpy() for w in weights]))

        attention_weights()
        for step in range(TINY.steps + 1):
            if step in TINY.probe_steps:
                probe_norms()
            if step % TINY.eval_every == 0 or step == TINY.steps:
                evaluate()
            if step == TINY.steps:
                break
            rows = rng.integers(0, len(train_set), size=TINY.batch_size)
            optimizer.zero_grad()
            loss = model(torch.tensor(train_set.tokens[rows]), torch.tensor(train_set.targets[rows]))
            loss.backward()
            optimizer.step()
            record["losses"].append(loss.item())
        attention_weights()
        record["train_set"] = train_set
        record["model"] = model
        yield record
    finally:
        torch.set_default_dtype(previous)


def test_the_run_matches_an_independent_torch_training_loop(torch_replay):
    """Losses, held-out metrics (on the held-out set, not the training set), probes and attention: torch's.

    It trains here rather than using the module's run: mutmut links a test to the code it calls,
    and a cached fixture would link only the first test that built it.
    """
    import time

    start = time.perf_counter()
    run = train(TINY)
    elapsed = time.perf_counter() - start
    assert run.settings == TINY
    assert run.eval_steps.tolist() == [0, 20, 40, 60] and run.probe_steps.tolist() == [0, 30, 60]
    assert 0 < run.train_seconds < elapsed and run.forward_seconds > 0 and run.backward_seconds > 0
    np.testing.assert_allclose(run.losses, torch_replay["losses"], rtol=1e-8)
    np.testing.assert_allclose(run.held_out_loss, torch_replay["held_out_loss"], rtol=1e-8)
    np.testing.assert_array_equal(run.held_out_accuracy, torch_replay["held_out_accuracy"])
    assert run.final_accuracy == torch_replay["held_out_accuracy"][-1]
    for k, step in enumerate(run.probe_steps):
        for name, norms in run.stage_grad_norms.items():
            assert norms[k] == pytest.approx(torch_replay["stage_norms"][k][name], rel=1e-7), (step, name)
        for name, norms in run.param_grad_norms.items():
            assert norms[k] == pytest.approx(torch_replay["param_norms"][k][name], rel=1e-7), (step, name)
    np.testing.assert_allclose(run.attention_before, torch_replay["attention"][0], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(run.attention_after, torch_replay["attention"][1], rtol=1e-6, atol=1e-10)
    final = {k: v.detach().numpy() for k, v in torch_replay["model"].named_parameters()}
    assert run.params["W_out"] == pytest.approx(final["head.weight"].T, rel=1e-6, abs=1e-10)


def test_held_out_metrics_are_not_the_training_sets(tiny_run, torch_replay):
    """The control for the check above: on the training set the same parameters score differently."""
    import torch

    model, train_set = torch_replay["model"], torch_replay["train_set"]
    on_training_set = model(torch.tensor(train_set.tokens), torch.tensor(train_set.targets)).item()
    assert abs(on_training_set - tiny_run.held_out_loss[-1]) > 1e-3


def test_timings_measure_forward_and_backward_alone(monkeypatch):
    """A fake clock: forward takes 1, the loss 10, backward 100 time units. The timings must see 1 and 100."""
    clock = [0.0]
    monkeypatch.setattr(training.time, "perf_counter", lambda: clock[0])
    real = {name: getattr(training, name) for name in ("forward", "backward", "cross_entropy")}

    def ticking(name, cost):
        def run(*args, **kwargs):
            clock[0] += cost
            return real[name](*args, **kwargs)
        return run

    calls = []
    monkeypatch.setattr(training, "forward", lambda *a, **k: calls.append(1) or ticking("forward", 1.0)(*a, **k))
    monkeypatch.setattr(training, "cross_entropy", ticking("cross_entropy", 10.0))
    monkeypatch.setattr(training, "backward", ticking("backward", 100.0))
    from derivations.reference.model import init_params

    config = TINY.config
    tokens, targets = np.array([[15, 17, 3, 19, 8, 19, 4, 18]] * 2), np.array([8, 8])
    forward_seconds, backward_seconds = training.time_forward_backward(init_params(config), tokens, targets, config,
                                                                       repeats=3)
    assert (forward_seconds, backward_seconds) == (1.0, 100.0) and len(calls) == 3
    training.time_forward_backward(init_params(config), tokens, targets, config)
    assert len(calls) == 3 + 25  # the documented default, 25 repeats


# ----------------------------------------------------------------------------- the child process


def test_the_child_process_entry_point_trains_those_settings_and_writes_the_run(tiny_run, tmp_path, monkeypatch):
    """``python -m derivations.reference.train SETTINGS PATH`` runs ``_main``; here it runs in this process."""
    import json

    asked = []
    monkeypatch.setattr(training, "train", lambda settings: asked.append(settings) or tiny_run)
    path = tmp_path / "run.npz"
    assert training._main([json.dumps(TINY.as_dict()), str(path)]) == 0
    assert asked == [TINY]
    assert_same_run(TrainingRun.load(path), tiny_run)


def test_the_child_process_gets_one_blas_thread_and_its_failure_is_reported(tmp_path, monkeypatch):
    seen = {}
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, "2")  # what the caller has must not reach the child

    def fake_run(command, **kwargs):
        seen.update(command=command, **kwargs)
        return subprocess.CompletedProcess(command, 0, stdout="", stderr="")  # exit 0 but no file written

    monkeypatch.setattr(training.subprocess, "run", fake_run)
    with pytest.raises(RuntimeError, match="training failed"):
        training.train_to_file(TINY, tmp_path / "never.npz")
    assert seen["command"][:3] == [sys.executable, "-m", "derivations.reference.train"]
    assert {k: seen["env"][k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")} == \
        {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert seen["env"]["PATH"] == __import__("os").environ["PATH"]  # the rest of the environment is kept


def test_a_failing_child_reports_its_exit_code_and_error_output(tmp_path, monkeypatch):
    """A stand-in interpreter that fails at once (sh cannot open the module as a script): code and stderr are shown."""
    sh = subprocess.run(["/bin/sh", "-m", "derivations.reference.train"], capture_output=True, text=True)
    monkeypatch.setattr(training.sys, "executable", "/bin/sh")
    with pytest.raises(RuntimeError) as info:
        training.train_to_file(TINY, tmp_path / "run.npz")
    assert str(info.value) == f"training failed (exit code {sh.returncode}):\n\n{sh.stderr}"
    assert "cannot open derivations.reference.train" in sh.stderr


def test_the_cache_folder_is_created_with_its_parents(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setattr(training, "train_to_file", lambda settings, path: tiny_run.save(path))
    run = load_or_train(TINY, cache_dir=tmp_path / "new" / "deeper")
    assert cache_path(TINY, tmp_path / "new" / "deeper").exists()
    assert_same_run(run, tiny_run)


def test_a_stored_run_with_pickled_objects_is_refused(tiny_run, tmp_path):
    """Runs are stored without pickles and loaded with allow_pickle=False: a file with one is not executed."""
    path = tmp_path / "run.npz"
    tiny_run.save(path)
    with np.load(path) as data:
        arrays = dict(data)
    arrays["losses"] = np.array([object()], dtype=object)
    with open(path, "wb") as out:
        np.savez(out, **arrays)
    with pytest.raises(ValueError, match="allow_pickle=False"):
        TrainingRun.load(path)


def test_the_settings_reach_the_timing_and_an_empty_probe_list_stays_integer(monkeypatch):
    asked = []
    monkeypatch.setattr(training, "time_forward_backward",
                        lambda params, tokens, targets, config, repeats: asked.append(repeats) or (1.5, 2.5))
    run = train(dataclasses.replace(TINY, steps=2, probe_steps=(), eval_every=1, timing_repeats=7))
    assert asked == [7] and (run.forward_seconds, run.backward_seconds) == (1.5, 2.5)
    assert run.probe_steps.dtype == np.int64 and run.probe_steps.size == 0
    assert run.eval_steps.dtype == np.int64 and run.eval_steps.tolist() == [0, 1, 2]
