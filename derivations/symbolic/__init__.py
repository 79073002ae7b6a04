"""SymPy claims: every derivative the site states, printed from the expression that is proven.

``CLAIMS`` is the registry, one entry per stated derivative, in the order the chapters use
them; ``DERIVATIONS`` are chains of equalities, each step proven equal to the one before.
Pages cite both by id (``[[claim: id]]``, ``[[derivation: id]]``); ``python -m derivations
verify`` decides them all. A chapter's file (``attention.py``, ``layers.py``, ``flow.py``)
holds its ops (the forward definitions) and its claims as a table; ``notation.py`` prints
them, ``proof.py`` decides them.
"""

from __future__ import annotations

from . import attention, flow, layers
from .registry import KINDS, Claim, Derivation, Op

CLAIMS: list[Claim] = [*attention.CLAIMS, *layers.CLAIMS, *flow.CLAIMS]
DERIVATIONS: list[Derivation] = [*attention.DERIVATIONS, *layers.DERIVATIONS, *flow.DERIVATIONS]

_BY_ID = {item.id: item for item in [*CLAIMS, *DERIVATIONS]}
if len(_BY_ID) != len(CLAIMS) + len(DERIVATIONS):
    raise RuntimeError("duplicate claim or derivation id in derivations.symbolic")


def get_claim(claim_id: str) -> Claim:
    """The claim with this id; ``KeyError`` naming the id and the known ids otherwise."""
    found = _BY_ID.get(claim_id)
    if not isinstance(found, Claim):
        raise KeyError(f"unknown claim id {claim_id!r}; known: {', '.join(c.id for c in CLAIMS)}")
    return found


def get_derivation(derivation_id: str) -> Derivation:
    """The derivation with this id; ``KeyError`` naming the id and the known ids otherwise."""
    found = _BY_ID.get(derivation_id)
    if not isinstance(found, Derivation):
        raise KeyError(f"unknown derivation id {derivation_id!r}; known: {', '.join(d.id for d in DERIVATIONS)}")
    return found


def get_item(item_id: str) -> Claim | Derivation:
    """A claim or a derivation by id (the verifier handles both)."""
    try:
        return _BY_ID[item_id]
    except KeyError:
        raise KeyError(f"unknown claim or derivation id {item_id!r}") from None


for _derivation in DERIVATIONS:  # a derivation that concludes a claim must start and end where the claim does
    if _derivation.concludes is not None:
        _claim = get_claim(_derivation.concludes)
        if (_derivation.steps[0], _derivation.steps[-1], _derivation.op) != (_claim.lhs, _claim.rhs, _claim.op):
            raise RuntimeError(f"derivation {_derivation.id} does not run from {_claim.id}'s left side to its right side")

__all__ = ["CLAIMS", "DERIVATIONS", "KINDS", "Claim", "Derivation", "Op", "get_claim", "get_derivation", "get_item"]
