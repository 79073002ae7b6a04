"""A numeric search for a counterexample, run before any symbolic work: it can only reject.

A wrong formula is usually wrong everywhere, and evaluating ``actual - claimed`` at random
numbers says so in milliseconds, where reducing it to a canonical form takes seconds. So the
verifier first evaluates every case of an item at random values of its inputs; a difference
far beyond rounding is a counterexample, and the item is rejected with it. Nothing here ever
accepts: an item that passes the screen is still decided by the proof (``proof.is_zero``).

A case the screen cannot evaluate to a real number (a symbol of unknown integer value, an
unevaluated derivative, an expectation, a complex value) is left to the proof. An item at
symbolic sizes is screened at small concrete sizes: an identity that holds for all sizes holds
there, so a difference there disproves it.
"""

from __future__ import annotations

import random
from typing import Iterable

import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixElement

from .notation import SIZE_WORDS

DIGITS = 50  # working precision of the evaluation
TOLERANCE = 1e-20  # relative to the size of the two sides: a true identity leaves ~1e-45
SIZES = (2, 3)  # the concrete sizes an item at symbolic sizes is screened at, alternately by name


def screen_sizes(item) -> dict:
    """Small concrete values for the size symbols an item at symbolic sizes uses (``{}`` if none)."""
    exprs = [*(item.steps if hasattr(item, "steps") else (item.lhs, item.rhs)), *(d for p in item.where for d in p)]
    exprs += [d for p in item.op.defs for d in p]
    found: set = set()
    for expr in exprs:
        if not isinstance(expr, sp.Basic):
            continue
        found |= expr.free_symbols
        for symbol in expr.atoms(sp.MatrixSymbol):
            for extent in symbol.shape:
                found |= getattr(extent, "free_symbols", set())
    sizes = sorted((s for s in found if s in SIZE_WORDS), key=str)
    return {s: SIZES[position % len(SIZES)] for position, s in enumerate(sizes)}


def counterexample(cases: Iterable, seed: str) -> str | None:
    """The first case whose two sides differ at random values, as a report; None if none is found."""
    values: dict = {}
    rng = random.Random(seed)
    for case in cases:
        found = _difference(case.actual, case.claimed, values, rng)
        if found is not None:
            actual, claimed = found
            return (f"differs at {case.where}: actual {actual:.6g} vs claimed {claimed:.6g} "
                    f"at random values of the inputs (numeric screen, before any proof)")
    return None


def _difference(actual, claimed, values: dict, rng: random.Random) -> tuple[float, float] | None:
    """``(actual, claimed)`` as numbers when they clearly differ; None when equal or not evaluable."""
    try:
        actual, claimed = sp.sympify(actual), sp.sympify(claimed)
        inputs = actual.atoms(MatrixElement, sp.Symbol, sp.Indexed) | claimed.atoms(MatrixElement, sp.Symbol, sp.Indexed)
        replacement = {}
        for atom in sorted(inputs, key=sp.default_sort_key):
            value = _random_value(atom, values, rng)
            if value is None:
                return None
            replacement[atom] = value
        a = actual.xreplace(replacement).evalf(DIGITS)
        c = claimed.xreplace(replacement).evalf(DIGITS)
        if not (a.is_Number and c.is_Number) or not (a.is_real and c.is_real):
            return None  # something is left unevaluated, or complex: for the proof to decide
        if a.is_infinite or c.is_infinite or a is sp.nan or c is sp.nan:
            return None
        if abs(a - c) > TOLERANCE * (1 + abs(a) + abs(c)):
            return float(a), float(c)
    except (TypeError, ValueError, ArithmeticError, AttributeError, IndexError):  # not evaluable: leave it to the proof
        return None
    return None


def _random_value(atom, values: dict, rng: random.Random):
    """One input's value, the same wherever it appears; None for an input with no numeric meaning here."""
    if atom in values:
        return values[atom]
    if isinstance(atom, MatrixElement):
        if not (atom.i.is_Integer and atom.j.is_Integer):
            return None  # a symbolic component: not an explicit case
        value = sp.Float(rng.uniform(-1.5, 1.5), DIGITS)
    elif isinstance(atom, sp.Symbol):
        if atom.is_integer or atom.is_finite is False:
            return None  # an index or a size left symbolic: only the proof can speak for every value
        if atom.is_positive or atom.is_nonnegative:
            value = sp.Float(rng.uniform(0.5, 2.0), DIGITS)
        elif atom.is_negative or atom.is_nonpositive:
            value = sp.Float(-rng.uniform(0.5, 2.0), DIGITS)
        else:
            value = sp.Float(rng.uniform(-1.5, 1.5), DIGITS)
    else:
        return None  # an indexed integer (a token, a target): not drawn at random
    values[atom] = value
    return value
