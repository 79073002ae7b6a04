"""Optimiser steps as pure functions, float64, with PyTorch's update rules.

Parameters and gradients are dicts of arrays keyed by name. A step never
modifies its inputs: it returns new parameters (and a new state), so a page can
keep the state of every step and show it. The ``*_init`` functions build the
state a step expects; a step checks the state it is given against the
parameters (names and shapes) and says which entry is wrong.

Hyper-parameters are checked against PyTorch's ranges (``lr >= 0``,
``0 <= beta < 1``, ``momentum >= 0``, ``weight_decay >= 0``), except that Adam's
``eps`` must be positive (with ``eps = 0`` a parameter whose gradient has been 0
so far would get ``0 / 0``). A NaN or infinite gradient is not skipped: the
update of that entry is NaN or infinite, as in ``torch.optim``.
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import as_float64, as_int, as_real, l2_norm, require

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
    require(isinstance(params, dict), f"params must be a dict of arrays, got {type(params).__name__}")
    require(isinstance(grads, dict), f"grads must be a dict of arrays, got {type(grads).__name__}")
    missing, extra = [k for k in params if k not in grads], [k for k in grads if k not in params]
    require(not missing and not extra,
            f"grads have different names from params: missing {missing}, unexpected {extra}")
    pairs = {}
    for name in params:
        p, g = as_float64(params[name], f"params[{name!r}]"), as_float64(grads[name], f"grads[{name!r}]")
        require(p.shape == g.shape, f"grads[{name!r}] {g.shape} does not match params[{name!r}] {p.shape}")
        pairs[name] = (p, g)
    return pairs


def _state_group(state, key, pairs, init):
    """``state[key]`` as ``{name: float64 array}``, checked against the parameters' names and shapes."""
    require(isinstance(state, dict), f"state must be the dict {init} returns, got {type(state).__name__}")
    require(key in state, f"state has no {key!r} entry (it has {sorted(state)}); build the state with {init}")
    group = state[key]
    require(isinstance(group, dict), f"state[{key!r}] must be a dict of arrays, got {type(group).__name__}")
    missing, extra = [k for k in pairs if k not in group], [k for k in group if k not in pairs]
    require(not missing and not extra,
            f"state[{key!r}] does not match params: missing {missing}, unexpected {extra}")
    arrays = {}
    for name, (p, _) in pairs.items():
        a = as_float64(group[name], f"state[{key!r}][{name!r}]")
        require(a.shape == p.shape, f"state[{key!r}][{name!r}] has shape {a.shape}, params[{name!r}] has shape {p.shape}")
        arrays[name] = a
    return arrays


def sgd_step(params, grads, lr):
    """Plain gradient descent ``p <- p - lr * g``.

    Parameters
    ----------
    params, grads : dict of str to array_like
        Same names, same shape per name.
    lr : float
        Learning rate, ``>= 0`` and finite.

    Returns
    -------
    dict of str to ndarray
        The new parameters.

    Raises
    ------
    ValueError
        If the names or shapes of ``params`` and ``grads`` differ, or ``lr`` is
        out of range.

    Notes
    -----
    A NaN or infinite gradient entry gives a NaN or infinite parameter entry.

    Examples
    --------
    >>> sgd_step({"w": [1.0]}, {"w": [0.5]}, lr=0.1)["w"].tolist()
    [0.95]
    """
    lr = as_real(lr, "lr", low=0.0)
    pairs = _pairs(params, grads)
    return {name: p - lr * g for name, (p, g) in pairs.items()}


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
    require(isinstance(params, dict), f"params must be a dict of arrays, got {type(params).__name__}")
    return {"velocity": {name: np.zeros_like(as_float64(p, f"params[{name!r}]")) for name, p in params.items()}}


def momentum_step(params, grads, state, lr, momentum=0.9):
    """Heavy-ball SGD as in ``torch.optim.SGD(momentum=...)``: ``v <- momentum v + g``, ``p <- p - lr v``.

    PyTorch starts the velocity at the first gradient; starting it at zero gives
    the same first velocity, ``momentum * 0 + g``.

    Parameters
    ----------
    params, grads : dict of str to array_like
    state : dict
        From :func:`momentum_init` or a previous step: ``state["velocity"]``
        has the names and shapes of ``params``.
    lr : float
        ``>= 0``.
    momentum : float
        ``>= 0``; 0.9 unless given (PyTorch has no default: it must be passed there).

    Returns
    -------
    params : dict of str to ndarray
    state : dict
        ``{"velocity": {...}}`` after this step.

    Raises
    ------
    ValueError
        If names or shapes of ``params``, ``grads`` and the velocity differ (the
        message names the entry and both shapes), ``state`` has no
        ``"velocity"``, or a hyper-parameter is out of range.

    Examples
    --------
    >>> params, state = {"w": [1.0]}, momentum_init({"w": [1.0]})
    >>> params, state = momentum_step(params, {"w": [1.0]}, state, lr=0.1)  # v = 1
    >>> params, state = momentum_step(params, {"w": [1.0]}, state, lr=0.1)  # v = 1.9
    >>> params["w"].round(12).tolist()
    [0.71]
    """
    lr, momentum = as_real(lr, "lr", low=0.0), as_real(momentum, "momentum", low=0.0)
    pairs = _pairs(params, grads)
    previous = _state_group(state, "velocity", pairs, "momentum_init")
    velocity = {name: momentum * previous[name] + g for name, (_, g) in pairs.items()}
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
    require(isinstance(params, dict), f"params must be a dict of arrays, got {type(params).__name__}")
    zeros = {name: np.zeros_like(as_float64(p, f"params[{name!r}]")) for name, p in params.items()}
    return {"t": 0, "m": zeros, "v": {name: z.copy() for name, z in zeros.items()}}


def _adam_update(pairs, state, lr, beta1, beta2, eps):
    """The moments after one more step, and each parameter's Adam displacement."""
    lr = as_real(lr, "lr", low=0.0)
    beta1 = as_real(beta1, "beta1", low=0.0, high=1.0, high_open=True)
    beta2 = as_real(beta2, "beta2", low=0.0, high=1.0, high_open=True)
    eps = as_real(eps, "eps", low=0.0, low_open=True)
    if not (isinstance(state, dict) and "t" in state):  # the message is built only when it is raised:
        # repr() of a whole state of arrays on every step cost more than the step itself
        raise ValueError(f"state must be the dict adam_init returns, with a step count 't'; got {state!r:.80}")
    t = as_int(state["t"], "state['t']", minimum=0) + 1
    m_prev = _state_group(state, "m", pairs, "adam_init")
    v_prev = _state_group(state, "v", pairs, "adam_init")
    for name, v in v_prev.items():
        require(not np.any(v < 0), f"state['v'][{name!r}] has negative entries: a second moment is never negative")
    m = {name: beta1 * m_prev[name] + (1 - beta1) * g for name, (_, g) in pairs.items()}
    v = {name: beta2 * v_prev[name] + (1 - beta2) * g * g for name, (_, g) in pairs.items()}
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
        ``{"t", "m", "v"}`` from :func:`adam_init` or a previous step; the
        moments have the names and shapes of ``params``.
    lr, beta1, beta2, eps : float
        PyTorch's defaults. ``lr >= 0``, ``0 <= beta < 1``, ``eps > 0``.

    Returns
    -------
    params : dict of str to ndarray
    state : dict
        ``t`` incremented, the new moments.

    Raises
    ------
    ValueError
        If names or shapes of ``params``, ``grads`` and the moments differ (the
        message names the entry and both shapes), an entry of ``state`` is
        missing (named), ``state["v"]`` is negative, or a hyper-parameter is
        out of range (named).

    Notes
    -----
    A NaN gradient entry makes that entry's moments and parameter NaN; an
    infinite one makes them NaN too (``inf / inf``), as in ``torch.optim.Adam``.

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
        PyTorch's defaults; ranges as in :func:`adam_step`, ``weight_decay >= 0``.

    Returns
    -------
    params : dict of str to ndarray
    state : dict

    Raises
    ------
    ValueError
        As :func:`adam_step`.

    Examples
    --------
    >>> params, _ = adamw_step({"w": [1.0]}, {"w": [1.0]}, adam_init({"w": [1.0]}))
    >>> params["w"].round(8).tolist()  # 1 * (1 - 1e-5) - 1e-3
    [0.99899]
    """
    weight_decay = as_real(weight_decay, "weight_decay", low=0.0)
    pairs = _pairs(params, grads)
    step, state = _adam_update(pairs, state, lr, beta1, beta2, eps)
    return {name: p * (1 - lr * weight_decay) - step[name] for name, (p, _) in pairs.items()}, state


def clip_grad_norm(grads, max_norm, error_if_nonfinite=False):
    """Rescale gradients so that their global L2 norm is at most ``max_norm``.

    ``total_norm = sqrt(sum of g^2 over every entry of every array)``, computed
    without overflow (gradients of 1e200 have a norm, not ``inf``). When
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
        Non-negative; ``inf`` never clips.
    error_if_nonfinite : bool
        Raise instead of returning NaN when a gradient holds NaN or infinity
        (as ``torch.nn.utils.clip_grad_norm_(..., error_if_nonfinite=True)``).

    Returns
    -------
    clipped : dict or list of ndarray
        The same kind as ``grads`` (new arrays; the input is not modified).
    total_norm : float
        The norm before clipping.

    Raises
    ------
    ValueError
        If ``max_norm`` is negative or NaN, ``grads`` is neither a dict nor a
        list, or (with ``error_if_nonfinite``) a gradient is not finite; the
        message names the arrays.

    Notes
    -----
    A NaN or infinite entry makes ``total_norm`` NaN or ``inf``, and then every
    returned entry is NaN: the direction of such a gradient is undefined, so no
    rescaling of it is right. (PyTorch multiplies by ``max_norm / inf = 0``
    instead, returning zeros for the finite entries, which looks like a
    gradient that vanished.)

    Examples
    --------
    >>> clipped, total_norm = clip_grad_norm([[3.0, 4.0]], max_norm=1.0)
    >>> clipped[0].round(6).tolist(), total_norm
    ([0.6, 0.8], 5.0)
    """
    max_norm = as_real(max_norm, "max_norm", low=0.0, finite=False)
    require(isinstance(error_if_nonfinite, bool), f"error_if_nonfinite must be True or False, got {error_if_nonfinite!r}")
    require(isinstance(grads, (dict, list, tuple)),
            f"grads must be a dict or a list of arrays, got {type(grads).__name__}")
    names = list(grads) if isinstance(grads, dict) else range(len(grads))
    arrays = [as_float64(grads[k], f"grads[{k!r}]") for k in names]
    total_norm = l2_norm(arrays)
    if not math.isfinite(total_norm):
        bad = [k for k, a in zip(names, arrays) if not np.all(np.isfinite(a))]
        require(not error_if_nonfinite, f"the gradient norm is {total_norm}: grads{bad} hold NaN or infinity")
        return (dict(zip(names, (np.full_like(a, np.nan) for a in arrays))) if isinstance(grads, dict)
                else type(grads)(np.full_like(a, np.nan) for a in arrays)), total_norm
    scale = max_norm / (total_norm + 1e-6) if total_norm > max_norm else 1.0
    clipped = [a * scale for a in arrays]
    if isinstance(grads, dict):
        return dict(zip(names, clipped)), total_norm
    return type(grads)(clipped), total_norm
