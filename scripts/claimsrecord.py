"""One verification record per version of the claims, shared by builds and tests.

Proving every claim takes SymPy a few seconds of CPU, so the result is stored under a
hash of ``derivations/symbolic`` (and the library versions): a record exists only
for source that was fully proven with exactly that code. Concurrent builds and
test workers take a file lock, so the proof runs once and the others wait for it.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys

import buildcache


def record_path():
    return buildcache.path_for("claims", buildcache.source_hash("derivations/symbolic"), ".json")


def ensure_verified(workers: int = 2) -> tuple[dict[str, dict], str]:
    """``({claim id: result}, output)``: read the record, or prove every claim and write it.

    ``output`` is the verifier's table when it ran (empty when the record was read).
    A failing claim is reported in the results and never recorded, so it is proven
    again next time.
    """
    target = record_path()
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return {r["id"]: r for r in json.loads(target.read_text())}, ""
        partial = target.with_suffix(".partial")
        run = subprocess.run(
            [sys.executable, "-m", "derivations", "verify", "--workers", str(workers), "--json", str(partial)],
            cwd=buildcache.ROOT, capture_output=True, text=True,
        )
        if not partial.exists():
            raise RuntimeError(f"claim verification crashed:\n{run.stdout}\n{run.stderr}")
        results = json.loads(partial.read_text())
        if run.returncode == 0 and all(r["ok"] for r in results):
            partial.replace(target)
        else:
            partial.unlink()
        return {r["id"]: r for r in results}, run.stdout
