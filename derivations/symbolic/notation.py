"""The site's notation as SymPy objects: names, sizes, and the operations the claims use.

A claim's formula is built from these objects once; the checker (``proof.py``) gives them
their meaning and ``printer.py`` writes them as the pages do, so what a page shows is what
SymPy proved. Beyond SymPy's own: implicit sums (:class:`Contraction`), row sums, softmax,
the head rearrangements, entrywise tanh, the normal distribution function, expectations,
and the steps of a chain of symbolic length.
"""

from __future__ import annotations

import re

import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixElement, MatrixExpr
from sympy.printing.latex import LatexPrinter

# ----------------------------------------------------------------------------- names

# Index symbols, as on the notation page: i query, j/k key, a/b feature, m/n free indices
# of a derivative, t token or row, v vocabulary entry.
i, j, k, m, n, a, b, t, v = sp.symbols("i j k m n a b t v", integer=True, nonnegative=True)
LOWER = (m, n, v)  # in a delta, these indices go below: \delta^{i}_{m}

_TEX: dict[str, str] = {}  # MatrixSymbol name -> its LaTeX, when SymPy's own would be wrong


def size(name: str, words: str) -> sp.Symbol:
    """A size symbol (``n_q``); ``words`` is how a badge names it ("queries")."""
    symbol = sp.Symbol(name, integer=True, positive=True)
    if SIZE_WORDS.setdefault(symbol, words) != words:
        raise ValueError(f"size {name!r} already means {SIZE_WORDS[symbol]!r}, not {words!r}: give it another name")
    return symbol


SIZE_WORDS: dict[sp.Symbol, str] = {}


def matrix(name: str, rows, cols, tex: str | None = None) -> sp.MatrixSymbol:
    """A named matrix of the site; ``tex`` when its LaTeX is not SymPy's (``xhat`` -> ``\\hat{x}``)."""
    if tex is not None:
        name_tex(name, tex)
    return sp.MatrixSymbol(name, rows, cols)


def name_tex(name: str, tex: str) -> None:
    """Print the name ``name`` (a matrix, an indexed base, a symbol) as ``tex``."""
    if _TEX.setdefault(name, tex) != tex:
        raise ValueError(f"{name!r} already printed as {_TEX[name]!r}, not {tex!r}")


def grad(X: sp.MatrixSymbol) -> sp.MatrixSymbol:
    """The gradient of the loss with respect to ``X``: the matrix ``dX``, printed ``\\partial L/\\partial X``."""
    return sp.MatrixSymbol("d" + X.name, *X.shape)


def gradient_of(name: str) -> str | None:
    """``"V"`` for ``"dV"``: the quantity a gradient's name refers to (None for other names)."""
    return name[1:] if name.startswith("d") and len(name) > 1 and name != "d" else None


def name_of(name: str, default=""):
    """The LaTeX of a name: as registered (``xhat`` -> ``\\hat{x}``), else SymPy's (``W_hh`` -> ``W_{hh}``);
    with ``default=None``, None for a name nobody registered."""
    if name in _TEX or default is None:
        return _TEX.get(name)
    return LatexPrinter()._print_Symbol(sp.Symbol(name))


# ----------------------------------------------------------------------------- vocabulary


class Contraction(sp.Sum):
    """A sum the page leaves implicit: the summation convention (a repeated index is summed)."""


class RowSum(MatrixExpr):
    """``rowsum(X)``: every entry of a row replaced by the row's sum (same shape as ``X``)."""

    def __new__(cls, X):
        return super().__new__(cls, sp.sympify(X))

    @property
    def shape(self):
        return self.args[0].shape

    def _entry(self, r, c, **kwargs):
        X = self.args[0]
        s = sp.Dummy("s", integer=True, nonnegative=True)
        return sp.Sum(X[r, s], (s, 0, X.shape[1] - 1))


class Softmax(MatrixExpr):
    """Row softmax ``A^{ij} = e^{S^{ij}} / sum_k e^{S^{ik}}``; ``causal=True`` keeps only ``j <= i``."""

    def __new__(cls, S, causal=False):
        return super().__new__(cls, sp.sympify(S), sp.true if causal else sp.false)

    @property
    def shape(self):
        return self.args[0].shape

    def _entry(self, r, c, **kwargs):
        S, causal = self.args
        s = sp.Dummy("s", integer=True, nonnegative=True)
        top = S.shape[1] - 1
        if causal == sp.true:
            if (c > r) == sp.true:
                return sp.Integer(0)
            top = r
        value = sp.exp(S[r, c]) / sp.Sum(sp.exp(S[r, s]), (s, 0, top))
        return value if causal != sp.true or (c <= r) == sp.true else sp.Piecewise((value, c <= r), (0, True))


class Split(MatrixExpr):
    """``split(X, h)``: the ``h`` column blocks of ``X`` stacked as row blocks (head ``k`` is block ``k``)."""

    def __new__(cls, X, heads):
        return super().__new__(cls, sp.sympify(X), sp.sympify(heads))

    @property
    def shape(self):
        X, h = self.args
        return (h * X.shape[0], X.shape[1] / h)

    def _entry(self, r, c, **kwargs):
        X, h = self.args
        rows = X.shape[0]
        return X[r % rows, (r // rows) * (X.shape[1] / h) + c]


class Concat(MatrixExpr):
    """``concat(H, h)``: the inverse of :class:`Split`, row blocks placed side by side."""

    def __new__(cls, H, heads):
        return super().__new__(cls, sp.sympify(H), sp.sympify(heads))

    @property
    def shape(self):
        H, h = self.args
        return (H.shape[0] / h, h * H.shape[1])

    def _entry(self, r, c, **kwargs):
        H, h = self.args
        width = H.shape[1]
        return H[(c // width) * (H.shape[0] / h) + r, c % width]


class tanh(sp.Function):  # noqa: N801 - printed and evaluated as tanh
    """``tanh`` known only by ``tanh' = 1 - tanh^2``: all a backward pass uses, and without
    SymPy's automatic simplifications of ``tanh(...)``, which cost seconds on long arguments."""

    def fdiff(self, argindex=1):
        return 1 - tanh(self.args[0]) ** 2

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sp.tanh(x).rewrite(sp.exp)

    def _eval_evalf(self, prec):
        return sp.tanh(self.args[0])._eval_evalf(prec)


class Tanh(MatrixExpr):
    """``tanh`` applied to every entry."""

    def __new__(cls, X):
        return super().__new__(cls, sp.sympify(X))

    @property
    def shape(self):
        return self.args[0].shape

    def _entry(self, r, c, **kwargs):
        return tanh(self.args[0][r, c])


class Phi(sp.Function):
    """The standard normal distribution function."""

    def fdiff(self, argindex=1):
        return phi(self.args[0])

    def _eval_rewrite_as_erf(self, x, **kwargs):
        return (1 + sp.erf(x / sp.sqrt(2))) / 2

    def _eval_evalf(self, prec):
        return self.rewrite(sp.erf)._eval_evalf(prec)


class phi(sp.Function):  # noqa: N801 - the density is lower-case phi, as on the page
    """The standard normal density."""

    def fdiff(self, argindex=1):
        x = self.args[0]
        return -x * phi(x)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sp.exp(-(x**2) / 2) / sp.sqrt(2 * sp.pi)

    def _eval_evalf(self, prec):
        return self.rewrite(sp.exp)._eval_evalf(prec)


class Expect(sp.Function):
    """``E[x]``, evaluated by the claim's moment rules (see ``flow.py``)."""


class Var(sp.Function):
    """``Var(x) = E[x^2] - E[x]^2``."""


class Norm(sp.Function):
    """The Euclidean norm of a row vector."""


class Ordered(MatrixExpr):
    """The matrix product ``body(top) body(top - 1) ... body(bottom)``, printed with ``\\cdots``.

    Its length is a symbol (the depth, the number of time steps), so only an op that knows
    what its steps are can expand it at a size (``Op.expand``).
    """

    def __new__(cls, body, index, top, bottom):
        return super().__new__(cls, body, index, sp.sympify(top), sp.sympify(bottom))

    @property
    def shape(self):
        return self.args[0].shape


class Step(MatrixExpr):
    """A quantity of step ``index`` of a chain (``h_{t}``, ``J_{l}``), defined by its op at each size."""

    def __new__(cls, name, index, rows, cols):
        name = sp.Symbol(name) if isinstance(name, str) else name
        return super().__new__(cls, name, sp.sympify(index), sp.sympify(rows), sp.sympify(cols))

    @property
    def shape(self):
        return self.args[2], self.args[3]

    def _entry(self, r, c, **kwargs):
        return MatrixElement(self, r, c)


class Diag(MatrixExpr):
    """``diag(v)`` of a row vector ``v``: the square matrix with ``v`` on its diagonal."""

    def __new__(cls, v):
        return super().__new__(cls, v)

    @property
    def shape(self):
        return self.args[0].shape[1], self.args[0].shape[1]

    def _entry(self, r, c, **kwargs):
        return sp.KroneckerDelta(r, c) * self.args[0][0, r]


class Independent(sp.Function):
    """A hypothesis: its arguments are independent random variables (printed, the check assumes it)."""


class Distributed(sp.Function):
    """``Distributed(z, mean, variance)``: ``z`` is normal with that mean and variance."""

    def density(self):
        z, mean, variance = self.args
        return sp.exp(-((z - mean) ** 2) / (2 * variance)) / sp.sqrt(2 * sp.pi * variance)


class Jacobian(MatrixExpr):
    """``dY/dX`` of two row vectors: entry ``(p, q)`` is ``d Y^p / d X^q``."""

    def __new__(cls, Y, X):
        return super().__new__(cls, Y, X)

    @property
    def shape(self):
        return self.args[0].shape[1], self.args[1].shape[1]


def tex_function(tex: str, subscript: bool = False):
    """A named function printed ``tex(x)``, or ``tex_{x}`` with ``subscript`` (a sequence ``m_{t}``).

    Its meaning comes from a definition (``where``) or from its op's ``functions``.
    """
    return type(re.sub(r"\W", "", tex) or "F", (sp.Function,), {"_site_tex": tex, "_subscript": subscript})
