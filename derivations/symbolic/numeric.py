"""A claim's formula evaluated on numbers, to tie it to the code that implements it.

:func:`evaluate` gives the claimed right-hand side the same meaning the proof gives it (the
op's definitions, the claim's ``where``), writes it out at the sizes of the numbers given,
and evaluates it in high precision. Values the formula needs but the caller did not give
come from ``resolve`` (for a gradient computed by an earlier step of a backward pass, the
caller evaluates that step's claim: this is how a chain of claims is compared with a
whole backward function).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixElement, MatrixExpr

from .proof import Meaning, _at, _defer_derivatives, _index_ranges
from .registry import Claim

PRECISION = 30  # digits: far beyond float64, so the comparison measures only the code's rounding


def evaluate(claim: Claim, point: dict, values: dict, resolve: Callable[[str], np.ndarray] | None = None,
             part: int | None = None) -> np.ndarray:
    """The claimed value of ``claim.lhs`` (part ``part`` of a tuple) at sizes ``point``.

    ``values`` maps names to numbers: a matrix's name to a 2-D array, an indexed base
    (``tokens``) to a 1-D integer array, a scalar symbol's name to a number. For a scalar
    identity in real variables, give each variable an array: the result has its shape.
    """
    lhs, rhs = claim.lhs, claim.rhs
    if isinstance(lhs, sp.Tuple):
        lhs, rhs = lhs.args[part], rhs.args[part]
    lhs, rhs = _at(lhs, point), _defer_derivatives(_at(sp.sympify(rhs), point))
    values = dict(values)

    def substitute(expr) -> float:
        for _ in range(10):  # resolving one name can reveal none or several others
            missing = {e.parent.name for e in expr.atoms(MatrixElement) if e.parent.name not in values}
            if not missing:
                break
            if resolve is None:
                raise KeyError(f"claim {claim.id}: no value for {sorted(missing)}")
            for name in missing:
                values[name] = np.atleast_2d(np.asarray(resolve(name), dtype=np.float64))
        expr = expr.xreplace({e: sp.Integer(int(values[e.base.name][int(e.indices[0])])) for e in expr.atoms(sp.Indexed)})
        replacements = {e: sp.Float(values[e.parent.name][int(e.i), int(e.j)], PRECISION)
                        for e in expr.atoms(MatrixElement)}
        replacements.update({s: _scalar(values[s.name]) for s in expr.free_symbols
                             if isinstance(s, sp.Symbol) and s.name in values})
        result = sp.N(expr.xreplace(replacements), PRECISION)
        try:
            return float(result)
        except TypeError:
            raise ValueError(f"claim {claim.id}: {rhs} did not evaluate to a number: {result}") from None

    meaning = _NumericMeaning(claim.op, point, claim.where, substitute)

    def number(expr) -> float:
        return substitute(meaning(expr))

    if isinstance(lhs, MatrixExpr):  # a matrix formula: every entry
        rows, cols = (int(d) for d in lhs.shape)
        return np.array([[number(rhs[r, c]) for c in range(cols)] for r in range(rows)])
    if isinstance(lhs, MatrixElement):  # an index formula for one component: every value of its free indices
        X = lhs.parent
        out = np.empty((int(X.shape[0]), int(X.shape[1])))
        free = [index for index in (lhs.i, lhs.j) if isinstance(index, sp.Symbol)]
        for r in range(out.shape[0]):
            for c in range(out.shape[1]):
                assignment = {index: value for index, value in zip((lhs.i, lhs.j), (r, c)) if index in free}
                fixed = all(value == (r, c)[k] for k, value in enumerate((lhs.i, lhs.j)) if value not in free)
                out[r, c] = number(rhs.xreplace(assignment)) if fixed else np.nan
        return out[~np.isnan(out).all(axis=1)] if np.isnan(out).any() else out
    # a scalar identity: every value of its variables
    variables = [x for x in claim.op.variables if x.name in values]
    grids = np.broadcast_arrays(*[np.asarray(values[x.name], dtype=np.float64) for x in variables])
    flat = [g.ravel() for g in grids]
    results = []
    for position in range(flat[0].size if flat else 1):
        values.update({x.name: g[position] for x, g in zip(variables, flat)})
        results.append(number(rhs))
    return np.array(results).reshape(grids[0].shape if grids else ())


class _NumericMeaning(Meaning):
    """The proof's meaning, except that a defined quantity's component becomes its number at once
    (computed once): a formula that uses ``dS`` everywhere does not expand ``dS`` everywhere."""

    def __init__(self, op, point, where, substitute):
        super().__init__(op, point, where)
        self._substitute, self._numbers = substitute, {}

    def element(self, e):
        if e.parent in self.defs and e.i.is_Integer and e.j.is_Integer:
            key = (e.parent, int(e.i), int(e.j))
            if key not in self._numbers:
                self._numbers[key] = sp.Float(self._substitute(super().element(e)), PRECISION)
            return self._numbers[key]
        return super().element(e)


def _scalar(value):
    value = np.asarray(value)
    if value.dtype.kind in "iu":
        return sp.Integer(int(value))
    return sp.Float(float(value), PRECISION)


__all__ = ["PRECISION", "evaluate", "_index_ranges"]
