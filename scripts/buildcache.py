"""A content-addressed cache for expensive build products (figures, claim verification).

The key of a product is a hash of everything it can depend on: the source of
the ``derivations`` package, the versions of the libraries that compute it and
the product's name. Deleting ``.cache/`` gives a cold build.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "build"
LIBRARIES = ("numpy", "sympy", "matplotlib")


@functools.cache
def _library_versions() -> bytes:
    """The libraries' versions: they cannot change while this process runs, and asking
    ``importlib.metadata`` costs milliseconds a call (a warm build asked hundreds of times)."""
    return "".join(f"{library}=={importlib.metadata.version(library)}" for library in LIBRARIES).encode()


_HASHES: dict[tuple, str] = {}


def source_hash(*folders: str) -> str:
    """Hash of every ``.py`` file under ``folders`` (relative to the repo) and the library versions.

    Remembered while no file's size or modification time changes (an edit under ``mkdocs serve``
    does change it), so the many callers of one build read and hash the sources once.
    """
    paths = [path for folder in folders for path in sorted((ROOT / folder).rglob("*.py"))]
    stats = [path.stat() for path in paths]
    signature = (folders, tuple((str(p), st.st_mtime_ns, st.st_size) for p, st in zip(paths, stats)))
    if signature not in _HASHES:
        digest = hashlib.sha256()
        for path in paths:
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
        digest.update(_library_versions())
        _HASHES[signature] = digest.hexdigest()[:20]
    return _HASHES[signature]


def path_for(kind: str, key: str, suffix: str) -> Path:
    folder = CACHE / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{key}{suffix}"


def store_for(kind: str, name: str, code: Path, versions: str) -> Path:
    """The JSON store ``.cache/build/<kind>/<name>-<key>.json`` of results that ``code`` (a file)
    computes with libraries at ``versions``: an edit to the file or another version gives a new key,
    so a store never serves what other code computed."""
    key = hashlib.sha256(code.read_bytes() + versions.encode()).hexdigest()[:16]
    return path_for(kind, f"{name}-{key}", ".json")


def read_json_store(path: Path | None) -> dict:
    """The dict a :func:`write_json_store` left at ``path``; empty when there is none, or when the file
    is torn or not ours (a store only saves work: starting afresh is always right)."""
    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def write_json_store(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` as JSON through a file of this process renamed over it, so that a
    build or test worker reading it at the same time sees the old store or the new, never half."""
    partial = path.with_suffix(f".{os.getpid()}.partial")
    partial.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")  # key order kept: it is the output's
    partial.replace(path)
