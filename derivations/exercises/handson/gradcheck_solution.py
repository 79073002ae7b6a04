"""Hands-on: check gradients by central differences (reference solution)."""

import numpy as np

from derivations.reference import attention, attention_backward


def numerical_gradient(f, x, h=1e-6):
    """Central-difference gradient of the scalar ``f`` at the array ``x`` (same shape as ``x``)."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    flat, out = x.reshape(-1), grad.reshape(-1)  # views: writing to flat changes x
    for k in range(flat.size):
        original = flat[k]
        flat[k] = original + h
        plus = f(x)
        flat[k] = original - h
        minus = f(x)
        flat[k] = original
        out[k] = (plus - minus) / (2 * h)
    return grad


def relative_error(analytic, numeric, floor=1e-12):
    """Largest entrywise |a - n| / max(|a|, |n|, floor)."""
    a, n = np.asarray(analytic, dtype=np.float64), np.asarray(numeric, dtype=np.float64)
    return float(np.max(np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), floor)))


def buggy_attention_backward(dO, cache):
    """The reference backward pass with a classic mistake: dQ without the 1/sqrt(d_k) factor."""
    Q, K, V, A = cache
    dQ, dK, dV = attention_backward(dO, cache)
    return dQ * np.sqrt(Q.shape[-1]), dK, dV


def main():
    """Check the polynomial, the reference attention backward and the buggy one; return the errors."""
    x = np.array([-1.5, 0.0, 2.0])
    f = lambda x: float(np.sum(x**2 + 3 * x + 2))
    polynomial = relative_error(2 * x + 3, numerical_gradient(f, x))

    rng = np.random.default_rng(0)
    Q, K, V = rng.normal(size=(3, 4)), rng.normal(size=(5, 4)), rng.normal(size=(5, 2))
    dO = rng.normal(size=(3, 2))
    loss = lambda Q: float(np.sum(attention(Q, K, V)[0] * dO))  # L = <O, dO>, so dL/dO = dO
    numeric_dQ = numerical_gradient(loss, Q)
    _, cache = attention(Q, K, V)
    errors = {"polynomial": polynomial,
              "attention": relative_error(attention_backward(dO, cache)[0], numeric_dQ),
              "buggy": relative_error(buggy_attention_backward(dO, cache)[0], numeric_dQ)}
    for name, error in errors.items():
        print(f"{name:10} largest relative error {error:.1e}")
    errors["separated"] = max(errors["polynomial"], errors["attention"]) < 1e-6 < errors["buggy"]
    return errors


if __name__ == "__main__":
    measured = main()
