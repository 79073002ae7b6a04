"""The printer: the site's notation written from the SymPy objects of ``notation.py``.

Components with upper indices (``Q^{ia}``), ``\\delta^{i}_{m}``, ``\\frac{\\partial L}{\\partial X}``
for the matrix named ``dX``, ``\\top`` for transposes, ``\\odot`` for entrywise products, sums
left implicit where the page's summation convention says so (:class:`~.notation.Contraction`).
Factors are ordered the same way everywhere: a constant coefficient first, then deltas,
components, gradients, derivatives, and sums or brackets last.
"""

from __future__ import annotations

import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixElement, MatrixExpr
from sympy.printing.latex import LatexPrinter

from .notation import LOWER, SIZE_WORDS, Contraction, gradient_of, name_of

def _is_gradient(X) -> bool:
    return isinstance(X, sp.MatrixSymbol) and gradient_of(X.name) is not None and X.name[1:2].isalpha()


def _index_list(element: MatrixElement) -> list:
    """The indices a component shows: a row vector drops its row, a column vector its column."""
    rows, cols = element.parent.shape
    if rows == 1 and cols != 1:
        return [element.j]
    if cols == 1 and rows != 1:
        return [element.i]
    return [element.i, element.j]


def _is_constant(factor) -> bool:
    """A factor printed as the leading coefficient: a number, or made of numbers and sizes (``1/sqrt(d_k)``)."""
    if factor.is_number:
        return True
    if factor.atoms(MatrixElement, sp.Indexed, sp.MatrixSymbol, sp.KroneckerDelta, sp.Sum, sp.Function):
        return False
    return factor.free_symbols <= set(SIZE_WORDS)


class SitePrinter(LatexPrinter):
    """SymPy's LaTeX printer with the site's notation (see the module docstring)."""

    def __init__(self):
        super().__init__({"order": "none", "mul_symbol": None})

    # --- names and components
    def _print_Symbol(self, e, style="plain"):
        return name_of(e.name, None) or super()._print_Symbol(e, style)

    def _print_MatrixSymbol(self, X):
        if _is_gradient(X):
            return r"\frac{\partial L}{\partial %s}" % name_of(X.name[1:])
        return name_of(X.name)

    def _indices(self, indices) -> str:
        parts = [self._print(x) for x in indices]
        simple = all(isinstance(x, (sp.Symbol, sp.Integer)) for x in indices)
        return "".join(parts) if simple else r",\,".join(parts)

    def _print_MatrixElement(self, e):
        indices = self._indices(_index_list(e))
        if _is_gradient(e.parent):
            return r"\frac{\partial L}{\partial %s^{%s}}" % (name_of(e.parent.name[1:]), indices)
        return "%s^{%s}" % (self._print(e.parent), indices)

    def _print_Indexed(self, e):
        return "%s^{%s}" % (name_of(str(e.base)), self._indices(e.indices))

    def _print_KroneckerDelta(self, e, exp=None):
        upper, lower = e.args[:2]
        if upper in LOWER and lower not in LOWER:
            upper, lower = lower, upper
        tex = r"\delta^{%s}_{%s}" % (self._print(upper), self._print(lower))
        return tex if exp is None else r"\left(%s\right)^{%s}" % (tex, exp)

    # --- matrix operations
    def _print_Transpose(self, e):
        X = e.arg
        inner = self._print(X)
        if not isinstance(X, sp.MatrixSymbol) or _is_gradient(X):
            inner = r"\left(%s\right)" % inner
        return r"%s^{\top}" % inner

    def _print_HadamardPower(self, e):
        base, exponent = e.args
        if exponent == 2:  # SymPy writes h * h as a Hadamard power; the page writes h (.) h
            return r"%s \odot %s" % (self._wrap_matrix(base), self._wrap_matrix(base))
        return r"%s^{\circ %s}" % (self._wrap_matrix(base), self._print(exponent))

    def _print_HadamardProduct(self, e):
        return r" \odot ".join(self._wrap_matrix(x) for x in e.args)

    def _wrap_matrix(self, x):
        text = self._print(x)
        return r"\left(%s\right)" % text if isinstance(x, (sp.MatAdd, sp.HadamardProduct)) else text

    def _print_MatMul(self, e):
        coefficient, factors = e.as_coeff_matrices()
        text = " ".join(self._wrap_matrix(x) for x in factors)
        return self._with_coefficient(coefficient, text)

    def _print_MatAdd(self, e):
        return self._join_terms(list(e.args))

    def _print_ElementwiseApplyFunction(self, e):
        """``Phi(Z)`` for a function applied to every entry of ``Z``."""
        body = e.function.expr
        if isinstance(body, sp.Function) and body.args == e.function.variables:
            return "%s\\left(%s\\right)" % (self._function_name(body), self._print(e.expr))
        return super()._print_ElementwiseApplyFunction(e)

    def _function_name(self, applied) -> str:
        tex = self._print(applied.func(sp.Symbol("_")))
        return tex[: tex.index(r"\left(")] if r"\left(" in tex else tex

    def _print_RowSum(self, e):
        return r"\operatorname{rowsum}\left(%s\right)" % self._print(e.args[0])

    def _print_Softmax(self, e):
        return r"\operatorname{softmax}\left(%s\right)" % self._print(e.args[0])

    def _print_Split(self, e):
        return r"\operatorname{split}\left(%s\right)" % self._print(e.args[0])

    def _print_Concat(self, e):
        return r"\operatorname{concat}\left(%s\right)" % self._print(e.args[0])

    def _print_Tanh(self, e):
        return r"\tanh\left(%s\right)" % self._print(e.args[0])

    def _print_OneMatrix(self, e):
        return r"\mathbf{1}"

    # --- scalars
    def _print_Add(self, e, order=None):
        return self._join_terms(list(e.args))

    def _join_terms(self, terms) -> str:
        """Terms with a plus sign first, then those with a minus sign, each group in SymPy's order."""
        def negative(term):
            coefficient = term.as_coeff_Mul()[0] if not isinstance(term, MatrixExpr) else term.as_coeff_mmul()[0]
            return coefficient.is_number and coefficient < 0

        def first(term):  # numbers and deltas lead: 1 - tanh^2, delta - A
            return not (term.is_number or isinstance(term, sp.KroneckerDelta))

        ordered = sorted((x for x in terms if not negative(x)), key=first) + [x for x in terms if negative(x)]
        text = ""
        for position, term in enumerate(ordered):
            if negative(term):
                body = self._print(-term)
                text += " - " + (r"\left(%s\right)" % body if isinstance(-term, (sp.Add, sp.MatAdd)) else body)
            else:
                text += (" + " if position else "") + self._print(term)
        return text

    def _with_coefficient(self, coefficient, text: str) -> str:
        if coefficient == 1:
            return text
        if coefficient == -1:
            return "- " + text
        sign = "- " if coefficient.could_extract_minus_sign() else ""
        c = -coefficient if sign else coefficient
        return sign + self._coefficient(c) + " " + text

    def _coefficient(self, c) -> str:
        """``\\frac{1}{\\sqrt{d_k}}``, ``\\sqrt{\\frac{2}{\\pi}}``, ``\\frac{1}{D}``: a positive constant factor."""
        square = sp.simplify(c**2)
        if any(not p.exp.is_Integer for p in c.atoms(sp.Pow)) and square.is_positive \
                and all(p.exp.is_Integer for p in square.atoms(sp.Pow)):
            top, bottom = sp.fraction(square)
            if top == 1:
                return r"\frac{1}{\sqrt{%s}}" % self._print(bottom)
            return r"\sqrt{%s}" % (self._print(top) if bottom == 1 else r"\frac{%s}{%s}" % (self._print(top), self._print(bottom)))
        top, bottom = sp.fraction(c)
        if bottom == 1:
            return self._print(top)
        return r"\frac{%s}{%s}" % (self._print(top), self._print(bottom))

    def _factor_rank(self, factor) -> int:
        """Order of factors in a product: deltas, values, gradients, derivatives, sums, brackets."""
        if isinstance(factor, sp.KroneckerDelta):
            return 0
        if isinstance(factor, MatrixElement) and _is_gradient(factor.parent):
            return 3
        if isinstance(factor, sp.Derivative):
            return 4
        if isinstance(factor, (sp.Add, sp.Sum)):
            return 6
        return 2

    def _print_Mul(self, e):
        coefficient, rest = sp.Integer(1), []
        for factor in e.args:
            if _is_constant(factor):
                coefficient *= factor
            else:
                rest.append(factor)
        if not rest:  # a number or a ratio of sizes: SymPy's own layout
            return super()._print_Mul(e)
        numerator = sorted((f for f in rest if not (f.is_Pow and f.exp.is_negative)), key=self._factor_rank)
        denominator = [1 / f for f in rest if f.is_Pow and f.exp.is_negative]
        if not denominator:
            return self._with_coefficient(coefficient, self._product(numerator, alone=coefficient == 1))
        # One fraction: the coefficient's denominator joins the others (x/(D sigma), not 1/D x/sigma).
        sign = -1 if coefficient.could_extract_minus_sign() else 1
        top, bottom_number = sp.fraction(sign * coefficient)
        if any(not p.exp.is_Integer for p in (sign * coefficient).atoms(sp.Pow)):  # 1/sqrt(d_k) stays in front
            top, bottom_number = sign * coefficient, sp.Integer(1)
        bottom = self._product(([bottom_number] if bottom_number != 1 else []) + denominator, alone=True)
        inside = [f for f in numerator if not isinstance(f, (sp.Sum, sp.Derivative))]
        after = [f for f in numerator if isinstance(f, (sp.Sum, sp.Derivative))]
        if len(inside) == 1 and isinstance(inside[0], sp.Add):
            text = r"\frac{%s}{%s}" % (self._print(inside[0]), bottom)
        else:
            after = [f for f in inside if isinstance(f, sp.Add)] + after
            inside = [f for f in inside if not isinstance(f, sp.Add)]
            text = r"\frac{%s}{%s}" % (self._product(inside, alone=True) if inside else "1", bottom)
        if after:
            text += " " + self._product(after, alone=False)
        return self._with_coefficient(sign * top, text)

    def _product(self, factors, alone: bool) -> str:
        """Factors side by side; a sum in brackets unless it stands ``alone`` (nothing else multiplies it)."""
        parts = []
        for position, factor in enumerate(factors):
            text = self._print(factor)
            last = position == len(factors) - 1
            if isinstance(factor, sp.Add) and not (alone and len(factors) == 1):
                text = r"\left(%s\right)" % text
            elif isinstance(factor, sp.Sum) and not last and not isinstance(factor, Contraction):
                text = r"\left(%s\right)" % text
            parts.append(text)
        return " ".join(parts) if parts else "1"

    def _print_Pow(self, e):
        base, exponent = e.args
        if isinstance(base, (MatrixElement, sp.Indexed, sp.Sum, sp.Mul, sp.Heaviside)) and exponent.is_Integer \
                and exponent > 0:
            return r"\left(%s\right)^{%s}" % (self._print(base), self._print(exponent))
        if exponent == -1 and not isinstance(base, sp.Add):
            return r"\frac{1}{%s}" % self._print(base)
        return super()._print_Pow(e)

    def _print_Sum(self, e):
        indices = ",".join(self._print(limit[0]) for limit in e.limits)
        body = self._print(e.function)
        if isinstance(e.function, sp.Add):
            body = r"\left(%s\right)" % body
        if isinstance(e, Contraction):
            return body
        condition = self._delta_condition(e)
        if condition is not None:
            return condition
        return r"\sum_{%s} %s" % (indices, body)

    def _delta_condition(self, e):
        """``sum_t delta(tokens^t, v) f`` printed as ``sum_{t : tokens^t = v} f``."""
        if len(e.limits) != 1 or not isinstance(e.function, sp.Mul):
            return None
        index = e.limits[0][0]
        deltas = [f for f in e.function.args if isinstance(f, sp.KroneckerDelta) and index in f.free_symbols
                  and any(isinstance(x, sp.Indexed) for x in f.args)]
        if len(deltas) != 1:
            return None
        inside, other = sorted(deltas[0].args[:2], key=lambda x: not isinstance(x, sp.Indexed))
        rest = e.function / deltas[0]
        return r"\sum_{%s\,:\,%s = %s} %s" % (self._print(index), self._print(inside), self._print(other), self._print(rest))

    def _print_Derivative(self, e):
        (variable, count), = e.variable_count
        inner = e.expr
        if isinstance(variable, (MatrixElement, sp.Indexed)):
            return r"\frac{\partial %s}{\partial %s}" % (self._print(inner), self._print(variable))
        body = self._print(inner)
        if isinstance(inner, (sp.Add, sp.Mul)):
            body = r"\left(%s\right)" % body
        return r"\frac{d}{d %s} %s" % (self._print(variable), body)

    def _print_Function(self, e, exp=None):
        tex = getattr(type(e), "_site_tex", None)
        if tex is not None:
            arguments = ", ".join(self._print(x) for x in e.args)
            text = r"%s_{%s}" % (tex, arguments) if type(e)._subscript else r"%s\left(%s\right)" % (tex, arguments)
            return text if exp is None else r"%s^{%s}" % (text, exp)
        return super()._print_Function(e, exp)

    def _print_Phi(self, e, exp=None):
        return r"\Phi\left(%s\right)" % self._print(e.args[0])

    def _print_phi(self, e, exp=None):
        return r"\varphi\left(%s\right)" % self._print(e.args[0])

    def _print_Heaviside(self, e, exp=None):
        return r"H\left(%s\right)" % self._print(e.args[0])

    def _print_Expect(self, e, exp=None):
        return r"\mathbb{E}\left[%s\right]" % self._print(e.args[0])

    def _print_Var(self, e, exp=None):
        return r"\operatorname{Var}\left(%s\right)" % self._print(e.args[0])

    def _print_Norm(self, e, exp=None):
        tex = r"\lVert %s \rVert" % self._print(e.args[0])
        return tex if exp is None else r"%s^{%s}" % (tex, exp)

    def _print_Ordered(self, e, exp=None):
        body, index, top, bottom = e.args
        first = self._print(body.subs(index, top))
        second = self._print(body.subs(index, top - 1))
        last = self._print(body.subs(index, bottom))
        return r"%s\,%s \cdots %s" % (first, second, last)

    def _print_Step(self, e):
        name, index = e.args[:2]
        return r"%s_{%s}" % (name_of(str(name)), self._print(index))

    def _print_Jacobian(self, e):
        return r"\frac{\partial %s}{\partial %s}" % (self._print(e.args[0]), self._print(e.args[1]))

    def _print_Diag(self, e):
        return r"\operatorname{diag}\left(%s\right)" % self._print(e.args[0])

    def _print_Independent(self, e, exp=None):
        return r"%s\ \text{independent}" % ", ".join(self._print(x) for x in e.args)

    def _print_Distributed(self, e, exp=None):
        z, mean, variance = e.args
        return r"%s \sim \mathcal{N}\left(%s, %s\right)" % (self._print(z), self._print(mean), self._print(variance))

    def _print_Max(self, e, exp=None):
        tex = r"\max\left(%s\right)" % ", ".join(self._print(x) for x in e.args[::-1])
        return tex if exp is None else r"%s^{%s}" % (tex, exp)

    def _print_Tuple(self, e):
        return r",\qquad ".join(self._print(x) for x in e.args)

    def _print_Equality(self, e):
        return "%s = %s" % (self._print(e.lhs), self._print(e.rhs))


_PRINTER = SitePrinter()


def latex(expr) -> str:
    """The site's LaTeX for a SymPy expression of this vocabulary."""
    return _PRINTER.doprint(expr)


def equation(lhs, rhs) -> str:
    """``lhs = rhs``; tuples of equal length print as equations side by side."""
    if isinstance(lhs, sp.Tuple):
        return r",\qquad ".join(equation(x, y) for x, y in zip(lhs.args, rhs.args))
    return f"{latex(lhs)} = {latex(rhs)}"
