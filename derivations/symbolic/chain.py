"""The chain rule itself, for a loss of an arbitrary function: no op of the model, only calculus.

``L = ell(Y)`` and ``Y = F(X)`` with ``ell`` and every component of ``F`` undefined functions,
so the identity holds for any differentiable loss and layer. SymPy needs explicit components
for that, so these ops work at grid sizes (:func:`expand` writes them out).
"""

from __future__ import annotations

import itertools

import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixElement

from .notation import grad, matrix, size
from .registry import Op

n_x, n_y = size("n_x", "input components"), size("n_y", "intermediate components")
m_x, m_y = size("m_x", "input columns"), size("m_y", "intermediate columns")
x, y = matrix("x", 1, n_x), matrix("y", 1, n_y)
X, Y = matrix("X", n_x, m_x), matrix("Y", n_y, m_y)
dx, dy, dX, dY = map(grad, (x, y, X, Y))


def chain_expand(inputs, intermediates):
    """``expand(expr, point)`` for a loss of ``Y = F(X)``: components become functions and derivatives."""

    def expand(expr, point, where=()):
        X_, Y_ = (M.subs(point) for M in (inputs, intermediates))
        xs = {(r, c): sp.Symbol(f"x_{r}{c}", real=True) for r, c in _cells(X_)}
        F = {(r, c): sp.Function(f"F_{r}{c}")(*xs.values()) for r, c in _cells(Y_)}
        ys = {cell: sp.Dummy(f"y_{cell[0]}{cell[1]}") for cell in F}
        loss = sp.Function("ell")(*ys.values())
        at_F = dict(zip(ys.values(), F.values()))

        def component(e: MatrixElement):
            cell, name = (int(e.i), int(e.j)), e.parent.name
            if name == X_.name:
                return xs[cell]
            if name == Y_.name:
                return F[cell]
            if name == "d" + X_.name:
                return sp.diff(loss.xreplace(at_F), xs[cell])
            if name == "d" + Y_.name:
                return sp.diff(loss, ys[cell]).subs(at_F)
            return e

        return expr.replace(lambda e: isinstance(e, MatrixElement) and e.i.is_Integer and e.j.is_Integer, component)

    return expand


def _cells(M):
    return itertools.product(range(int(M.shape[0])), range(int(M.shape[1])))


chain_rule = Op("chain rule", defs=(), grid={n_x: (1, 2, 3), n_y: (1, 2, 3)}, expand=chain_expand(x, y))
chain_rule_matrix = Op("chain rule (matrices)", defs=(), grid={n_x: (1, 2), m_x: (1, 2), n_y: (1, 2), m_y: (1, 2)},
                       expand=chain_expand(X, Y))


def arbitrary_function_op(name, inputs, functions, derived, loss_of, grid):
    """An op whose ``functions`` are arbitrary differentiable functions of ``inputs``.

    ``derived`` maps further quantities to ``rule(x, F)``, their components from the input
    components ``x`` and the functions' components ``F[f]`` (``y = x + f(x)``). The loss is
    an arbitrary function of ``loss_of``. At a size, :func:`expand` writes it all out.
    """

    def expand(expr, point, where=()):
        X_ = inputs.xreplace(point)
        xs = sp.Matrix(*X_.shape, lambda r, c: sp.Symbol(f"{inputs.name}_{r}{c}", real=True))
        values = {inputs.name: xs}
        F = {}
        for f in functions:
            shape = f.xreplace(point).shape
            F[f] = sp.Matrix(*shape, lambda r, c, f=f: sp.Function(f"{f.name}_{r}{c}")(*xs))
            values[f.name] = F[f]
        for quantity, rule in derived.items():
            values[quantity.name] = rule(xs, F)
        target = values[loss_of.name]
        placeholders = sp.Matrix(*target.shape, lambda r, c: sp.Dummy(f"y_{r}{c}"))
        loss = sp.Function("ell")(*placeholders)
        at_target = dict(zip(placeholders, target))

        def component(e):
            r, c, name = int(e.i), int(e.j), e.parent.name
            if name in values:
                return values[name][r, c]
            if name == "d" + inputs.name:
                return sp.diff(loss.xreplace(at_target), xs[r, c])
            if name == "d" + loss_of.name:
                return sp.diff(loss, placeholders[r, c]).subs(at_target)
            return e

        return expr.replace(lambda e: isinstance(e, MatrixElement) and e.i.is_Integer and e.j.is_Integer, component)

    return Op(name, grid=grid, expand=expand)
