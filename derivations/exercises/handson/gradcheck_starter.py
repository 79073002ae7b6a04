"""Hands-on: check gradients by central differences (starter: fill in the TODOs, then run it)."""

import numpy as np


def numerical_gradient(f, x, h=1e-6):
    """Central-difference gradient of the scalar ``f`` at the array ``x`` (same shape as ``x``)."""
    grad = np.zeros_like(x)
    # TODO: for every entry k of x: f at x with entry k raised by h, f with it lowered by h,
    #       grad[k] = (f_plus - f_minus) / (2 h); put the entry back before the next one
    raise NotImplementedError("numerical_gradient is not written yet")


def relative_error(analytic, numeric, floor=1e-12):
    """Largest entrywise |a - n| / max(|a|, |n|, floor)."""
    # TODO
    raise NotImplementedError("relative_error is not written yet")


def main():
    x = np.array([-1.5, 0.0, 2.0])
    f = lambda x: float(np.sum(x**2 + 3 * x + 2))
    try:
        print("relative error on x^2 + 3x + 2:", relative_error(2 * x + 3, numerical_gradient(f, x)))
    except NotImplementedError as error:
        print("not yet:", error)


if __name__ == "__main__":
    main()
