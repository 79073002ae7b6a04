"""The claim type and the three ways a claim can be proven.

A *claim* is one derivative the site states: an id the pages cite, the LaTeX the
page shows, and a *check* that SymPy can decide. Every check yields cases of the
form ``(where, actual, claimed)``; the claim holds when ``actual - claimed``
simplifies to exactly zero in every case. ``where`` names the case (sizes and
entry) so a wrong claim reports which entry differs.

Three checks cover the site:

``IndexIdentity``
    General sizes. Both sides are expressions in ``sympy.Indexed`` objects,
    ``KroneckerDelta`` and symbolic ``Sum`` with symbolic bounds; ``actual`` is
    usually a ``sympy.diff`` of the forward definition.
``VJPIdentity``
    Matrix form. Inputs are matrices of independent symbols; the actual
    vector-Jacobian product is ``d/dX sum(G * f(X))`` computed entry by entry by
    SymPy; the claimed one is the matrix formula. Checked at every size of a grid.
``ExprIdentity``
    Anything else (an expectation, an optimiser identity): cases of two explicit
    expressions, optionally over a grid of sizes.

In every check ``claimed`` is a callable, so a test can wrap it to build a wrong
variant of a claim (scaled, transposed, a term dropped) and require the checker
to reject it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

import sympy as sp

Case = tuple[str, Any, Any]
Grid = Mapping[str, Iterable[int]]


def grid_points(grid: Grid) -> list[dict[str, int]]:
    """Every combination of the sizes in ``grid``, in a stable order."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(tuple(grid[n]) for n in names))]


def describe_grid(grid: Grid) -> str:
    """``"n_q, n_k in {1, 2, 3} (9 size combinations)"``, for the verify table and the pages."""
    parts: dict[tuple[int, ...], list[str]] = {}
    for name, values in grid.items():
        parts.setdefault(tuple(values), []).append(name)
    text = "; ".join(f"{', '.join(names)} in {{{', '.join(map(str, values))}}}" for values, names in parts.items())
    return f"{text} ({len(grid_points(grid))} size combinations)"


def symbol_matrix(name: str, rows: int, cols: int, **assumptions: bool) -> sp.Matrix:
    """A ``rows x cols`` matrix of independent real symbols ``name_{r,c}``."""
    return sp.Matrix(rows, cols, lambda r, c: sp.Symbol(f"{name}_{r}{c}", real=True, **assumptions))


def _label(point: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items())


# ----------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class IndexIdentity:
    """``actual == claimed`` for all values of the free indices, at general sizes.

    ``ranges`` maps every free index symbol to the size symbol it runs below
    (``0 <= i < n``). SymPy evaluates a sum over a Kronecker delta to a
    ``Piecewise`` guarded by "the free index lies in range"; those guards are
    discharged here using ``ranges`` and nothing else.
    """

    actual: Callable[[], sp.Expr]
    claimed: Callable[[], sp.Expr]
    ranges: Mapping[sp.Symbol, sp.Symbol]

    sizes = "general sizes (Indexed, KroneckerDelta, symbolic Sum)"

    def cases(self, points=None) -> Iterator[Case]:
        yield "general", _discharge_ranges(sp.sympify(self.actual()).doit(), self.ranges), self.claimed()


@dataclass(frozen=True)
class VJPIdentity:
    """The claimed vector-Jacobian product of ``forward`` at every grid size.

    ``shapes(**sizes)`` gives ``{input name: (rows, cols)}``. ``forward(**inputs)``
    returns the output matrix. ``claimed(G, **inputs)`` returns
    ``{input name: dL/dinput}`` where ``G = dL/doutput`` is a matrix of free
    symbols. The actual gradient is ``d/dx sum(G * forward)`` for every input entry
    ``x``; inputs missing from the claimed dict are not checked.
    """

    shapes: Callable[..., Mapping[str, tuple[int, int]]]
    forward: Callable[..., sp.Matrix]
    claimed: Callable[..., Mapping[str, sp.Matrix]]
    grid: Grid
    positive: tuple[str, ...] = ()  # inputs whose symbols are declared positive

    @property
    def sizes(self) -> str:
        return describe_grid(self.grid)

    def cases(self, points: list[dict[str, int]] | None = None) -> Iterator[Case]:
        """One case per input entry and upstream entry: the coefficient of ``G[k]``.

        Both sides are linear in ``G`` (the actual VJP by construction), so they are
        equal iff the coefficient of every ``G[k]`` agrees: ``d out[k] / d x`` against
        ``d claimed / d G[k]``. Comparing coefficients keeps each expression small,
        which is what makes the composed attention VJP decidable in seconds. A first
        case per input checks that the claimed formula is linear in ``G``, so nothing
        it contains is lost by taking coefficients.
        """
        scale = sp.Symbol("lambda_G")
        for point in grid_points(self.grid) if points is None else points:
            inputs = {
                name: symbol_matrix(name, r, c, **({"positive": True} if name in self.positive else {}))
                for name, (r, c) in self.shapes(**point).items()
            }
            out = sp.Matrix(self.forward(**inputs))
            G = symbol_matrix("G", *out.shape)
            claimed = self.claimed(G, **inputs)
            for name, grad in claimed.items():
                X = inputs[name]
                grad = sp.Matrix(grad)
                if grad.shape != X.shape:
                    yield f"{_label(point)}: d{name} shape", X.shape, grad.shape
                    continue
                # Linearity in G, decided with the exponentials frozen as opaque symbols (G never
                # enters an exponential): f(lambda G) must have zero second derivative in lambda.
                frozen = grad.xreplace({e: sp.Dummy(positive=True) for e in grad.atoms(sp.exp)})
                scaled = frozen.xreplace({g: scale * g for g in G})
                yield f"{_label(point)}: d{name} is linear in G", sp.diff(scaled, scale, 2), sp.zeros(*X.shape)
                # For a linear map, the coefficient of G[k] is its value at the unit matrix e_k.
                zero_G = {g: 0 for g in G}
                yield f"{_label(point)}: d{name} vanishes at G = 0", grad.xreplace(zero_G), sp.zeros(*X.shape)
                for k in range(len(out)):
                    unit = {**zero_G, G[k]: 1}
                    coefficient = grad.xreplace(unit)
                    for r in range(X.rows):
                        for c in range(X.cols):
                            yield (
                                f"{_label(point)}: d{name}[{r},{c}], coefficient of G[{k // out.cols},{k % out.cols}]",
                                sp.diff(out[k], X[r, c]),
                                coefficient[r, c],
                            )


@dataclass(frozen=True)
class ExprIdentity:
    """``actual(**sizes) == claimed(**sizes)`` at every grid point (one point if no grid).

    Both callables may return a scalar expression or a matrix; matrices are
    compared entry by entry.
    """

    actual: Callable[..., Any]
    claimed: Callable[..., Any]
    grid: Grid = field(default_factory=dict)
    note: str = "exact symbolic identity"

    @property
    def sizes(self) -> str:
        return describe_grid(self.grid) if self.grid else self.note

    def cases(self, points: list[dict[str, int]] | None = None) -> Iterator[Case]:
        for point in grid_points(self.grid) if points is None else points:
            actual, claimed = self.actual(**point), self.claimed(**point)
            if isinstance(actual, sp.MatrixBase) or isinstance(claimed, sp.MatrixBase):
                actual, claimed = sp.Matrix(actual), sp.Matrix(claimed)
                if actual.shape != claimed.shape:
                    yield f"{_label(point)}: shape", actual.shape, claimed.shape
                    continue
                for r in range(actual.rows):
                    for c in range(actual.cols):
                        yield f"{_label(point)} [{r},{c}]".strip(), actual[r, c], claimed[r, c]
            else:
                yield _label(point) or "identity", actual, claimed


Check = IndexIdentity | VJPIdentity | ExprIdentity


@dataclass(frozen=True)
class Claim:
    """One stated derivative: what the page shows, and how SymPy decides it."""

    id: str
    title: str
    latex: str
    check: Check

    @property
    def sizes(self) -> str:
        return self.check.sizes


# ----------------------------------------------------------------------------- deciding zero


def is_zero(expr: Any) -> bool:
    """True when SymPy reduces ``expr`` to exactly 0 (cheap rewrites first)."""
    if isinstance(expr, tuple):  # a shape mismatch reported as a case
        return all(e == 0 for e in expr)
    expr = sp.sympify(expr)
    if expr == 0:
        return True
    for rewrite in (_cancel_with_exp_atoms, sp.simplify):
        if rewrite(expr) == 0:
            return True
    return False


def _cancel_with_exp_atoms(expr: sp.Expr) -> sp.Expr:
    """Cancel after writing every ``exp(c * p)`` as ``t_p ** (c / unit_p)``.

    Each distinct exponent direction ``p`` (the primitive part of the expanded
    argument) becomes one positive symbol ``t_p``; ``unit_p`` is the gcd of the
    rational coefficients it appears with, so every power is an integer and the
    expression becomes a rational function that ``cancel`` decides. Treating the
    ``t_p`` as independent unknowns can only make the zero test harder, never
    easier: a rational function that cancels to 0 does so for any values.
    """
    exps = list(expr.atoms(sp.exp))
    if not exps:
        return sp.cancel(sp.together(expr))
    parts = {e: sp.expand(e.args[0]).as_content_primitive() for e in exps}
    units: dict[sp.Expr, sp.Rational] = {}
    for coeff, prim in parts.values():
        units[prim] = sp.gcd(units[prim], coeff) if prim in units else coeff
    symbols = {prim: sp.Symbol(f"_t{n}", positive=True) for n, prim in enumerate(units)}
    replacement = {e: symbols[prim] ** (coeff / units[prim]) for e, (coeff, prim) in parts.items()}
    numerator, _ = sp.fraction(sp.together(expr.xreplace(replacement)))
    return sp.expand(numerator)


def _discharge_ranges(expr: sp.Expr, ranges: Mapping[sp.Symbol, sp.Symbol]) -> sp.Expr:
    """Replace ``Piecewise((e, cond), ...)`` by ``e`` when ``cond`` follows from ``ranges``.

    A condition ``cond`` on index ``i`` with ``0 <= i < n`` is proven by writing
    ``n = i + 1 + r`` with ``r >= 0`` and letting SymPy decide it; no other facts
    are used, so a genuinely out-of-range case stays unresolved and fails.
    """

    def pick(*pieces: tuple[sp.Expr, Any]) -> sp.Expr:
        for value, cond in pieces:
            if cond == sp.true:
                return value
            for index, size in ranges.items():
                slack = sp.Dummy("r", integer=True, nonnegative=True)
                if index.is_nonnegative and sp.sympify(cond).subs(size, index + 1 + slack) == sp.true:
                    return value
            break
        return sp.Piecewise(*pieces)

    return expr.replace(sp.Piecewise, pick)
