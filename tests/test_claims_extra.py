"""Wrong claims the checker must reject, beyond the mutation families of ``test_claims.py``.

Two checks of the earlier registry that its rebuild (issue 7) did not carry over, restored
here for the current claim objects (``Claim.rhs`` instead of a ``check`` with a ``claimed``
callable):

- a constant added to one entry of every claimed expression (the old generic mutation
  "one entry shifted"): the mutations of ``test_claims.py`` scale, negate, transpose and drop
  terms, factors and indices, but none shifts a claim by a constant, which a checker that
  compared only derivatives, or rounded small differences away, would miss;
- the heads of a split taken in the wrong order: only a grid with two heads or more, compared
  entry by entry, tells it from the right split.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixExpr

from derivations.symbolic import CLAIMS, get_claim, layers
from derivations.symbolic.notation import Split, grad
from derivations.symbolic.verify import verify_claim

# One worker runs the claims' tests: the proof engine keeps each op's meanings (proof.meaning_of), and
# test_claims uses the same ones; spread over two workers, each would build them all again.
pytestmark = pytest.mark.xdist_group("claims")

SHIFT = sp.Rational(1, 7)


class Corner(MatrixExpr):
    """A ``rows x cols`` matrix that is 0 everywhere but ``SHIFT`` at ``[0, 0]``."""

    def __new__(cls, rows, cols):
        return super().__new__(cls, sp.sympify(rows), sp.sympify(cols))

    @property
    def shape(self):
        return self.args

    def _entry(self, r, c, **kwargs):
        return sp.KroneckerDelta(r, 0) * sp.KroneckerDelta(c, 0) * SHIFT


def shifted(expr):
    """``expr`` with ``SHIFT`` added to its first entry (to the value itself for a scalar or an index claim)."""
    return expr + Corner(*expr.shape) if isinstance(expr, MatrixExpr) else expr + SHIFT


def _parts(claim) -> list[int | None]:
    return list(range(len(claim.rhs.args))) if isinstance(claim.rhs, sp.Tuple) else [None]


SHIFTS = [(claim.id, part) for claim in CLAIMS for part in _parts(claim)]


@pytest.mark.parametrize(("claim_id", "part"), SHIFTS, ids=[f"{c}-{p}" if p is not None else c for c, p in SHIFTS])
def test_checker_rejects_one_entry_shifted(claim_id: str, part: int | None) -> None:
    claim = get_claim(claim_id)
    if part is None:
        wrong = replace(claim, rhs=shifted(claim.rhs))
    else:
        wrong = replace(claim, rhs=sp.Tuple(*[shifted(x) if q == part else x for q, x in enumerate(claim.rhs.args)]))
    result = verify_claim(wrong)
    assert not result.ok, f"{claim_id}: {SHIFT} added to part {part} was accepted"
    assert result.detail.startswith("differs at"), result.detail  # a counterexample, not a crash of the checker


class ReversedSplit(Split):
    """``split(X, h)`` with the heads in reverse order: head ``k`` gets column block ``h - 1 - k``."""

    def _entry(self, r, c, **kwargs):
        X, h = self.args
        rows = X.shape[0]
        return X[r % rows, (h - 1 - r // rows) * (X.shape[1] / h) + c]


def test_heads_in_the_wrong_order_are_rejected() -> None:
    claim = get_claim("multi-head.concat-vjp")
    same_order = type("SplitCopy", (Split,), {})  # the control: a subclass that keeps the order is accepted
    assert verify_claim(replace(claim, rhs=same_order(grad(layers.Cat), layers.heads))).ok
    result = verify_claim(replace(claim, rhs=ReversedSplit(grad(layers.Cat), layers.heads)))
    assert not result.ok and result.detail.startswith("differs at"), result.detail


def test_the_whole_run_proves_first_and_reports_a_failure_in_numbers() -> None:
    """``verify_all`` (the build's and the command's run) skips the screen for items that hold,
    and still rejects a wrong one: proven wrong, then given the screen's numeric counterexample."""
    from derivations.symbolic.verify import _proven_then_screened

    claim = get_claim("softmax.vjp")
    assert _proven_then_screened(claim).ok
    whole = _proven_then_screened(replace(claim, rhs=shifted(claim.rhs)))
    parts = [_proven_then_screened(replace(claim, rhs=shifted(claim.rhs)), (k, 2)) for k in range(2)]
    for result in [whole, *parts]:
        assert not result.ok and "numeric screen" in result.detail, result.detail
