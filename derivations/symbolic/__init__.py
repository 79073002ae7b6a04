"""SymPy claims: every derivative the site states, with the check that proves it.

``CLAIMS`` is the registry, one entry per stated derivative, in the order the
chapters use them. Pages cite claims by id; ``python -m derivations verify``
decides them all.
"""

from __future__ import annotations

from . import attention, layers
from . import flow
from .registry import Claim, ExprIdentity, IndexIdentity, VJPIdentity

CLAIMS: list[Claim] = [*attention.CLAIMS, *layers.CLAIMS, *flow.CLAIMS]

_BY_ID = {c.id: c for c in CLAIMS}
if len(_BY_ID) != len(CLAIMS):
    raise RuntimeError("duplicate claim id in derivations.symbolic")


def get_claim(claim_id: str) -> Claim:
    """The claim with this id; ``KeyError`` naming the id and the known ids otherwise."""
    try:
        return _BY_ID[claim_id]
    except KeyError:
        raise KeyError(f"unknown claim id {claim_id!r}; known: {', '.join(_BY_ID)}") from None


__all__ = ["CLAIMS", "Claim", "ExprIdentity", "IndexIdentity", "VJPIdentity", "get_claim"]
