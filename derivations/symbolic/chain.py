"""Ops made of arbitrary functions and of chains of steps, written out at each grid size.

The chain rule holds for any differentiable loss and layer: ``L = ell(Y)``, ``Y = F(X)`` with
``ell`` and every component of ``F`` undefined functions. SymPy needs explicit components for
that, so these ops work at grid sizes: each has an ``expand`` that writes its objects out (the
components, the steps of a chain of symbolic length) at a size.
"""

from __future__ import annotations

import functools
import itertools

import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixElement

from .notation import Jacobian, Ordered, Step, grad, matrix, size, tanh
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


# ----------------------------------------------------------------------------- chains of steps
# A chain's length is a symbol (the depth D, the number of steps T); the page writes its
# product with \cdots (notation.Ordered). At each grid size the op writes every step out.


def _definition(where, name):
    """The claim's own definition of the step quantity ``name`` (``J_l``, ``D_t``): what the page prints."""
    for pattern, definition in where:
        parent = getattr(pattern, "parent", pattern)
        if isinstance(parent, Step) and str(parent.args[0]) == name:
            return pattern, definition
    raise ValueError(f"no definition of {name} among {where}")


def _evaluate(expr, steps: dict, jacobian):
    """``expr`` with every Step, Ordered product and Jacobian at numeric steps made explicit.

    ``steps[name](t)`` is the explicit matrix of step quantity ``name`` at step ``t``;
    ``jacobian(Y, X)`` the explicit Jacobian of explicit ``Y`` with respect to ``X``.
    """
    if not expr.has(Step, Ordered, Jacobian):
        return expr
    if isinstance(expr, Step):
        return sp.ImmutableMatrix(steps[str(expr.args[0])](int(expr.args[1])))
    if isinstance(expr, Ordered):
        body, index, top, bottom = expr.args
        product = sp.eye(body.shape[0])
        for value in range(int(top), int(bottom) - 1, -1):
            product = product * _evaluate(body.xreplace({index: value}), steps, jacobian)
        return sp.ImmutableMatrix(product)
    if isinstance(expr, Jacobian):
        return sp.ImmutableMatrix(jacobian(*(_evaluate(arg, steps, jacobian) for arg in expr.args)))
    replaced = expr.func(*[_evaluate(arg, steps, jacobian) for arg in expr.args])
    return replaced.doit() if isinstance(replaced, sp.MatrixExpr) else replaced


def layer_chain(name, width, depth, grid):
    """``h_l = f_l(h_{l-1})``, ``l = 1 ... D``, with every ``f_l`` an arbitrary vector function.

    Step quantities: ``h_l``, ``f_l`` (the value of layer ``l``) and ``J_l``, taken from the
    claim's own definition of it (its ``where``), so the page and the proof share it.
    """

    @functools.lru_cache(maxsize=None)
    def values(w: int, top: int) -> dict:
        out = {0: sp.Matrix(1, w, lambda r, c: sp.Symbol(f"h0_{c}", real=True))}
        for layer in range(1, top + 1):
            out[layer] = sp.Matrix(1, w, lambda r, c, layer=layer: sp.Function(f"f{layer}_{c}")(*out[layer - 1]))
        return out

    def expand(expr, point, where=()):
        w, top = int(point[width]), int(point[depth])
        hs = values(w, top)

        def written_out(e):  # derivatives of step components by step components, then the components
            def component(x):
                return hs[int(x.parent.args[1])][0, int(x.j)]
            e = e.replace(lambda x: isinstance(x, sp.Derivative),
                          lambda x: sp.diff(component(x.expr), component(x.variables[0])))
            return e.replace(lambda x: isinstance(x, MatrixElement) and isinstance(x.parent, Step), component)

        steps = {"h": hs.__getitem__, "f": hs.__getitem__}
        if any(str(e.args[0]) == "J" for e in expr.atoms(Step)):
            pattern, definition = _definition(where, "J")
            index, rows, cols = pattern.parent.args[1], pattern.i, pattern.j
            steps["J"] = lambda s: sp.Matrix(w, w, lambda r, c: written_out(
                definition.xreplace({index: s, rows: r, cols: c, **point})))
        return _evaluate(expr.xreplace(point), steps, lambda Y, X: Y.jacobian(list(X)))

    return Op(name, grid=grid, expand=expand)


def tanh_recurrence(name, steps, width, t, W_hh, dh_0, dh_T, grid):
    """``h_t = tanh(h_{t-1} W_hh + c_t)`` (``c_t`` standing for ``x_t W_xh + b``), a loss of ``h_T``.

    ``dh_0`` is the gradient that reaches the initial state, ``dh_T`` the one arriving at the
    last; ``D_t`` comes from the derivation's own definition of it.
    """

    @functools.lru_cache(maxsize=None)
    def written_out(T_: int, w: int):
        W = sp.ImmutableMatrix(w, w, lambda r, c: sp.Symbol(f"W_{r}{c}", real=True))
        inputs = [sp.Matrix(1, w, lambda r, c, s=s: sp.Symbol(f"c{s}_{c}", real=True)) for s in range(T_ + 1)]
        ys = sp.Matrix(1, w, lambda r, c: sp.Dummy(f"y{c}"))

        def step(previous, s):
            return (previous * W + inputs[s]).applyfunc(tanh)

        hs = {0: sp.Matrix(1, w, lambda r, c: sp.Symbol(f"h0_{c}", real=True))}
        for s in range(1, T_ + 1):
            hs[s] = step(hs[s - 1], s)
        loss = sp.Function("ell")(*ys)
        at_top = dict(zip(ys, hs[T_]))
        # d h_s / d h_{s-1}: the step's derivative at its own input
        jacobians = {s: step(ys, s).jacobian(list(ys)).subs(dict(zip(ys, hs[s - 1]))) for s in range(1, T_ + 1)}
        grads = {dh_0.name: sp.ImmutableMatrix(1, w, lambda r, c: sp.diff(loss.xreplace(at_top), hs[0][c])),
                 dh_T.name: sp.ImmutableMatrix(1, w, lambda r, c: sp.diff(loss, ys[c]).subs(at_top))}
        return W, hs, jacobians, grads

    def expand(expr, point, where=()):
        W, hs, jacobians, grads = written_out(int(point[steps]), int(point[width]))
        _, d_definition = _definition(where, "D")
        expr = expr.xreplace(point)
        expr = expr.replace(lambda e: isinstance(e, sp.MatrixSymbol) and e.name == W_hh.name, lambda e: W)
        expr = expr.replace(lambda e: isinstance(e, sp.MatrixSymbol) and e.name in grads, lambda e: grads[e.name])

        def diagonal(s):
            return _evaluate(d_definition.xreplace({t: s, **point}), {"h": hs.__getitem__}, None).as_explicit()

        def jacobian(Y, X):
            return jacobians[next(s for s in hs if hs[s] == Y)]

        return _evaluate(expr, {"h": hs.__getitem__, "D": diagonal}, jacobian)

    return Op(name, grid=grid, expand=expand)
