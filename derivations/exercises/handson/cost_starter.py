"""Hands-on: attention's memory and arithmetic against sequence length (starter: fill in the TODOs)."""

import time

import numpy as np

from derivations.reference import attention

LENGTHS = (64, 128, 256, 512, 1024)


def measure(n, d_head=64, seed=0):
    """Bytes the reference attention keeps for its backward pass, FLOPs of its two products, seconds."""
    rng = np.random.default_rng(seed)
    Q, K, V = (rng.normal(size=(n, d_head)) for _ in range(3))
    start = time.perf_counter()
    _, cache = attention(Q, K, V)
    seconds = time.perf_counter() - start
    saved_bytes = None  # TODO: the bytes of every array in the cache: Q, K, V and the weights A (array.nbytes)
    flops = None  # TODO: 2 n^2 d for Q K^T plus 2 n^2 d for A V
    return saved_bytes, flops, seconds


def slope(lengths, values):
    """The growth exponent between the last two lengths: log(v2 / v1) / log(n2 / n1)."""
    # TODO
    raise NotImplementedError("slope is not written yet")


def main():
    rows = [measure(n) for n in LENGTHS]
    for n, (saved, flops, seconds) in zip(LENGTHS, rows):
        print(f"n = {n:5}: {saved} bytes, {flops} FLOPs, {seconds * 1e3:.1f} ms")
    try:
        print("memory exponent:", slope(LENGTHS, [r[0] for r in rows]))
    except (NotImplementedError, TypeError) as error:
        print("not yet:", error)


if __name__ == "__main__":
    main()
