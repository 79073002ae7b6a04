"""Optimiser steps as pure functions, float64, with PyTorch's update rules.

Parameters and gradients are dicts of arrays keyed by name. A step never
modifies its inputs: it returns new parameters (and a new state), so a page can
keep the state of every step and show it. The ``*_init`` functions build the
state a step expects.
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import as_float64, require

__all__ = [
    "sgd_step",
    "momentum_init",
    "momentum_step",
    "adam_init",
    "adam_step",
    "adamw_step",
    "clip_grad_norm",
]


def _pairs(params, grads):
    """``{name: (p, g)}`` as float64 copies; a ``ValueError`` if names or shapes differ."""
    require(set(params) == set(grads), f"params {sorted(params)} and grads {sorted(grads)} have different names")
    pairs = {}
    for name in params:
        p, g = as_float64(params[name], f"params[{name!r}]"), as_float64(grads[name], f"grads[{name!r}]")
        require(p.shape == g.shape, f"grads[{name!r}] {g.shape} does not match params[{name!r}] {p.shape}")
        pairs[name] = (p, g)
    return pairs


def sgd_step(params, grads, lr):
    """Plain gradient descent ``p <- p - lr * g``.

    Parameters
    ----------
    params, grads : dict of str to array_like
        Same names, same shape per name.
    lr : float
        Learning rate.

    Returns
    -------
    dict of str to ndarray
        The new parameters.

    Raises
    ------
    ValueError
        If the names or shapes of ``params`` and ``grads`` differ.

    Examples
    --------
    >>> sgd_step({"w": [1.0]}, {"w": [0.5]}, lr=0.1)["w"].tolist()
    [0.95]
    """
    return {name: p - lr * g for name, (p, g) in _pairs(params, grads).items()}


def momentum_init(params):
    """State for :func:`momentum_step`: a zero velocity per parameter.

    Parameters
    ----------
    params : dict of str to array_like

    Returns
    -------
    dict
        ``{"velocity": {name: zeros like params[name]}}``.

    Examples
    --------
    >>> momentum_init({"w": [1.0, 2.0]})["velocity"]["w"].tolist()
    [0.0, 0.0]
    """
    return {"velocity": {name: np.zeros_like(as_float64(p, f"params[{name!r}]")) for name, p in params.items()}}


def momentum_step(params, grads, state, lr, momentum=0.9):
    """Heavy-ball SGD as in ``torch.optim.SGD(momentum=...)``: ``v <- momentum v + g``, ``p <- p - lr v``.

    PyTorch starts the velocity at the first gradient; starting it at zero gives
    the same first velocity, ``momentum * 0 + g``.

    Parameters
    ----------
    params, grads : dict of str to array_like
    state : dict
        From :func:`momentum_init` or a previous step.
    lr : float
    momentum : float

    Returns
    -------
    params : dict of str to ndarray
    state : dict
        ``{"velocity": {...}}`` after this step.

    Examples
    --------
    >>> params, state = {"w": [1.0]}, momentum_init({"w": [1.0]})
    >>> params, state = momentum_step(params, {"w": [1.0]}, state, lr=0.1)  # v = 1
    >>> params, state = momentum_step(params, {"w": [1.0]}, state, lr=0.1)  # v = 1.9
    >>> params["w"].round(12).tolist()
    [0.71]
    """
    pairs = _pairs(params, grads)
    velocity = {name: momentum * as_float64(state["velocity"][name], "velocity") + g for name, (_, g) in pairs.items()}
    return {name: p - lr * velocity[name] for name, (p, _) in pairs.items()}, {"velocity": velocity}


def adam_init(params):
    """State for :func:`adam_step` and :func:`adamw_step`: step 0, zero moments.

    Parameters
    ----------
    params : dict of str to array_like

    Returns
    -------
    dict
        ``{"t": 0, "m": {name: zeros}, "v": {name: zeros}}``.

    Examples
    --------
    >>> adam_init({"w": [1.0]})["t"]
    0
    """
    zeros = {name: np.zeros_like(as_float64(p, f"params[{name!r}]")) for name, p in params.items()}
    return {"t": 0, "m": zeros, "v": {name: z.copy() for name, z in zeros.items()}}


def _adam_update(pairs, state, lr, beta1, beta2, eps):
    """The moments after one more step, and each parameter's Adam displacement."""
    t = state["t"] + 1
    m = {name: beta1 * as_float64(state["m"][name], "m") + (1 - beta1) * g for name, (_, g) in pairs.items()}
    v = {name: beta2 * as_float64(state["v"][name], "v") + (1 - beta2) * g * g for name, (_, g) in pairs.items()}
    # The moments start at 0, so after t steps of a constant gradient g they are
    # (1 - beta^t) g and (1 - beta^t) g^2 (claim adam.bias-correction); dividing undoes it.
    correction1, correction2 = 1 - beta1**t, 1 - beta2**t
    step = {name: lr * (m[name] / correction1) / (np.sqrt(v[name] / correction2) + eps) for name in pairs}
    return step, {"t": t, "m": m, "v": v}


def adam_step(params, grads, state, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    """One Adam step, as ``torch.optim.Adam`` (no weight decay, no AMSGrad).

    ``m <- beta1 m + (1 - beta1) g``, ``v <- beta2 v + (1 - beta2) g^2``,
    ``p <- p - lr * m_hat / (sqrt(v_hat) + eps)`` with the bias-corrected
    ``m_hat = m / (1 - beta1^t)`` and ``v_hat = v / (1 - beta2^t)``.

    Parameters
    ----------
    params, grads : dict of str to array_like
    state : dict
        ``{"t", "m", "v"}`` from :func:`adam_init` or a previous step.
    lr, beta1, beta2, eps : float
        PyTorch's defaults.

    Returns
    -------
    params : dict of str to ndarray
    state : dict
        ``t`` incremented, the new moments.

    Examples
    --------
    The first step moves every entry by about ``lr`` against its gradient's sign:

    >>> params, state = adam_step({"w": [1.0, 1.0]}, {"w": [3.0, -0.2]}, adam_init({"w": [1.0, 1.0]}))
    >>> params["w"].round(6).tolist(), state["t"]
    ([0.999, 1.001], 1)
    """
    pairs = _pairs(params, grads)
    step, state = _adam_update(pairs, state, lr, beta1, beta2, eps)
    return {name: p - step[name] for name, (p, _) in pairs.items()}, state


def adamw_step(params, grads, state, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
    """One AdamW step, as ``torch.optim.AdamW``: decay the weights, then the Adam step.

    The decay is decoupled from the gradient: ``p <- p (1 - lr * weight_decay)``
    before the Adam update, instead of adding ``weight_decay * p`` to ``g``
    (which Adam's normalisation would rescale).

    Parameters
    ----------
    params, grads : dict of str to array_like
    state : dict
        ``{"t", "m", "v"}`` from :func:`adam_init` or a previous step.
    lr, beta1, beta2, eps, weight_decay : float
        PyTorch's defaults.

    Returns
    -------
    params : dict of str to ndarray
    state : dict

    Examples
    --------
    >>> params, _ = adamw_step({"w": [1.0]}, {"w": [1.0]}, adam_init({"w": [1.0]}))
    >>> params["w"].round(8).tolist()  # 1 * (1 - 1e-5) - 1e-3
    [0.99899]
    """
    pairs = _pairs(params, grads)
    step, state = _adam_update(pairs, state, lr, beta1, beta2, eps)
    return {name: p * (1 - lr * weight_decay) - step[name] for name, (p, _) in pairs.items()}, state


def clip_grad_norm(grads, max_norm):
    """Rescale gradients so that their global L2 norm is at most ``max_norm``.

    ``total_norm = sqrt(sum of g^2 over every entry of every array)``. When
    ``total_norm > max_norm`` every array is multiplied by
    ``max_norm / (total_norm + 1e-6)`` (PyTorch's coefficient; the ``1e-6``
    guards the division and leaves the clipped norm just below ``max_norm``),
    which keeps the direction of the whole gradient. Otherwise the gradients
    are returned unchanged.

    ``torch.nn.utils.clip_grad_norm_`` clamps that coefficient at 1 instead of
    comparing norms, so for ``max_norm - 1e-6 < total_norm <= max_norm`` it
    scales by a factor within ``1e-6`` of 1 where this function does not.

    Parameters
    ----------
    grads : dict of str to array_like, or list of array_like
    max_norm : float
        Non-negative.

    Returns
    -------
    clipped : dict or list of ndarray
        The same kind as ``grads`` (new arrays; the input is not modified).
    total_norm : float
        The norm before clipping.

    Raises
    ------
    ValueError
        If ``max_norm`` is negative or ``grads`` is neither a dict nor a list.

    Examples
    --------
    >>> clipped, total_norm = clip_grad_norm([[3.0, 4.0]], max_norm=1.0)
    >>> clipped[0].round(6).tolist(), total_norm
    ([0.6, 0.8], 5.0)
    """
    require(max_norm >= 0, f"max_norm must be non-negative, got {max_norm}")
    require(isinstance(grads, (dict, list, tuple)),
            f"grads must be a dict or a list of arrays, got {type(grads).__name__}")
    names = list(grads) if isinstance(grads, dict) else range(len(grads))
    arrays = [as_float64(grads[k], f"grads[{k!r}]") for k in names]
    total_norm = math.sqrt(sum(float(np.sum(a * a)) for a in arrays))
    scale = max_norm / (total_norm + 1e-6) if total_norm > max_norm else 1.0
    clipped = [a * scale for a in arrays]
    if isinstance(grads, dict):
        return dict(zip(names, clipped)), total_norm
    return type(grads)(clipped), total_norm
