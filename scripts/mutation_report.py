"""Score of the last mutmut run (``scripts/mutation``), with the equivalent mutants taken out.

Reads mutmut's result files in ``mutants/`` and the list of equivalent mutants in
``tests/mutation-equivalents.md`` (a table: mutant name, the changed line, why no test can notice
it). An entry whose mutant no longer exists, was killed, or now changes another line is stale:
it is reported and not counted, so the list cannot silently excuse a new survivor.

score = killed / (all mutants - equivalent ones); a timeout counts as killed (the tests noticed).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS = ROOT / "tests" / "mutation-equivalents.md"
TARGET = 0.95
KILLED = {1, 3, 36, -24, 24, 152, 255, 37}  # mutmut's exit codes for killed, timeout, caught by type check
ROW = re.compile(r"^\|\s*`(?P<name>[^`]+)`\s*\|\s*`(?P<change>[^`]*)`\s*\|\s*(?P<why>.*\S)\s*\|\s*$")


def results() -> dict[str, tuple[int | None, str]]:
    """``{mutant: (exit code, source path)}`` from mutmut's ``.meta`` files."""
    found = {}
    for meta in sorted((ROOT / "mutants").rglob("*.py.meta")):
        source = meta.relative_to(ROOT / "mutants").as_posix()[: -len(".meta")]
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            found[name] = (code, source)
    return found


def equivalents() -> dict[str, tuple[str, str]]:
    """``{mutant: (changed line, reason)}`` from the table in tests/mutation-equivalents.md."""
    rows = {}
    for line in EQUIVALENTS.read_text().splitlines():
        match = ROW.match(line)
        if match:
            rows[match["name"]] = (match["change"].replace("\\|", "|"), match["why"])
    return rows


def changed_line(name: str, source: str) -> str:
    """The first added line of the mutant's diff, stripped (what the table records)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    diff = get_diff_for_mutant(name, path=source)
    added = [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    return added[0] if added else ""


def main() -> int:
    import os

    os.chdir(ROOT)  # mutmut reads its configuration from the working directory
    found = results()
    if not found:
        print("no mutation results: run scripts/mutation first")
        return 1
    listed = equivalents()
    killed = [n for n, (code, _) in found.items() if code in KILLED]
    not_killed = {n: src for n, (code, src) in found.items() if code not in KILLED}
    unchecked = [n for n, (code, _) in found.items() if code is None]
    equivalent, stale = [], []
    for name, (change, _) in listed.items():
        if name not in not_killed:
            stale.append(f"{name}: {'killed now' if name in found else 'no such mutant'}")
            continue
        actual = changed_line(name, not_killed[name])
        if actual != change:
            stale.append(f"{name}: changes `{actual}`, the list says `{change}`")
            continue
        equivalent.append(name)
    survivors = [n for n in not_killed if n not in equivalent]
    counted = len(found) - len(equivalent)
    score = len(killed) / counted if counted else 1.0
    print(f"mutants: {len(found)}  killed: {len(killed)}  equivalent: {len(equivalent)}  "
          f"not killed: {len(survivors)}  (not run: {len(unchecked)})")
    print(f"score: {len(killed)} / {counted} = {100 * score:.1f} %  (target {100 * TARGET:.0f} %)")
    for name in survivors:
        print(f"\nnot killed: {name}\n{changed_line(name, not_killed[name])}")
    for entry in stale:
        print(f"stale entry in {EQUIVALENTS.relative_to(ROOT)}: {entry}")
    return 0 if score >= TARGET and not stale and not unchecked else 1


if __name__ == "__main__":
    sys.exit(main())
