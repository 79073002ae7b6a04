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
    probe_steps=(0, 30, 60), timing_repeats=2,
)
TIMINGS = {"forward_seconds", "backward_seconds", "train_seconds"}


@pytest.fixture(scope="module")
def tiny_run() -> TrainingRun:
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


def test_training_is_reproducible(tiny_run):
    assert_same_run(tiny_run, train(TINY))


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
