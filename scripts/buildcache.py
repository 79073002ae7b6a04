"""A content-addressed cache for expensive build products (figures, claim verification).

The key of a product is a hash of everything it can depend on: the source of
the ``derivations`` package, the versions of the libraries that compute it and
the product's name. Deleting ``.cache/`` gives a cold build.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "build"
LIBRARIES = ("numpy", "sympy", "matplotlib")


def source_hash(*folders: str) -> str:
    """Hash of every ``.py`` file under ``folders`` (relative to the repo) and the library versions."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    for library in LIBRARIES:
        digest.update(f"{library}=={importlib.metadata.version(library)}".encode())
    return digest.hexdigest()[:20]


def path_for(kind: str, key: str, suffix: str) -> Path:
    folder = CACHE / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{key}{suffix}"
