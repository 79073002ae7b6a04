"""What the pages need of the claims registry, without importing SymPy on every build.

Importing ``derivations.symbolic`` and printing every claim's LaTeX takes seconds. The site
needs only the printed results (id, title, LaTeX, what was proven, the implementation), and
they change only with ``derivations/symbolic``. So they are stored once per version of that
source (the same hash as the proof record, ``claimsrecord``) and every build, serve rebuild and
test reads the stored copy. The LaTeX is still printed from the proven expression: the snapshot
is made by printing it, and a change to any claim gives a new hash and a new snapshot.
"""

from __future__ import annotations

import fcntl
import json
from types import SimpleNamespace

import buildcache

FIELDS = ("id", "title", "latex", "sizes", "kind")


def _path():
    return buildcache.path_for("claims", buildcache.source_hash("derivations/symbolic") + "-snapshot", ".json")


def _take() -> dict:
    import derivations.symbolic as registry

    def item(x, **extra):
        return {**{name: getattr(x, name) for name in FIELDS}, **extra}

    return {
        "kinds": dict(registry.KINDS),
        "claims": [item(c, impl=c.impl, no_impl=c.no_impl, is_derivation=False) for c in registry.CLAIMS],
        "derivations": [item(d, concludes=d.concludes, is_derivation=True) for d in registry.DERIVATIONS],
    }


class Snapshot:
    """The registry as pages see it: ``CLAIMS``, ``DERIVATIONS``, ``KINDS``, ``get_claim``, ``get_derivation``."""

    def __init__(self, data: dict) -> None:
        self.KINDS = data["kinds"]
        self.CLAIMS = [SimpleNamespace(**c) for c in data["claims"]]
        self.DERIVATIONS = [SimpleNamespace(**d) for d in data["derivations"]]
        self._claims = {c.id: c for c in self.CLAIMS}
        self._derivations = {d.id: d for d in self.DERIVATIONS}

    def get_claim(self, claim_id: str):
        if claim_id not in self._claims:
            raise KeyError(f"unknown claim id {claim_id!r}; known: {', '.join(self._claims)}")
        return self._claims[claim_id]

    def get_derivation(self, derivation_id: str):
        if derivation_id not in self._derivations:
            raise KeyError(f"unknown derivation id {derivation_id!r}; known: {', '.join(self._derivations)}")
        return self._derivations[derivation_id]


_LOADED: dict[str, Snapshot] = {}


def snapshot() -> Snapshot:
    """The snapshot of the registry as it is now: read from the cache, or taken and stored."""
    target = _path()
    if target.name not in _LOADED:
        with open(target.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not target.exists():
                partial = target.with_suffix(".partial")
                partial.write_text(json.dumps(_take(), indent=1), encoding="utf-8")
                partial.replace(target)
        _LOADED[target.name] = Snapshot(json.loads(target.read_text(encoding="utf-8")))
    return _LOADED[target.name]
