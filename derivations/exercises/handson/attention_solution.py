"""Hands-on: scaled dot-product attention from scratch (reference solution)."""

import numpy as np

from derivations.reference import attention


def my_attention(Q, K, V, mask=None):
    """Return ``(O, A)``: the output ``[n_q, d_v]`` and the weights ``[n_q, n_k]``.

    ``mask`` (optional, booleans ``[n_q, n_k]``) is True where a query may attend to a key.
    """
    scores = Q @ K.T / np.sqrt(Q.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)  # exp(-inf) is exactly 0: masked keys get no weight
    # Subtracting the row maximum changes no weight but keeps exp from overflowing. (A row with every
    # key masked would give -inf - -inf = NaN here; the reference guards that case, causal masks never hit it.)
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    A = e / e.sum(axis=-1, keepdims=True)
    return A @ V, A


def check(implementation):
    """Compare ``implementation`` with the reference, with and without a causal mask; True if it agrees."""
    rng = np.random.default_rng(0)
    Q, K, V = rng.normal(size=(5, 8)), rng.normal(size=(5, 8)), rng.normal(size=(5, 3))
    worst = 0.0
    for mask in (None, np.tril(np.ones((5, 5), dtype=bool))):
        try:
            O, A = implementation(Q, K, V, mask)
        except NotImplementedError as error:
            print("not yet:", error)
            return False
        O_ref, (_, _, _, A_ref) = attention(Q, K, V, mask)
        worst = max(worst, np.abs(O - O_ref).max(), np.abs(A - A_ref).max())
    print(f"largest difference from the reference: {worst:.1e}")
    return bool(worst < 1e-12)


def main():
    """Run the check, then show a causal example; return what was measured."""
    agrees = check(my_attention)
    rng = np.random.default_rng(1)
    Q, K, V = rng.normal(size=(6, 4)), rng.normal(size=(6, 4)), rng.normal(size=(6, 2))
    causal = np.tril(np.ones((6, 6), dtype=bool))
    O, A = my_attention(Q, K, V, causal)
    O_ref, (_, _, _, A_ref) = attention(Q, K, V, causal)
    max_difference = max(np.abs(O - O_ref).max(), np.abs(A - A_ref).max())
    rows_sum_to_one = np.allclose(A.sum(axis=1), 1.0)
    masked_are_zero = not A[~causal].any()
    print("rows of A sum to 1:", rows_sum_to_one, "| masked weights exactly 0:", masked_are_zero)
    print(A.round(3))
    return {"max_difference": max_difference, "all_good": agrees and rows_sum_to_one and masked_are_zero}


if __name__ == "__main__":
    measured = main()
