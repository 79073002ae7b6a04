"""Decide every claim and report one row per claim.

``python -m derivations verify [ID ...]`` prints the table and ends with
``N claims verified, M failed``; the exit code is 1 if any claim failed.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import sympy as sp

from . import CLAIMS, get_claim
from .registry import Claim, grid_points, is_zero


@dataclass(frozen=True)
class Result:
    id: str
    ok: bool
    cases: int
    seconds: float
    detail: str  # the first differing case when not ok


def verify_claim(claim: Claim, part: tuple[int, int] | None = None) -> Result:
    """Check every case of ``claim``; stop at the first case that does not reduce to 0.

    ``part=(i, n)`` checks only every n-th grid point starting at the i-th, so one
    claim's grid can be shared between processes (see :func:`verify_all`).
    """
    start = time.perf_counter()
    count = 0
    points = None
    if part is not None and getattr(claim.check, "grid", None):
        points = grid_points(claim.check.grid)[part[0] :: part[1]]
    for where, actual, claimed in claim.check.cases(points):
        count += 1
        if isinstance(actual, sp.MatrixBase):
            ok = all(is_zero(entry) for entry in actual - claimed)
        elif isinstance(actual, tuple) or isinstance(claimed, tuple):
            ok = actual == claimed
        else:
            ok = is_zero(actual - claimed)
        if not ok:
            detail = f"differs at {where}: actual {_short(actual)} vs claimed {_short(claimed)}"
            return Result(claim.id, False, count, time.perf_counter() - start, detail)
    return Result(claim.id, True, count, time.perf_counter() - start, "")


def _verify_part(task: tuple[str, int, int]) -> Result:
    claim_id, index, parts = task
    return verify_claim(get_claim(claim_id), (index, parts))


def verify_all(ids: list[str] | None = None, workers: int = 2) -> list[Result]:
    """Verify the claims (all by default), in parallel, and report them in registry order.

    A claim with a grid is split into several parts so that the slowest claim does not
    hold up the others; its result adds up its parts' cases and CPU seconds and keeps
    the first failure.
    """
    ids = ids or [c.id for c in CLAIMS]
    for claim_id in ids:
        get_claim(claim_id)  # unknown ids fail before any work starts
    if workers <= 1:
        return [verify_claim(get_claim(i)) for i in ids]
    tasks = []
    for claim_id in ids:
        grid = getattr(get_claim(claim_id).check, "grid", None)
        parts = min(4 * workers, len(grid_points(grid))) if grid else 1
        tasks.extend((claim_id, index, parts) for index in range(parts))
    tasks.sort(key=lambda task: _cost(task[0]) / task[2], reverse=True)  # biggest pieces first
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {task: pool.submit(_verify_part, task) for task in tasks}
        by_claim: dict[str, list[Result]] = {}
        for task in sorted(tasks, key=lambda t: t[1]):
            by_claim.setdefault(task[0], []).append(futures[task].result())
    return [_merge(claim_id, by_claim[claim_id]) for claim_id in ids]


def _merge(claim_id: str, parts: list[Result]) -> Result:
    failed = next((r for r in parts if not r.ok), None)
    return Result(
        claim_id,
        failed is None,
        sum(r.cases for r in parts),
        sum(r.seconds for r in parts),
        failed.detail if failed else "",
    )


def _cost(claim_id: str) -> int:
    """A rough work estimate: the summed product of the sizes over the claim's grid."""
    grid = getattr(get_claim(claim_id).check, "grid", None)
    return sum(math.prod(point.values()) for point in grid_points(grid)) if grid else 1


def _short(value, limit: int = 120) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_table(results: list[Result]) -> str:
    rows = [("claim", "statement", "sizes", "result", "time")]
    for r in results:
        claim = get_claim(r.id)
        rows.append(
            (r.id, claim.title, claim.sizes, "verified" if r.ok else "FAILED " + r.detail, f"{r.seconds:.2f}s")
        )
    widths = [max(len(row[c]) for row in rows) for c in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows]
    failed = sum(not r.ok for r in results)
    lines.append(f"{len(results) - failed} claims verified, {failed} failed")
    return "\n".join(lines)
