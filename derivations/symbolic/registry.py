"""Operations, claims and derivations: the three things the registry is made of.

An :class:`Op` is one forward equation, the way ``derivatives.yaml`` has one entry per
function: the quantity it defines, its definition, the intermediate quantities its
derivatives mention, and the sizes the checker works at. A :class:`Claim` is one stated
derivative of an op: an id the pages cite, the thing differentiated (``lhs``) and the
claimed formula (``rhs``), both SymPy expressions. The page prints ``lhs = rhs`` from
these objects and the checker proves the same objects (``proof.py``), so the page cannot
show a formula other than the one proven. A :class:`Derivation` is a chain of
expressions, each proven equal to the one before.

Inside an op, names mean what the backward pass means by them:

- a quantity the op defines (its output, or an intermediate) stands for its definition;
- ``dY`` for the op's output ``Y`` is the upstream gradient, a free matrix;
- ``dX`` for an input ``X`` is the gradient the backward pass returns: the derivative of
  ``sum(dY * Y)`` with respect to ``X`` (the vector-Jacobian product);
- ``Derivative(Y[i, j], X[m, n])`` is that partial derivative.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Mapping

import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixElement

from . import notation
from .notation import SIZE_WORDS
from .printer import equation, latex

Grid = Mapping[sp.Symbol, tuple[int, ...]]

KINDS = {
    "general": "SymPy proved the identity with symbolic sizes, so it holds for matrices of every size.",
    "grid": (
        "SymPy proved the identity entry by entry, separately at every combination of the sizes named; "
        "this is not a proof for larger sizes."
    ),
    "every-real": "SymPy proved the identity symbolically in the variables named, so it holds for all their values.",
}


def define(pattern, definition):
    """One definition ``pattern = definition``.

    ``pattern`` is a scalar symbol (``sigma``), a whole matrix (``S``, with a matrix
    expression as definition) or one component with index symbols (``A[i, j]``), which
    defines every component.
    """
    return (pattern, sp.sympify(definition) if not isinstance(definition, sp.MatrixExpr) else definition)


@dataclass(frozen=True, eq=False)
class Op:
    """One forward equation and the quantities its derivatives use.

    ``defs`` are definitions (:func:`define`); the first defines the output. ``grid`` maps
    size symbols to the sizes a check is done at (every size from 1 up); without a grid the
    sizes stay symbolic. ``variables`` are the real variables of a scalar identity (its
    badge says "every real x"); ``cases`` are substitutions it is proven under instead
    (``x`` positive, then negative), described by ``domain``.
    """

    name: str
    defs: tuple = ()
    grid: Grid | None = None
    variables: tuple = ()
    cases: tuple = ()
    domain: str = ""
    functions: tuple = ()  # (Function class, Lambda) pairs: named functions and their definitions
    expand: Any = None  # expand(expr, point, where) -> explicit expr, for objects only a size defines (chains)
    returns: int = 1  # how many of the first definitions are outputs (their gradients are the upstream)

    def __post_init__(self):
        for symbol, sizes in (self.grid or {}).items():
            if tuple(sizes) != tuple(range(1, max(sizes) + 1)):
                raise ValueError(f"op {self.name}: the grid of {symbol} must be 1, 2, ..., N (got {sizes})")

    @property
    def outputs(self) -> tuple:
        """What the op returns: the quantity defined first, or the first ``returns`` ones."""
        return tuple(element_pattern(pattern)[0] for pattern, _ in self.defs[: self.returns])

    @property
    def kind(self) -> str:
        if self.grid:
            return "grid"
        return "every-real" if self.variables else "general"

    def points(self) -> list[dict]:
        """The size assignments a check runs at: one per grid combination, one without a grid."""
        if not self.grid:
            return [{}]
        names = list(self.grid)
        return [dict(zip(names, values)) for values in itertools.product(*(self.grid[s] for s in names))]

    def sizes_text(self) -> str:
        """What was proven, in words: "for all sizes", "at every size up to 3 in each dimension"."""
        if self.kind == "general":
            return f"for every {self.domain}" if self.domain else "for all sizes"
        if self.kind == "every-real":
            if self.domain:
                return f"for every {self.domain}"
            words = " and ".join(_variable_words(x) for x in self.variables)
            return f"for every {words}"
        tops: dict[int, list[str]] = {}
        for symbol, sizes in self.grid.items():
            tops.setdefault(max(sizes), []).append(SIZE_WORDS.get(symbol, str(symbol)))
        if len(tops) == 1:
            (top, names), = tops.items()
            return f"at every size up to {top} in each dimension" if len(names) > 1 else f"at every size up to {top} ({names[0]})"
        parts = [f"up to {top} ({', '.join(names)})" for top, names in sorted(tops.items())]
        return "at every size " + " and ".join(parts)

    def forward_latex(self) -> str:
        """The op's definitions as the pages write them."""
        return r",\qquad ".join(_definition_latex(p, d) for p, d in self.defs)


def _variable_words(x: sp.Symbol) -> str:
    name = latex(x).replace("\\", "")
    name = {"sigma": "σ", "beta_{1}": "β₁", "beta_{2}": "β₂"}.get(name, name)
    if x.is_positive:
        return f"{name} > 0"
    return f"real {name}"


def _definition_latex(pattern, definition) -> str:
    return f"{latex(pattern)} = {latex(definition)}"


@dataclass(frozen=True, eq=False)
class Claim:
    """One stated derivative (or identity): ``lhs = rhs`` within ``op``.

    ``impl`` names the reference function computing ``lhs`` (``"attention_backward:dV"``);
    a claim without one says why in ``no_impl``. ``where`` holds definitions used by
    ``rhs`` and printed after it; ``when`` restricts the free indices (``j > i``).
    """

    id: str
    title: str
    op: Op
    lhs: Any
    rhs: Any
    impl: str | None = None
    no_impl: str = ""
    where: tuple = ()
    when: Any = None
    given: tuple = ()  # hypotheses, printed first (their content is in the op: moments, distributions)

    def __post_init__(self):
        if (self.impl is None) == (not self.no_impl):
            raise ValueError(f"claim {self.id}: give exactly one of impl (the reference function) and no_impl (why none)")

    @property
    def kind(self) -> str:
        return self.op.kind

    @property
    def sizes(self) -> str:
        """What was proven, in words (the badge and the claims page use it)."""
        return self.op.sizes_text()

    @property
    def latex(self) -> str:
        """The formula, printed from the expressions that are proven.

        Several equations (a tuple) are aligned one per line; hypotheses (``given``) come
        first, definitions (``where``) last.
        """
        given = r",\ ".join(latex(g) for g in self.given)
        where = r",\ ".join(_definition_latex(p, d) for p, d in self.where)
        if isinstance(self.lhs, sp.Tuple):
            rows = [f"{latex(l)} &= {latex(r)}" for l, r in zip(self.lhs.args, self.rhs.args)]
            if given:
                rows.insert(0, r"&\text{if } " + given + ":")
            if where:
                rows.append(r"&\text{where } " + where)
            return r"\begin{aligned}" + r" \\ ".join(rows) + r"\end{aligned}"
        text = equation(self.lhs, self.rhs)
        if self.when is not None:
            text += r" \quad \text{for } " + latex(self.when)
        if given:
            text = given + r" \ \Rightarrow\ " + text
        if where:
            text += r",\qquad \text{where } " + where
        return text

    def statement(self):
        """``(lhs, rhs, definitions)`` for the checker."""
        return self.lhs, self.rhs, self.where


@dataclass(frozen=True, eq=False)
class Derivation:
    """A chain ``steps[0] = steps[1] = ...`` in ``op``, every ``=`` proven.

    ``breaks`` holds the positions of steps that continue the line above rather than
    starting a new one (none by default: every step gets its own line).
    """

    id: str
    title: str
    op: Op
    steps: tuple
    where: tuple = ()
    joins: tuple = field(default_factory=tuple)
    concludes: str | None = None  # the claim whose lhs and rhs are the first and the last step

    @property
    def kind(self) -> str:
        return self.op.kind

    @property
    def sizes(self) -> str:
        return self.op.sizes_text()

    @property
    def latex(self) -> str:
        """One aligned display: the first expression, then ``&= step`` per line."""
        lines = [f"{latex(self.steps[0])} &= {latex(self.steps[1])}"]
        for position, step in enumerate(self.steps[2:], start=2):
            if position in self.joins:
                lines[-1] += f" = {latex(step)}"
            else:
                lines.append(f"&= {latex(step)}")
        text = r"\begin{aligned}" + r" \\ ".join(lines) + r"\end{aligned}"
        if self.where:
            text += r"\qquad \text{where } " + r",\ ".join(_definition_latex(p, d) for p, d in self.where)
        return text


def element_pattern(pattern) -> tuple:
    """``(parent, index symbols)`` of a definition's pattern; a scalar has no parent indices."""
    if isinstance(pattern, MatrixElement):
        return pattern.parent, (pattern.i, pattern.j)
    return pattern, None


__all__ = ["Claim", "Derivation", "KINDS", "Op", "define", "element_pattern", "notation"]
