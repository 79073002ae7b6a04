"""Decide every claim and derivation, and report one row each.

``python -m derivations verify [ID ...]`` prints the table and ends with
``N verified, M failed``; the exit code is 1 if anything failed.
"""

from __future__ import annotations

import itertools
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixExpr

from . import CLAIMS, DERIVATIONS, get_item
from .proof import Case, cases, is_zero
from .registry import Claim, Derivation
from .screen import counterexample, screen_sizes


@dataclass(frozen=True)
class Result:
    id: str
    ok: bool
    cases: int
    seconds: float
    detail: str  # the first differing case when not ok


def item_cases(item: Claim | Derivation, points: list[dict] | None = None) -> Iterator[Case]:
    """The cases of a claim, or of every ``=`` of a derivation (named by step)."""
    if isinstance(item, Claim):
        yield from cases(item.lhs, item.rhs, item.op, item.where, item.when, points)
        return
    for position in range(1, len(item.steps)):
        for case in cases(item.steps[position - 1], item.steps[position], item.op, item.where, None, points):
            yield case._replace(where=f"step {position}: {case.where}".strip())


def verify_claim(item: Claim | Derivation, part: tuple[int, int] | None = None, screen: bool = True) -> Result:
    """Check every case of ``item``; stop at the first that does not reduce to 0.

    ``part=(i, n)`` checks only every n-th grid point starting at the i-th, so that one
    item's grid can be shared between processes (see :func:`verify_all`). A claim whose
    formula cannot even be evaluated (a transpose that breaks the shapes) fails too.

    With ``screen``, before any symbolic work, the cases are evaluated at random numbers
    (:mod:`.screen`): a wrong formula is rejected there with its counterexample, in milliseconds
    (what the tests' many wrong variants need). Only the proof accepts: every case must still
    reduce to exactly 0. :func:`verify_all`, whose items are expected to hold, proves first and
    screens only an item that failed, for a counterexample in numbers.
    """
    start = time.perf_counter()
    points = None
    if part is not None and item.op.grid:
        points = item.op.points()[part[0]::part[1]]
    count = 0
    try:
        _check_shapes(item)
        found = _screen(item) if screen and (part is None or part[0] == 0) else None
        if found is not None:
            return Result(item.id, False, 0, time.perf_counter() - start, found)
        for case in item_cases(item, points):
            count += 1
            if not is_zero(case.actual - case.claimed, case.ranges):
                detail = f"differs at {case.where}: actual {_short(case.actual)} vs claimed {_short(case.claimed)}"
                return Result(item.id, False, count, time.perf_counter() - start, detail)
    except Exception as error:  # noqa: BLE001 - any error means "not proven", reported with the claim
        return Result(item.id, False, count, time.perf_counter() - start, f"cannot be checked: {type(error).__name__}: {error}")
    return Result(item.id, True, count, time.perf_counter() - start, "")


def _check_shapes(item: Claim | Derivation) -> None:
    """Raise at once when the two sides of a claim's part do not even have the same shape (the
    cases would raise the same error, but only on reaching that part)."""
    if not isinstance(item, Claim):
        return
    pairs = zip(item.lhs.args, item.rhs.args) if isinstance(item.lhs, sp.Tuple) and isinstance(item.rhs, sp.Tuple) \
        else [(item.lhs, item.rhs)]
    for left, right in pairs:
        if isinstance(left, MatrixExpr) and isinstance(right, MatrixExpr) and left.shape != right.shape:
            raise ValueError(f"shapes differ: {left.shape} and {right.shape}")


SAMPLE = 3  # components screened per part of a claim or step of a derivation


def _screen(item: Claim | Derivation) -> str | None:
    """The numeric screen's counterexample (see :mod:`.screen`), or None.

    It looks at the op's largest grid size, or at small concrete sizes for an item at symbolic
    sizes (an identity for all sizes must hold there too), and at a few components of every
    part or step, taken in turn: a wrong formula shows at once, and a true one costs little
    before its proof. Whatever the screen cannot write out or evaluate is left to the proof.
    """
    try:
        point = item.op.points()[-1] if item.op.grid else screen_sizes(item)
        points = [point] if point else None
        if isinstance(item, Derivation):
            pairs = [(f"step {p}: ", item.steps[p - 1], item.steps[p], None) for p in range(1, len(item.steps))]
        elif isinstance(item.lhs, sp.Tuple) and isinstance(item.rhs, sp.Tuple) and len(item.lhs) == len(item.rhs):
            pairs = [(f"part {p}: ", l, r, item.when) for p, (l, r) in enumerate(zip(item.lhs.args, item.rhs.args))]
        else:
            pairs = [("", item.lhs, item.rhs, item.when)]
        streams = [(label, itertools.islice(cases(l, r, item.op, item.where, when, points), SAMPLE))
                   for label, l, r, when in pairs]
        return counterexample(_in_turn(streams), item.id)
    except Exception:  # noqa: BLE001 - a formula the screen cannot write out is left to the proof
        return None


def _in_turn(streams):
    """One case from each stream in turn, each relabelled with its part or step, until all run out."""
    while streams:
        remaining = []
        for label, stream in streams:
            case = next(stream, None)
            if case is not None:
                yield case._replace(where=f"{label}{case.where}")
                remaining.append((label, stream))
        streams = remaining


def _verify_part(task: tuple[str, int, int]) -> Result:
    item_id, index, parts = task
    return _proven_then_screened(get_item(item_id), (index, parts))


def _proven_then_screened(item: Claim | Derivation, part: tuple[int, int] | None = None) -> Result:
    """The proof without the screen up front (true items pay nothing for it); a failure gets the
    screen's counterexample in numbers when it finds one, else keeps the proof's own detail."""
    result = verify_claim(item, part, screen=False)
    if result.ok or result.detail.startswith("cannot be checked"):
        return result
    found = _screen(item)
    return result if found is None else Result(result.id, False, result.cases, result.seconds, found)


def verify_all(ids: list[str] | None = None, workers: int = 2) -> list[Result]:
    """Verify the claims and derivations (all by default), in parallel, in registry order.

    An item with a grid is split into parts, one per group of grid points, so that the
    slowest does not hold up the others; its result adds up its parts' cases and seconds
    and keeps the first failure. A claim that a derivation concludes (its first and last
    steps are the claim's two sides) is proven by that derivation's chain of equalities.
    """
    ids = ids or [item.id for item in [*CLAIMS, *DERIVATIONS]]
    items = [get_item(i) for i in ids]  # unknown ids fail before any work starts
    concluded = {d.concludes: d.id for d in DERIVATIONS if d.concludes is not None and d.id in ids}
    if workers <= 1:
        results = {item.id: _proven_then_screened(item) for item in items if item.id not in concluded}
    else:
        tasks = []
        for item in items:
            if item.id in concluded:
                continue
            parts = min(workers, len(item.op.points())) if item.op.grid else 1
            tasks.extend((item.id, index, parts) for index in range(parts))
        tasks.sort(key=lambda task: -_cost(get_item(task[0])) / task[2])  # the big pieces first
        by_item: dict[str, list[Result]] = {}
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for task, result in zip(tasks, pool.map(_verify_part, tasks)):
                by_item.setdefault(task[0], []).append(result)
        results = {item_id: _merge(item_id, parts) for item_id, parts in by_item.items()}
    for claim_id, derivation_id in concluded.items():
        by_chain = results[derivation_id]
        results[claim_id] = Result(claim_id, by_chain.ok, 0, 0.0,
                                   by_chain.detail or f"proven by the derivation {derivation_id}")
    return [results[item_id] for item_id in ids]


def _cost(item) -> int:
    """A rough work estimate, to start the slow items first: sizes times steps times formula length."""
    steps = item.steps if isinstance(item, Derivation) else (item.lhs, item.rhs)
    return len(item.op.points()) * len(steps) * sum(len(str(step)) for step in steps)


def _merge(item_id: str, parts: list[Result]) -> Result:
    failed = next((r for r in parts if not r.ok), None)
    return Result(item_id, failed is None, sum(r.cases for r in parts), sum(r.seconds for r in parts),
                  failed.detail if failed else "")


def _short(value, limit: int = 160) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_table(results: list[Result]) -> str:
    rows = [("id", "proven", "result", "time")]
    for r in results:
        item = get_item(r.id)
        status = ("verified" + (f" ({r.detail})" if r.detail else "")) if r.ok else "FAILED " + r.detail
        rows.append((r.id, item.sizes, status, f"{r.seconds:.2f}s"))
    widths = [max(len(row[c]) for row in rows) for c in range(2)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:2], widths)) + "  " + row[2] + "  " + row[3] for row in rows]
    failed = sum(not r.ok for r in results)
    lines.append(f"{len(results) - failed} verified, {failed} failed")
    return "\n".join(lines)


def default_workers() -> int:
    return min(2, os.cpu_count() or 1)
