"""Deciding a claim: give every name its meaning in the op, then reduce ``lhs - rhs`` to zero.

:func:`cases` turns a claim (or one step of a derivation) into :class:`Case` objects, one
per size of the op's grid and per component; the claim holds when :func:`is_zero` reduces
every ``actual - claimed`` to exactly zero. A matrix claim is compared component by
component: with symbolic component indices at general sizes, with every component at
grid sizes.

Without a grid the sizes stay symbols: ``(dS K)[r, c]`` is a symbolic ``Sum`` and
``d/dQ[r, c]`` of a definition gives Kronecker deltas. :func:`canonical` writes such
expressions as sums of monomials over flat multi-sums, collapses the deltas, and names
the bound indices canonically, so two sums that differ only in the names and order of
their indices become identical.
"""

from __future__ import annotations

import functools
import itertools
import re
from typing import Any, Iterator, NamedTuple

import sympy as sp
from sympy.core.function import AppliedUndef
from sympy.matrices.expressions.matexpr import MatrixElement, MatrixExpr

from .notation import Contraction, gradient_of
from .registry import Op, element_pattern


class Case(NamedTuple):
    where: str  # sizes and component, for the report of a failure
    actual: Any
    claimed: Any
    ranges: dict  # free index -> (low, high), what the canonical form may assume


class Partial(sp.Function):
    """A derivative not taken yet: SymPy turns ``d y[0, 0] / d x[0, 0]`` into 0 the moment the
    indices become numbers, before an op has said that ``y`` depends on ``x``."""


def _defer_derivatives(expr):
    """Derivatives written in a claim wait as ``Partial``; those SymPy left unevaluated
    (of an undefined function, in a chain rule written out) are final and stay."""
    return expr.replace(lambda e: isinstance(e, sp.Derivative) and not e.expr.atoms(AppliedUndef),
                        lambda e: Partial(e.expr, *e.variables))


class Meaning:
    """What the names of an op mean at one size ``point`` (an empty point: symbolic sizes)."""

    def __init__(self, op: Op, point: dict, extra_defs: tuple = ()):
        self.op, self.point, self.where = op, point, extra_defs
        self.defs: dict = {}
        self.function_defs: dict = {}  # F -> (arguments, body) for a definition F(x) = body
        for pattern, definition in (*op.defs, *extra_defs):
            if isinstance(pattern, sp.Function):
                self.function_defs[type(pattern)] = (pattern.args, definition)
                continue
            parent, indices = element_pattern(_at(pattern, point))
            self.defs[parent] = (indices, _at(definition, point))
        self.outputs = [_at(output, point) for output in op.outputs]
        self._pairing = None
        self._calls: dict = {}  # each expression's meaning, once: the variants of a claim share a side
        self._elements: dict = {}  # a component's meaning, once: formulas mention the same ones many times
        self.inputs = {}
        for _, definition in self.defs.values():
            for symbol in _atoms(definition, sp.MatrixSymbol):
                self.inputs.setdefault(symbol.name, symbol)

    def element(self, e: MatrixElement):
        if e not in self._elements:
            self._elements[e] = self._element(e)
        return self._elements[e]

    def _element(self, e: MatrixElement):
        X = e.parent
        if X in self.defs:
            indices, definition = self.defs[X]
            if indices is None:
                return self(definition[e.i, e.j])
            return self(definition.xreplace(dict(zip(indices, (e.i, e.j)))))
        quantity = gradient_of(X.name) if isinstance(X, sp.MatrixSymbol) else None
        if quantity in self.inputs and quantity not in {getattr(Y, "name", None) for Y in self.outputs}:
            return self.vjp(self.inputs[quantity], e.i, e.j)
        return e

    def vjp(self, X: sp.MatrixSymbol, r, c):
        """``d/dX[r, c] sum(dY * Y)`` over the outputs ``Y``: the gradient the backward pass returns for ``X``."""
        if self._pairing is None:  # the same pairing serves every component of every input
            terms = []
            for Y in self.outputs:
                if not isinstance(Y, sp.MatrixSymbol):  # a scalar output, the loss itself: upstream gradient 1
                    terms.append(self(Y))
                    continue
                dY = sp.MatrixSymbol("d" + Y.name, *Y.shape)
                if self.point:
                    cells = itertools.product(range(int(Y.shape[0])), range(int(Y.shape[1])))
                    terms.append(sp.Add(*[dY[p, q] * self(Y[p, q]) for p, q in cells]))
                else:
                    p, q = sp.Dummy("p", integer=True, nonnegative=True), sp.Dummy("q", integer=True, nonnegative=True)
                    terms.append(sp.Sum(dY[p, q] * self(Y[p, q]), (p, 0, Y.shape[0] - 1), (q, 0, Y.shape[1] - 1)))
            self._pairing = sp.Add(*terms)
        return sp.diff(self._pairing, X[r, c])

    def __call__(self, expr):
        """``expr`` with every name replaced by its meaning, derivatives taken."""
        expr = sp.sympify(expr)
        if expr not in self._calls:
            self._calls[expr] = self._mean(expr)
        return self._calls[expr]

    def _mean(self, expr):
        expr = _defer_derivatives(expr)
        expr = expr.replace(lambda e: isinstance(e, Contraction), lambda e: sp.Sum(e.function, *e.limits))
        if self.point:  # write out sums with numeric bounds, leaving what they sum untouched
            expr = expr.replace(lambda e: isinstance(e, sp.Sum), _write_out)
        if self.op.expand is not None and self.point:
            expr = self.op.expand(expr, self.point, self.where)
        expr = expr.replace(lambda e: isinstance(e, Partial), lambda e: sp.diff(self(e.args[0]), *e.args[1:]))
        expr = expr.replace(lambda e: isinstance(e, MatrixElement), self.element)
        for symbol, (indices, definition) in self.defs.items():
            if isinstance(symbol, sp.Symbol) and not isinstance(symbol, sp.MatrixSymbol) and expr.has(symbol):
                expr = expr.xreplace({symbol: self(definition)})
        for function, (arguments, body) in self.function_defs.items():
            expr = expr.replace(lambda e, f=function: isinstance(e, f),
                                lambda e, x=arguments, body=body: self(body.xreplace(dict(zip(x, e.args)))))
        for function, body in self.op.functions:
            expr = expr.replace(lambda e, f=function: isinstance(e, f), lambda e, body=body: body(*e.args))
        # No doit(): at symbolic sizes canonical() collapses the deltas of sums, where doit()
        # would wrap them in Piecewise conditions; at grid sizes every sum is written out already.
        return expr


def _write_out(total: sp.Sum):
    body = total.function
    for variable, low, high in total.limits:
        if not (low.is_Integer and high.is_Integer):
            return total
        body = sp.Add(*[body.xreplace({variable: value}) for value in range(int(low), int(high) + 1)])
    return body


def _at(expr, point: dict):
    """``expr`` at the sizes of ``point`` (``xreplace`` also reaches the variables of derivatives)."""
    return expr.xreplace(point) if point and expr is not None and hasattr(expr, "xreplace") else expr


def _atoms(expr, kind) -> set:
    if isinstance(expr, kind):
        return {expr}
    return set(expr.atoms(kind)) if hasattr(expr, "atoms") else set()


# ----------------------------------------------------------------------------- cases


MEANINGS_KEPT = 512  # the claims tests make about 160, and the process grows by no measurable memory


@functools.lru_cache(maxsize=MEANINGS_KEPT)
def _meaning(op: Op, point: tuple, where: tuple) -> Meaning:
    return Meaning(op, dict(point), where)


def meaning_of(op: Op, point: dict, where: tuple) -> Meaning:
    """The :class:`Meaning` of ``op`` at ``point`` under ``where``, made once and kept.

    A meaning is a pure function of these (it only ever adds to its caches what it would compute
    again), so sharing it changes no result; it saves rebuilding the pairing and the components
    each claim about the op uses, which its wrong variants in the tests use again and again."""
    return _meaning(op, tuple(point.items()), tuple(where))


def cases(lhs, rhs, op: Op, where: tuple = (), when=None, points: list[dict] | None = None) -> Iterator[Case]:
    """One :class:`Case` for every size of the op and every component of ``lhs``.

    The :class:`Meaning` of each size is kept (:func:`meaning_of`), so the parts of a claim, its
    steps, the screen before its proof and other claims about the same op share its work."""
    lhs, rhs = _defer_derivatives(sp.sympify(lhs)), _defer_derivatives(sp.sympify(rhs))
    for point in op.points() if points is None else points:
        label = ", ".join(f"{s}={v}" for s, v in point.items())
        for substitution in op.cases or ({},):
            L, R = _at(lhs, point), _at(rhs, point)
            if op.expand is not None and point:
                L, R = op.expand(L, point, where), op.expand(R, point, where)
            if substitution:
                L, R = L.xreplace(substitution), R.xreplace(substitution)
            meaning = meaning_of(op, point, where)
            for name, left, right, ranges in _components(L, R, bool(point), when=_at(when, point)):
                yield Case(f"{label} {name}".strip(), meaning(left), meaning(right), ranges)


def _components(L, R, explicit: bool, when=None):
    """Scalar ``(name, left, right, ranges)``: tuple parts, matrix entries, free-index values."""
    if isinstance(L, sp.Tuple):
        if not isinstance(R, sp.Tuple) or len(L) != len(R):
            raise ValueError(f"{L} and {R} do not have the same number of parts")
        for position, (x, y) in enumerate(zip(L.args, R.args)):
            for name, left, right, ranges in _components(x, y, explicit, when):
                yield f"part {position}{' ' + name if name else ''}", left, right, ranges
        return
    if isinstance(L, MatrixExpr) or isinstance(R, MatrixExpr):
        if L.shape != R.shape:
            raise ValueError(f"shapes differ: {L.shape} and {R.shape}")
        if explicit:
            for r, c in itertools.product(range(int(L.shape[0])), range(int(L.shape[1]))):
                yield f"[{r},{c}]", L[r, c], R[r, c], {}
        else:
            r, c = sp.Dummy("r", integer=True, nonnegative=True), sp.Dummy("c", integer=True, nonnegative=True)
            yield "[r,c]", L[r, c], R[r, c], {r: (0, L.shape[0] - 1), c: (0, L.shape[1] - 1)}
        return
    ranges = _index_ranges(sp.Tuple(L, R))
    if not explicit:
        yield "", L, R, {index: (0, extent - 1) for index, extent in ranges.items()}
        return
    names = sorted(ranges, key=str)
    for values in itertools.product(*(range(int(ranges[s])) for s in names)):
        assignment = dict(zip(names, values))
        if when is not None and not bool(sp.sympify(when).xreplace(assignment)):
            continue
        label = ", ".join(f"{s}={v}" for s, v in assignment.items())
        yield f"[{label}]" if label else "", L.xreplace(assignment), R.xreplace(assignment), {}


def _index_ranges(expr) -> dict:
    """Free index symbols of ``expr`` and the size each runs below, read from the components they index."""
    ranges: dict = {}
    bound = set()
    for s in expr.atoms(sp.Sum):
        bound |= {limit[0] for limit in s.limits}
    for e in expr.atoms(MatrixElement):
        for index, extent in zip((e.i, e.j), e.parent.shape):
            if isinstance(index, sp.Symbol) and index not in bound:
                if ranges.setdefault(index, extent) != extent:
                    raise ValueError(f"index {index} runs over two different sizes in {expr}")
    return ranges


# ----------------------------------------------------------------------------- deciding zero


def is_zero(expr, ranges: dict | None = None) -> bool:
    """True when ``expr`` reduces to exactly 0.

    Symbolic sums first go to :func:`canonical`. Then one rewrite by content: square roots
    of symbols are reduced (:func:`_reduce_square_roots`), exponentials become powers of
    fresh symbols (:func:`_cancel_with_exp_atoms`), anything else is cancelled as a
    rational function; ``simplify`` is the last resort for explicit expressions.
    """
    expr = sp.sympify(expr)
    if expr == 0:
        return True
    symbolic_sums = expr.has(sp.Sum)
    if symbolic_sums or expr.has(sp.KroneckerDelta):
        # Components as plain Indexed objects: a MatrixElement re-checks its indices against
        # the shape every time it is rebuilt, which dominates the cost of renaming.
        expr = expr.replace(lambda e: isinstance(e, MatrixElement),
                            lambda e: sp.Indexed(sp.IndexedBase(e.parent.name), e.i, e.j))
        expr = canonical(expr, ranges or {}, {})
        if expr == 0:
            return True
    elif sp.expand(expr) == 0:
        return True
    if any(p.exp.is_Rational and p.exp.q == 2 and p.base.free_symbols for p in expr.atoms(sp.Pow)):
        rewrite = _reduce_square_roots
    elif expr.has(sp.exp):
        rewrite = _cancel_with_exp_atoms
    else:
        rewrite = lambda e: sp.cancel(sp.together(e))  # noqa: E731
    if rewrite(expr) == 0:
        return True
    # simplify rarely helps once the exponentials are decided, and costs seconds on a wrong claim
    return not symbolic_sums and not expr.has(sp.Sum, sp.exp) and sp.simplify(expr) == 0


def _reduce_square_roots(expr):
    """The numerator of ``expr`` with every ``sqrt(X)`` a symbol ``s``, reduced modulo ``s**2 - X``.

    Zero after the reduction means zero wherever ``s = sqrt(X)``: the relation is the only
    fact used about ``s``.
    """
    roots = {p.base for p in expr.atoms(sp.Pow) if p.exp.is_Rational and p.exp.q == 2 and p.base.free_symbols}
    if not roots:
        return expr
    symbols = {base: sp.Dummy("s", positive=True) for base in roots}
    replaced = expr.replace(lambda e: e.is_Pow and e.base in symbols and e.exp.is_Rational and e.exp.q == 2,
                            lambda e: symbols[e.base] ** int(2 * e.exp))
    numerator, _ = sp.fraction(sp.together(replaced))
    numerator = sp.expand(numerator)
    for base, s in symbols.items():
        try:
            numerator = sp.expand(sp.rem(sp.Poly(numerator, s), sp.Poly(s**2 - base, s)).as_expr())
        except sp.PolynomialError:  # s inside a function: this rewrite cannot decide it
            return expr
    return numerator


def canonical(expr, ranges: dict, memo: dict | None = None):
    """``expr`` as a sum of monomials, each one flat multi-sum with canonical index names.

    A Kronecker delta ``delta(v, w)`` under a sum over ``v`` collapses the sum (``v``
    becomes ``w``) only when ``w`` is known to lie in the sum's range: the delta carries
    that range (``diff`` attaches the matrix dimension), ``w`` is a free index whose range
    is given in ``ranges``, or ``w`` is another summed index with the same range. Nothing
    else is assumed, so an identity that needs more does not reduce to zero.
    """
    memo = {} if memo is None else memo
    if expr not in memo:
        memo[expr] = sp.Add(*[_close(body, limits, ranges) for body, limits in _monomials(sp.expand(expr), ranges, memo)])
    return memo[expr]


def _monomials(expr, ranges, memo) -> list[tuple[Any, tuple]]:
    """``expr`` as ``[(body, limits)]``: ``expr = sum of Sum(body, *limits)``, no Sum left in a body
    except inside functions and negative powers (canonicalised in place)."""
    out = []
    for term in sp.Add.make_args(sp.expand(expr)):
        partial = [(sp.Integer(1), ())]
        for factor in sp.Mul.make_args(term):
            if factor.is_Pow and isinstance(factor.base, sp.Sum) and factor.exp.is_Integer and factor.exp > 0:
                copies = [factor.base] * int(factor.exp)
            elif isinstance(factor, sp.Sum):
                copies = [factor]
            else:
                atom = _canonical_inside(factor, ranges, memo)
                partial = [(body * atom, limits) for body, limits in partial]
                continue
            for total in copies:
                fresh = {v: sp.Dummy(str(v), integer=True) for v, _, _ in total.limits}
                limits = tuple((fresh[v], low, high) for v, low, high in total.limits)
                inner = _monomials(total.function.xreplace(fresh), ranges, memo)
                partial = [(b1 * b2, l1 + limits + l2) for b1, l1 in partial for b2, l2 in inner]
        out.extend(partial)
    return out


def _canonical_inside(factor, ranges, memo):
    """A factor with sums inside a function or a power, canonical inside."""
    if not factor.has(sp.Sum) or not factor.args:
        return _plain_delta(factor)
    return factor.func(*[canonical(arg, ranges, memo) if arg.has(sp.Sum) else _plain_delta(arg) for arg in factor.args])


def _plain_delta(expr):
    if isinstance(expr, sp.KroneckerDelta):
        return sp.KroneckerDelta(*expr.args[:2])
    return expr


def _close(body, limits, ranges):
    """``Sum(body, *limits)`` with deltas collapsed, unused indices counted, indices renamed."""
    fixed = [(v, low, high) for v, low, high in limits if (high - low).is_Integer]
    if fixed:  # a sum over numeric bounds (the one row of a row vector) is written out
        v, low, high = fixed[0]
        rest = tuple(l for l in limits if l[0] != v)
        return sp.Add(*[_close(body.xreplace({v: value}), rest, ranges) for value in range(int(low), int(high) + 1)])
    body, limits = sp.expand(body), list(limits)
    changed = True
    while changed:
        changed = False
        for position, (variable, low, high) in enumerate(limits):
            delta = _collapsing_delta(body, variable, (low, high), limits, ranges)
            if delta is not None:
                other = delta.args[1] if delta.args[0] == variable else delta.args[0]
                body = sp.expand((body / delta).xreplace({variable: other}))
                del limits[position]
                changed = True
                break
    used = [(v, low, high) for v, low, high in limits if body.has(v)]
    for v, low, high in limits:
        if not body.has(v):
            body = body * (high - low + 1)
    body = _plain_delta_all(body)
    if not used:
        return body
    # Factors free of the summed indices stand outside the sum, so a square root or a
    # normaliser in them is visible to the rewrites of is_zero.
    bound = {v for v, _, _ in used}
    outside = sp.Mul(*[f for f in sp.Mul.make_args(body) if not (f.free_symbols & bound)])
    body = sp.Mul(*[f for f in sp.Mul.make_args(body) if f.free_symbols & bound])
    # Names _b<k> continue after those of the sums inside the body (in a square root, say), so
    # that renaming cannot capture; they depend on the content only, not on where it stands.
    first = 1 + max((int(s.name[2:]) for s in body.atoms(sp.Symbol) if _BOUND_NAME.fullmatch(s.name)), default=-1)
    best = None
    for order in itertools.permutations(used):
        names = {v: sp.Symbol(f"_b{first + p}", integer=True) for p, (v, _, _) in enumerate(order)}
        candidate = sp.Sum(body.xreplace(names), *[(names[v], low, high) for v, low, high in order])
        key = sp.srepr(candidate)
        if best is None or key < best[0]:
            best = (key, candidate)
    return outside * best[1]


_BOUND_NAME = re.compile(r"_b\d+")


def _plain_delta_all(expr):
    return expr.replace(lambda e: isinstance(e, sp.KroneckerDelta), lambda e: sp.KroneckerDelta(*e.args[:2]))


def _collapsing_delta(body, variable, span, limits, ranges):
    for factor in sp.Mul.make_args(body):
        if not isinstance(factor, sp.KroneckerDelta) or variable not in factor.args[:2]:
            continue
        other = factor.args[1] if factor.args[0] == variable else factor.args[0]
        if other == variable or variable in other.free_symbols:
            continue
        delta_range = tuple(factor.args[2]) if len(factor.args) > 2 else None
        known = delta_range or ranges.get(other) or next((tuple(l[1:]) for l in limits if l[0] == other), None)
        if known is not None and tuple(known) == tuple(span):
            return factor
    return None


def _cancel_with_exp_atoms(expr):
    """Cancel after writing every ``exp(c * p)`` as ``t_p ** (c / unit_p)``.

    Each distinct exponent direction ``p`` (the primitive part of the expanded argument)
    becomes one positive symbol ``t_p``; ``unit_p`` is the gcd of the rational coefficients
    it appears with, so every power is an integer and the expression becomes a rational
    function that ``cancel`` decides. Treating the ``t_p`` as independent unknowns can only
    make the zero test harder, never easier: a rational function that cancels to 0 does so
    for any values.
    """
    exps = list(expr.atoms(sp.exp))
    if not exps:
        return sp.cancel(sp.together(expr))
    parts = {e: sp.expand(e.args[0]).as_content_primitive() for e in exps}
    units: dict = {}
    for coeff, prim in parts.values():
        units[prim] = sp.gcd(units[prim], coeff) if prim in units else coeff
    symbols = {prim: sp.Symbol(f"_t{n}", positive=True) for n, prim in enumerate(units)}
    replacement = {e: symbols[prim] ** (coeff / units[prim]) for e, (coeff, prim) in parts.items()}
    numerator, _ = sp.fraction(sp.together(expr.xreplace(replacement)))
    return sp.expand(numerator)
