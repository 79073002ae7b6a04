"""Hands-on: scaled dot-product attention from scratch (starter: fill in the TODOs, then run it)."""

import numpy as np

from derivations.reference import attention


def my_attention(Q, K, V, mask=None):
    """Return ``(O, A)``: the output ``[n_q, d_v]`` and the weights ``[n_q, n_k]``.

    ``mask`` (optional, booleans ``[n_q, n_k]``) is True where a query may attend to a key.
    """
    # TODO 1: the scores Q K^T / sqrt(d_k), with d_k the last axis of Q
    # TODO 2: where the mask is False, set the score to -inf (np.where)
    # TODO 3: a softmax over each row: subtract the row maximum, exponentiate, divide by the row sum
    # TODO 4: the output is the weights times V
    raise NotImplementedError("my_attention is not written yet")


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
    print("agrees with the reference:", check(my_attention))


if __name__ == "__main__":
    main()
