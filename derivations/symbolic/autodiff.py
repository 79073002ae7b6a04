"""Claims of the autodiff-engines chapter: the tape's chain rule, forward and reverse mode as
transposes, the LSTM's cell-state path, and the patch embedding as unfold plus a product.

Ops, one per statement (``x`` an input, ``y`` an intermediate, ``z`` an output of a recorded
node; ``i``/``j`` their components, ``n`` the input component asked about)::

    tape            y = F(x),  z = G(x, y),  L = ell(z)       F, G, ell any differentiable functions
    linearisation   y = F(x),  L = ell(y); a tangent x' and its image y' = J x'
    LSTM cell       c_t = f * c_{t-1} + i * g,  h_t = o * tanh(c_t)     (gates: functions of x_t, h_{t-1})
    patch embedding Y = conv_P(X, K): a convolution whose stride equals its kernel side P

The tape and the linearisation hold for arbitrary functions, so SymPy checks them at grid
sizes with every component an undefined function; the LSTM cell for all sizes; the patch
embedding at grid sizes, where its index arithmetic is explicit. The patch embedding's grid has
one token feature: each feature's column of ``Y`` uses only its own row of ``K``, so a second
feature would repeat the same check, at four times the cost (the checker differentiates the
whole pairing once per entry).
"""

from __future__ import annotations

import functools

import sympy as sp

from .chain import chain_expand, dx, dy, n_x, n_y, x, y
from .flow import B, d_h
from .notation import Contraction, Tanh, grad, i, j, matrix, n, name_tex, size
from .proof import Partial
from .registry import Claim, Op, define

D, odot, ones = sp.Derivative, sp.HadamardProduct, sp.OneMatrix

# ----------------------------------------------------------------------------- the tape

n_z = size("n_z", "output components")
z = matrix("z", 1, n_z)
dz = grad(z)


@functools.lru_cache(maxsize=None)
def _tape(nx: int, ny: int, nz: int):
    """``L = ell(G(x, F(x)))`` written out: ``F``, ``G`` and ``ell`` undefined functions.

    ``G`` takes ``x`` and ``y`` as separate arguments, so its partial derivatives are SymPy's
    own ``fdiff`` of an argument slot: the very objects SymPy's chain rule produces when it
    differentiates ``L`` with respect to ``x`` (the left side of the claim).
    """
    xs = sp.symbols(f"x_0:{nx}", real=True)
    ys = sp.symbols(f"y_0:{ny}", real=True)
    F = [sp.Function(f"F_{k}")(*xs) for k in range(ny)]
    G = [sp.Function(f"G_{k}")(*xs, *ys).xreplace(dict(zip(ys, F))) for k in range(nz)]
    loss = sp.Function("ell")(*G)
    return {
        "dx": [sp.diff(loss, s) for s in xs],  # the total derivative, by SymPy's chain rule
        "dz": [loss.fdiff(k + 1) for k in range(nz)],
        "dG/dx": [[g.fdiff(q + 1) for q in range(nx)] for g in G],  # through the direct argument
        "dG/dy": [[g.fdiff(nx + q + 1) for q in range(ny)] for g in G],
        "dF/dx": [[f.fdiff(q + 1) for q in range(nx)] for f in F],
    }


def _tape_expand(expr, point, where=()):
    """At a size, the tape's gradients and local derivatives as SymPy objects (see :func:`_tape`)."""
    tape = _tape(int(point[n_x]), int(point[n_y]), int(point[n_z]))

    def numeric(e):
        return e.i.is_Integer and e.j.is_Integer

    def partial(e):
        (out, variable) = e.args
        if not (numeric(out) and numeric(variable)):
            return e
        key = {("z", "x"): "dG/dx", ("z", "y"): "dG/dy", ("y", "x"): "dF/dx"}[(out.parent.name, variable.parent.name)]
        return tape[key][int(out.j)][int(variable.j)]

    def element(e):
        if not numeric(e) or e.parent.name not in ("dx", "dz"):
            return e  # dy is the sum the claim defines; x, y, z appear only inside derivatives
        return tape[e.parent.name][int(e.j)]

    expr = expr.replace(lambda e: isinstance(e, Partial), partial)
    return expr.replace(lambda e: isinstance(e, sp.matrices.expressions.matexpr.MatrixElement), element)


tape = Op("a tape: y = F(x), then z = G(x, y)", grid={n_x: (1, 2), n_y: (1, 2), n_z: (1, 2)}, expand=_tape_expand)

# ----------------------------------------------------------------------------- forward and reverse mode

xdot, ydot = matrix("xdot", 1, n_x, tex=r"\dot{x}"), matrix("ydot", 1, n_y, tex=r"\dot{y}")
linearisation = Op("forward and reverse mode of y = F(x)", grid={n_x: (1, 2), n_y: (1, 2)}, expand=chain_expand(x, y))
JVP = (define(ydot[0, i], Contraction(D(y[0, i], x[0, n]) * xdot[0, n], (n, 0, n_x - 1))),)

# ----------------------------------------------------------------------------- the LSTM cell

c_prev, c_t = matrix("c_prev", B, d_h, tex="c_{t-1}"), matrix("c_t", B, d_h, tex="c_{t}")
h_new = matrix("h_new", B, d_h, tex="h_{t}")
f_g, i_g, g_g, o_g = (matrix(f"{name}_gate", B, d_h, tex=name) for name in "figo")
lstm_cell = Op("LSTM cell (the gates depend on x_t and h_{t-1} only)", returns=2, defs=(
    define(c_t, odot(f_g, c_prev) + odot(i_g, g_g)),
    define(h_new, odot(o_g, Tanh(c_t))),
))

# ----------------------------------------------------------------------------- the patch embedding

channels, side = size("C_ch", "channels"), size("P", "patch side")
rows, cols, d_tok = size("n_h", "patch rows"), size("n_w", "patch columns"), size("d_tok", "token features")
name_tex("C_ch", "C")
name_tex("d_tok", "d")


class _Patches(sp.matrices.expressions.MatrixExpr):
    """A rearrangement of image entries into patches (or back), with the sizes that define it.

    Images are stored channel by channel, ``[C P n_h, P n_w]``; patch ``p`` is the one in patch
    row ``p // n_w`` and patch column ``p % n_w``; inside a patch, entries are flattened by
    channel, then row, then column (:func:`derivations.reference.unfold_patches`'s order).
    """

    def __new__(cls, *args):
        obj = super().__new__(cls, *args)
        expected = obj._operand_shape()
        if expected is not None and any(sp.simplify(a - b) != 0 for a, b in zip(args[0].shape, expected)):
            raise sp.matrices.ShapeError(f"{cls.__name__} of a {args[0].shape} matrix, not {expected}")
        return obj

    def _operand_shape(self):
        return None

    @property
    def sizes(self):
        return self.args[-4:]  # C, P, n_h, n_w

    def pixel(self, X, c, row, col):
        C, P, n_h, n_w = self.sizes
        return X[c * P * n_h + row, col]


def _image_shape(C, P, n_h, n_w):
    return C * P * n_h, P * n_w


class PatchConv(_Patches):
    """``conv_P(X, K)``: kernel ``K`` ``[d, C P^2]`` (PyTorch's ``weight.reshape(d, -1)``), stride ``P``.

    Row ``p`` of the result is output position ``(p // n_w, p % n_w)`` (``flatten(2).transpose(1, 2)``);
    its entry for output feature ``o`` is the kernel times the window, summed over channels and offsets.
    """

    def _operand_shape(self):
        return _image_shape(*self.sizes)

    @property
    def shape(self):
        C, P, n_h, n_w = self.sizes
        return n_h * n_w, self.args[1].shape[0]

    def _entry(self, p, o, **kwargs):
        X, K = self.args[:2]
        C, P, n_h, n_w = self.sizes
        return sp.Add(*[K[o, (c * P + r) * P + s] * self.pixel(X, c, P * (p // n_w) + r, P * (p % n_w) + s)
                        for c in range(int(C)) for r in range(int(P)) for s in range(int(P))])

    def _latex(self, printer):
        return r"\operatorname{conv}_{%s}\left(%s, %s\right)" % (
            printer._print(self.sizes[1]), printer._print(self.args[0]), printer._print(self.args[1]))


class Unfold(_Patches):
    """``unfold(X)``: patch ``p`` as row ``p``."""

    def _operand_shape(self):
        return _image_shape(*self.sizes)

    @property
    def shape(self):
        C, P, n_h, n_w = self.sizes
        return n_h * n_w, C * P * P

    def _entry(self, p, q, **kwargs):
        C, P, n_h, n_w = self.sizes
        c, within = q // (P * P), q % (P * P)
        return self.pixel(self.args[0], c, P * (p // n_w) + within // P, P * (p % n_w) + within % P)

    def _latex(self, printer):
        return r"\operatorname{unfold}\left(%s\right)" % printer._print(self.args[0])


class Fold(_Patches):
    """``fold(U)``: rows of patches back into an image, the inverse of :class:`Unfold`."""

    def _operand_shape(self):
        C, P, n_h, n_w = self.sizes
        return n_h * n_w, C * P * P

    @property
    def shape(self):
        return _image_shape(*self.sizes)

    def _entry(self, row, col, **kwargs):
        C, P, n_h, n_w = self.sizes
        c, row = row // (P * n_h), row % (P * n_h)
        return self.args[0][(row // P) * n_w + col // P, (c * P + row % P) * P + col % P]

    def _latex(self, printer):
        return r"\operatorname{fold}\left(%s\right)" % printer._print(self.args[0])


SIZES = (channels, side, rows, cols)
images = matrix("X_img", channels * side * rows, side * cols, tex="X")
kernel = matrix("K_conv", d_tok, channels * side * side, tex="K")
tokens = matrix("Y_tok", rows * cols, d_tok, tex="Y")
PATCHES = {channels: (1, 2), side: (1, 2), rows: (1, 2), cols: (1, 2), d_tok: (1,)}


def _explicit(e):
    """A matrix expression at numeric sizes as one explicit matrix, built from the inside out: each
    entry of a rearrangement is then a lookup, not a symbolic sum SymPy would have to evaluate."""
    if isinstance(e, sp.MatrixSymbol):
        return e.as_explicit()
    if isinstance(e, sp.MatrixBase):
        return e
    rebuilt = e.func(*[_explicit(a) if isinstance(a, (sp.MatrixExpr, sp.MatrixBase)) else a for a in e.args])
    return rebuilt.as_explicit() if isinstance(rebuilt, _Patches) else rebuilt.doit()


def _patch_expand(expr, point, where=()):
    return _explicit(expr) if isinstance(expr, sp.MatrixExpr) else expr


patch_embed = Op("patch embedding: a convolution with stride = kernel side", grid=PATCHES, expand=_patch_expand,
                 defs=(define(tokens, PatchConv(images, kernel, *SIZES)),))

# ----------------------------------------------------------------------------- the claims

CLAIMS = [
    Claim("autodiff.tape.reverse-sweep",
          "The tape's chain rule: nodes visited in reverse, a value's contributions added up", tape,
          dx[0, n], Contraction(dz[0, i] * D(z[0, i], x[0, n]), (i, 0, n_z - 1))
          + Contraction(dy[0, j] * D(y[0, j], x[0, n]), (j, 0, n_y - 1)),
          where=(define(dy[0, j], Contraction(dz[0, i] * D(z[0, i], y[0, j]), (i, 0, n_z - 1))),),
          no_impl="the engine's backward (derivations.autodiff.backward); tests/test_autodiff_engine.py checks it"),
    Claim("autodiff.jvp-vjp-transpose",
          "Reverse mode is the linearised function transposed",
          linearisation, Contraction(dy[0, i] * ydot[0, i], (i, 0, n_y - 1)),
          Contraction(dx[0, n] * xdot[0, n], (n, 0, n_x - 1)), where=JVP,
          no_impl="the engine's jvp and vjp (derivations.autodiff); tests/test_autodiff_engine.py checks them"),
    Claim("lstm.vjp.dc", "LSTM cell backward: the previous cell state, multiplied by the forget gate", lstm_cell,
          grad(c_prev), odot(grad(c_t) + odot(grad(h_new), odot(o_g, ones(B, d_h) - odot(Tanh(c_t), Tanh(c_t)))), f_g),
          impl="lstm_cell_backward:dc"),
    Claim("patch-embed.conv-as-matmul", "A convolution with stride equal to its kernel is unfold, then a product",
          patch_embed, PatchConv(images, kernel, *SIZES), Unfold(images, *SIZES) * kernel.T, impl="patch_embed:tokens"),
    Claim("patch-embed.vjp.dimages", "Patch embedding backward: the images (fold is the adjoint of unfold)",
          patch_embed, grad(images), Fold(grad(tokens) * kernel, *SIZES), impl="patch_embed_backward:dimages"),
    Claim("patch-embed.vjp.dkernel", "Patch embedding backward: the kernel", patch_embed,
          grad(kernel), grad(tokens).T * Unfold(images, *SIZES), impl="patch_embed_backward:dW (transposed)"),
]

DERIVATIONS: list = []
