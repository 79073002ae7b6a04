"""Hands-on: attention's memory and arithmetic against sequence length (reference solution).

Wall-clock time is not printed: it differs between machines and runs, and this output is part of
a page that must come out the same at every build. ``time_attention`` measures it for you.
"""

import time

import numpy as np

from derivations.reference import attention

LENGTHS = (64, 128, 256, 512, 1024)


def measure(n, d_head=64, seed=0):
    """Bytes the reference attention keeps for its backward pass (all, and the weights A alone), and
    the FLOPs of its two matrix products."""
    rng = np.random.default_rng(seed)
    Q, K, V = (rng.normal(size=(n, d_head)) for _ in range(3))
    _, cache = attention(Q, K, V)
    Q, K, V, A = cache
    saved_bytes = Q.nbytes + K.nbytes + V.nbytes + A.nbytes
    flops = 2 * n * n * d_head + 2 * n * n * d_head  # S = Q K^T, then O = A V
    return saved_bytes, A.nbytes, flops


def time_attention(n, d_head=64, repeats=5):
    """Median seconds of one forward pass (machine-dependent: for your own runs, not for the page)."""
    rng = np.random.default_rng(0)
    Q, K, V = (rng.normal(size=(n, d_head)) for _ in range(3))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        attention(Q, K, V)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def slope(lengths, values):
    """The growth exponent between the last two lengths: log(v2 / v1) / log(n2 / n1)."""
    return float(np.log(values[-1] / values[-2]) / np.log(lengths[-1] / lengths[-2]))


def main():
    rows = [measure(n) for n in LENGTHS]
    print("     n   saved bytes   of which A        FLOPs")
    for n, (saved, weights, flops) in zip(LENGTHS, rows):
        print(f"{n:6} {saved:13,} {weights:12,} {flops:12,}")
    memory, weights, flops = ([r[k] for r in rows] for k in range(3))
    slopes = [slope(LENGTHS[k:k + 2], memory[k:k + 2]) for k in range(len(LENGTHS) - 1)]
    result = {"memory_slope": slopes[-1], "first_slope": slopes[0], "weights_slope": slope(LENGTHS, weights),
              "flops_slope": slope(LENGTHS, flops)}
    print("growth exponents of the saved bytes, length to length:", [round(x, 3) for x in slopes])
    print(f"of the weights A: {result['weights_slope']:.3f}; of the FLOPs: {result['flops_slope']:.3f}")
    result["quadratic"] = (result["flops_slope"] == result["weights_slope"] == 2.0
                           and all(a < b < 2 for a, b in zip(slopes, slopes[1:])))
    return result


if __name__ == "__main__":
    measured = main()
