"""Measure the performance budgets (run with the project's venv: .venv/bin/python scripts/benchmark.py).

- cold ``mkdocs build --strict``: every block executed, every figure drawn; only the cached
  training run is kept. Budget 30 s. Reported twice: with the claims proven from scratch, and
  with this version's claim proofs already recorded (they change only with derivations/symbolic).
- rebuild after a one-page edit under ``mkdocs serve``: budget 5 s.
- the full test suite: budget 120 s.

Prints one line per measurement and exits 1 if a budget is exceeded. Timing budgets live here,
not in the tests, because they depend on the machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
BIN = Path(sys.executable).parent


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed


def cold_build(keep_claims: bool) -> float:
    cache = ROOT / ".cache" / "build"
    for kind in ("figures",) if keep_claims else ("figures", "claims"):
        shutil.rmtree(cache / kind, ignore_errors=True)
    shutil.rmtree(ROOT / ".cache" / "mkdocs-jupyter", ignore_errors=True)
    with tempfile.TemporaryDirectory() as site:
        return timed([str(BIN / "mkdocs"), "build", "--strict", "--site-dir", site])


def rebuild_after_edit(page: str = "docs/notation.md") -> float:
    """Start ``mkdocs serve``, edit one page, time until the rebuilt site is served again."""
    path = ROOT / page
    original = path.read_text(encoding="utf-8")
    server = subprocess.Popen(
        [str(BIN / "mkdocs"), "serve", "--dev-addr", "127.0.0.1:8765"],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        for line in server.stdout:
            if "Serving on" in line:
                break
        time.sleep(1.0)
        start = time.perf_counter()
        path.write_text(original + "\n<!-- benchmark edit -->\n", encoding="utf-8")
        for line in server.stdout:
            if "Detected file changes" in line:
                continue
            if "Reloading browsers" in line or "Serving on" in line or "Documentation built in" in line:
                return time.perf_counter() - start
        raise RuntimeError("mkdocs serve stopped before rebuilding")
    finally:
        path.write_text(original, encoding="utf-8")
        server.terminate()
        server.wait(timeout=30)


def main() -> int:
    results = [
        ("cold build, claims proven from scratch", cold_build(keep_claims=False), None),
        ("cold build, claim proofs recorded", cold_build(keep_claims=True), 30.0),
        ("rebuild after a one-page edit (mkdocs serve)", rebuild_after_edit(), 5.0),
        ("full test suite (pytest -n 2)", timed([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup"]), 120.0),
    ]
    failed = False
    for name, seconds, budget in results:
        verdict = "" if budget is None else ("ok" if seconds <= budget else "OVER BUDGET")
        failed |= verdict == "OVER BUDGET"
        limit = f"(budget {budget:.0f} s)" if budget else "(reported)"
        print(f"{name:48} {seconds:6.1f} s  {limit} {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
