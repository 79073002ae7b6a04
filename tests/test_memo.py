"""The on-disk memo that lets the page and figure processes share an experiment's result."""

from __future__ import annotations

import ast
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from derivations.experiments import memo

PACKAGE = Path(memo.__file__).resolve().parent.parent


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DERIVATIONS_CACHE", str(tmp_path))
    return tmp_path


def counted(calls: list, delay: float = 0.0):
    """A fresh experiment (as a new process would see it) that records each time it really runs."""

    def experiment(n):
        calls.append(n)
        time.sleep(delay)
        return {"values": np.arange(float(n)), "pair": (np.ones(2), n)}

    return experiment


def test_a_second_process_reads_what_the_first_computed(cache):
    calls = []
    first, second = memo.shared(counted(calls)), memo.shared(counted(calls))
    a, b = first(3), second(3)
    assert calls == [3]
    np.testing.assert_array_equal(a["values"], b["values"])
    assert a["pair"][1] == b["pair"][1] == 3
    assert first(3) is a  # the process's own cache answers without reading the disk again
    assert len(list((cache / "experiments").glob("*.pickle"))) == 1


def test_other_arguments_compute_again_and_wrapped_bypasses_both_caches(cache):
    calls = []
    experiment = memo.shared(counted(calls))
    experiment(2)
    experiment(4)
    experiment.__wrapped__(2)
    assert calls == [2, 4, 2]
    assert memo.memo_path("x", (2,)) != memo.memo_path("x", (4,)) != memo.memo_path("y", (4,))


def test_calls_spelled_differently_share_one_result(cache):
    """A page may write f() where a figure writes f(2, scale=1.0): the key is the arguments with defaults filled in."""
    calls = []

    def experiment(n=2, scale=1.0):
        calls.append((n, scale))
        return np.full(n, scale)

    first, second = memo.shared(experiment), memo.shared(experiment)  # as two processes would see it
    a = first()
    b = second(2, scale=1.0)
    assert calls == [(2, 1.0)]
    np.testing.assert_array_equal(a, b)
    assert second(n=2) is b and second(2, 1.0) is b  # the process's own cache, under one key
    np.testing.assert_array_equal(first(scale=3.0), [3.0, 3.0])  # another value of a defaulted argument: computed
    assert calls == [(2, 1.0), (2, 3.0)]
    assert len(list((cache / "experiments").glob("*.pickle"))) == 2
    with pytest.raises(TypeError):
        first(2, 1.0, 5)  # a call the function itself would refuse


def test_shared_arrays_are_read_only(cache):
    result = memo.shared(counted([]))(3)
    for array in (result["values"], result["pair"][0]):
        with pytest.raises(ValueError):
            array[0] = 1.0


def test_two_concurrent_callers_compute_once(cache):
    calls = []
    callers = [memo.shared(counted(calls, delay=0.3)) for _ in range(2)]
    threads = [threading.Thread(target=caller, args=(5,)) for caller in callers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [5]


def _package_imports(path: Path) -> set[str]:
    """The top-level folders of ``derivations`` that the module at ``path`` imports."""
    folder = path.relative_to(PACKAGE).parts[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").startswith("derivations."):
                found.add(node.module.split(".")[1])
            elif node.level == 1:
                found.add(folder)
            elif node.level == 2 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 2:  # from .. import reference
                found.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("derivations."))
    return found


def test_the_key_covers_every_module_an_experiment_can_import():
    """The memo's key hashes the folders of :data:`memo.SOURCES`: they must import nothing else of the package."""
    outside = {}
    for folder in memo.SOURCES:
        for path in sorted((PACKAGE / folder).rglob("*.py")):
            extra = _package_imports(path) - set(memo.SOURCES)
            if extra:
                outside[str(path.relative_to(PACKAGE))] = sorted(extra)
    assert not outside, f"modules importing outside {memo.SOURCES}: {outside}"


def test_arrays_lists_and_numpy_scalars_are_keyed_by_their_content(cache):
    """A page and a figure pass equal arrays built in two processes: equal content, one result;
    one entry, the dtype or the shape changed, another. A repr would abbreviate the array of 2000."""
    calls = []

    def total(values):
        calls.append(1)
        return float(np.sum(values))

    first, second = memo.shared(total), memo.shared(total)  # as two processes would see it
    values = np.arange(2000.0)
    changed = values.copy()
    changed[1000] += 1.0
    assert first(values) == second(values.copy()) == sum(range(2000)) and len(calls) == 1
    assert first(changed) == sum(range(2000)) + 1 and len(calls) == 2
    assert first(values.astype(np.float32)) == sum(range(2000)) and len(calls) == 3
    assert first(values.reshape(40, 50)) == sum(range(2000)) and len(calls) == 4
    assert first([1, 2]) == second([1, 2]) == 3 and len(calls) == 5
    assert first((1, 2)) == 3 and len(calls) == 6  # a tuple is not the list
    assert first(np.float64(2.5)) == second(np.float64(2.5)) == 2.5 and len(calls) == 7
    assert first(2.5) == 2.5 and len(calls) == 8  # nor is a NumPy scalar the float


def test_arguments_without_a_faithful_key_are_refused(cache):
    experiment = memo.shared(counted([]))
    for value in ({"n": 2}, np.array([object()]), range(3), [1, {2}]):
        with pytest.raises(TypeError, match="keyed by its arguments"):
            experiment(value)
    with pytest.raises(TypeError, match="repr"):
        memo.memo_path("x", (np.arange(3.0),))  # a path's arguments are plain already
