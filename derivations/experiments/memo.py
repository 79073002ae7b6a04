"""Share an experiment's result between processes: a small on-disk memo.

A build runs the pages and the figures in separate processes, and some of them run
the same experiment (the gradient-flow page and its figure both need
:func:`~.flow.norm_placement_profiles`). :func:`shared` computes such a result once:
the first process to ask computes and stores it, the others wait on a lock file and
read it. A per-process cache sits in front, so a process asks the disk once.

The key hashes exactly what the result can depend on: the source of the modules an
experiment may import (:data:`SOURCES`, folders of the ``derivations`` package), NumPy's
version, the function's name and its arguments. A change to any of them computes
again; a change to a page, a figure or an exercise does not. Arguments are keyed by the
function's signature with its defaults filled in, so ``f()``, ``f(DEFAULT)`` and ``f(x=DEFAULT)``
share one result (a page and a figure need not spell a call the same way); an array argument is
named by its content (:func:`_key`), since its ``repr`` abbreviates. The memo lives in
``.cache/experiments/`` at the repository root, or under ``$DERIVATIONS_CACHE/experiments/``
when that variable is set (as the training cache does, :mod:`derivations.reference.train`).
Deleting the folder only costs the time to compute again.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import inspect
import os
import pickle
import re
from pathlib import Path

import numpy as np

__all__ = ["SOURCES", "shared", "memo_path"]

_PACKAGE = Path(__file__).resolve().parent.parent
_ENV_CACHE = "DERIVATIONS_CACHE"

#: The folders of ``derivations`` whose modules an experiment may import (a test checks that the
#: experiments import nothing else of the package). Their source enters every key.
SOURCES = ("reference", "autodiff", "experiments")


@functools.cache
def _source_hash() -> str:
    digest = hashlib.sha256()
    for folder in SOURCES:
        for path in sorted((_PACKAGE / folder).rglob("*.py")):
            digest.update(str(path.relative_to(_PACKAGE)).encode())
            digest.update(path.read_bytes())
    digest.update(f"numpy=={np.__version__}".encode())
    return digest.hexdigest()


def memo_path(name: str, args: tuple = (), cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the result of ``name(*args)`` is kept: ``<cache>/experiments/<name>-<hash>.pickle``.

    ``args`` are numbers, strings, booleans, None and tuples of them: their ``repr`` names their
    value (an array's would abbreviate a large one, and two arrays could share a key; :func:`shared`
    names an array by its content, :func:`_key`).
    """
    _check_plain(name, args)
    if cache_dir is None:
        cache_dir = os.environ.get(_ENV_CACHE) or _PACKAGE.parent / ".cache"
    key = hashlib.sha256(f"{_source_hash()}\n{name}\n{args!r}".encode()).hexdigest()[:24]
    return Path(cache_dir) / "experiments" / f"{re.sub(r'[^A-Za-z0-9_.]', '_', name)}-{key}.pickle"


def _check_plain(name: str, args: tuple) -> None:
    if not _plain(args):
        raise TypeError(f"{name}: a shared result is keyed by its arguments' repr, so they must be numbers, "
                        f"strings, booleans, None or tuples of them; got {args!r:.200}")


def _plain(value) -> bool:
    if isinstance(value, tuple):
        return all(_plain(v) for v in value)
    return value is None or type(value) in (bool, int, float, str)


def _key(name: str, value):
    """``value`` as a plain value (:func:`_plain`) that names it exactly, or a ``TypeError``.

    Numbers, strings, booleans and None name themselves; a tuple or a list is named by its items
    (a list marked as one); an array of numbers by its dtype, its shape and a SHA-256 of its bytes,
    since its ``repr`` abbreviates; a NumPy scalar by its dtype and value. Anything else has no
    such name and is refused.
    """
    if _plain(value):
        return value
    if isinstance(value, (tuple, list)):
        items = tuple(_key(name, v) for v in value)
        return items if isinstance(value, tuple) else ("list", items)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        digest = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
        return ("ndarray", value.dtype.str, value.shape, digest)
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":  # np.float64(0.5): item() is exact
        return ("scalar", value.dtype.str, value.item())
    raise TypeError(f"{name}: a shared result is keyed by its arguments, so they must be numbers, strings, "
                    f"booleans, None, arrays of numbers, or tuples or lists of them; got {value!r:.200}")


def _read_only(result):
    """Make every array of ``result`` (nested in dicts, tuples, lists) read-only: it is shared."""
    if isinstance(result, np.ndarray):
        result.setflags(write=False)
    elif isinstance(result, dict):
        for value in result.values():
            _read_only(value)
    elif isinstance(result, (tuple, list)):
        for value in result:
            _read_only(value)
    return result


def _load_or_compute(path: Path, compute):
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process computing it: wait, then read its result
            if not path.exists():
                partial = path.with_suffix(f".{os.getpid()}.partial")
                try:
                    with open(partial, "wb") as out:
                        pickle.dump(compute(), out, protocol=pickle.HIGHEST_PROTOCOL)
                    partial.replace(path)
                finally:
                    partial.unlink(missing_ok=True)
    with open(path, "rb") as stored:
        return pickle.load(stored)


def shared(function):
    """Decorator: compute ``function(*args, **kwargs)`` once across processes and once per process.

    The key is every parameter's name and value, defaults included (bound by the function's
    signature), so calls that spell the same arguments differently share one result. The values
    must be numbers, strings, booleans, None, arrays of numbers, or tuples or lists of them
    (:func:`_key`), else ``TypeError``.
    The result is read back from the memo even by the process that computed it, so
    every caller gets the same bits (pickle keeps float64 exactly). Every array in it is
    read-only. ``function.__wrapped__`` computes afresh, bypassing both caches.

    Only for a function whose result is all it leaves behind: one that also changes state a
    process reads later (the autodiff engine numbers the nodes it records, and a page prints
    those numbers) would make that process's output depend on which process computed first.
    """

    name = f"{function.__module__}.{function.__qualname__}"
    signature = inspect.signature(function)
    results: dict[tuple, object] = {}

    @functools.wraps(function)
    def memoised(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)  # a TypeError for a call the function itself would refuse
        bound.apply_defaults()
        key = _key(name, tuple(bound.arguments.items()))  # plain and hashable, arrays named by content
        if key not in results:
            path = memo_path(name, key)
            results[key] = _read_only(_load_or_compute(path, lambda: function(*bound.args, **bound.kwargs)))
        return results[key]

    return memoised
