"""Executed notebooks, identical bytes on every run: the build and the tests use the same copy.

A Jupyter kernel may deliver one ``print`` as several stream messages when the
machine is busy, and nbclient stamps every cell with the time it ran. Left as
they are, both make two executions of the same notebook render differently. So
a notebook is executed here, without timing metadata, and its consecutive
stream outputs are merged with nbconvert's ``CoalesceStreamsPreprocessor``
before anything renders it.

The executed copy is cached under a hash of the notebook's bytes and of the
``derivations`` source it imports; the build hands that copy to mkdocs-jupyter
(with its own execution off), so the page never depends on message timing.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

import buildcache

CELL_TIMEOUT = 120  # seconds per cell: every cell of the walkthrough computes in well under one


class NotebookError(RuntimeError):
    """A cell raised: the message names the notebook, the cell and the error."""


def normalise(nb):
    """Merge consecutive stream outputs of each cell (in place) and return the notebook."""
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    nb, _ = CoalesceStreamsPreprocessor().preprocess(nb, {})
    return nb


def execute(nb, folder: Path):
    """Run every cell of ``nb`` in a fresh kernel started in ``folder``; return it normalised.

    Raises :class:`NotebookError` naming the first cell that fails.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    client = NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT, record_timing=False,
                            resources={"metadata": {"path": str(folder)}})
    # The kernel imports this checkout's package, the one the cache keys hash: an editable install
    # of another checkout sharing the venv must not answer for it.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(buildcache.ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        client.execute(env=env)
    except CellExecutionError as error:
        index = next((i for i, cell in enumerate(nb.cells) if _failed(cell)), None)
        first = nb.cells[index].source.strip().splitlines()[0] if index is not None else "?"
        raise NotebookError(f"cell {index} ({first!r}) raised {error.ename}: {error.evalue}") from None
    return normalise(nb)


def _failed(cell) -> bool:
    return cell.cell_type == "code" and any(out.get("output_type") == "error" for out in cell.get("outputs", []))


def cache_key(source: Path) -> str:
    digest = hashlib.sha256(source.read_bytes())
    digest.update(buildcache.source_hash("derivations").encode())
    return digest.hexdigest()[:20]


def executed_copy(source: Path) -> Path:
    """The executed, normalised copy of the notebook ``source``; executed now if not cached.

    Concurrent builds and test workers take a lock, so a notebook runs once per version.
    """
    import nbformat

    folder = buildcache.CACHE / "notebooks" / f"{source.stem}-{cache_key(source)}"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name  # the name readers download it under
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            nb = execute(nbformat.read(source, as_version=4), source.parent)
            partial = target.with_suffix(".partial")
            nbformat.write(nb, partial)
            partial.replace(target)
    return target
