"""Input validation shared by the reference operations."""

from __future__ import annotations

import numpy as np


def as_float64(x, name: str) -> np.ndarray:
    """``x`` as a float64 array; a ``ValueError`` naming ``name`` if it is not numeric."""
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a numeric array: {error}") from None


def require(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition``: the one way shape errors are reported."""
    if not condition:
        raise ValueError(message)
