"""The optimiser steps of ``derivations.reference.optim`` against ``torch.optim`` and
``torch.nn.utils.clip_grad_norm_``, and the properties the pages state about them."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from derivations.reference import (
    adam_init,
    adam_step,
    adamw_step,
    clip_grad_norm,
    momentum_init,
    momentum_step,
    sgd_step,
)

STEPS = 6
RTOL = 1e-12


def assert_close(actual, expected, rtol=RTOL, err_msg=""):
    expected = np.asarray(expected)
    assert np.shape(actual) == expected.shape, err_msg
    scale = float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=err_msg)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def make_problem(rng):
    """Parameters of mixed shapes and a fresh random gradient per step (as in training)."""
    params = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(4), "scale": rng.standard_normal(())}
    grads = [{name: rng.standard_normal(p.shape) * 10.0**k for k, (name, p) in enumerate(params.items())}
             for _ in range(STEPS)]
    return params, grads


def run_torch(optimizer_class, params, grads, **options):
    """Parameters after each of the steps, as ``torch.optim`` computes them."""
    tensors = {name: torch.tensor(p, requires_grad=True) for name, p in params.items()}
    optimizer = optimizer_class(list(tensors.values()), **options)
    history = []
    for step_grads in grads:
        for name, tensor in tensors.items():
            tensor.grad = torch.tensor(step_grads[name])
        optimizer.step()
        history.append({name: tensor.detach().numpy().copy() for name, tensor in tensors.items()})
    return history


def assert_histories_match(ours, theirs):
    for step, (mine, reference) in enumerate(zip(ours, theirs, strict=True)):
        for name in reference:
            assert_close(mine[name], reference[name], err_msg=f"step {step}, {name}")


def test_sgd_matches_torch(rng):
    params, grads = make_problem(rng)
    ours, current = [], params
    for step_grads in grads:
        current = sgd_step(current, step_grads, lr=0.05)
        ours.append(current)
    assert_histories_match(ours, run_torch(torch.optim.SGD, params, grads, lr=0.05))


@pytest.mark.parametrize("momentum", [0.9, 0.5])
def test_momentum_matches_torch(rng, momentum):
    params, grads = make_problem(rng)
    ours, current, state = [], params, momentum_init(params)
    for step_grads in grads:
        current, state = momentum_step(current, step_grads, state, lr=0.05, momentum=momentum)
        ours.append(current)
    assert_histories_match(ours, run_torch(torch.optim.SGD, params, grads, lr=0.05, momentum=momentum))


@pytest.mark.parametrize("options", [{}, {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6}])
def test_adam_matches_torch(rng, options):
    params, grads = make_problem(rng)
    ours, current, state = [], params, adam_init(params)
    for step_grads in grads:
        current, state = adam_step(current, step_grads, state, **options)
        ours.append(current)
    assert state["t"] == STEPS
    torch_options = {"lr": options.get("lr", 1e-3), "betas": (options.get("beta1", 0.9), options.get("beta2", 0.999)),
                     "eps": options.get("eps", 1e-8)}
    assert_histories_match(ours, run_torch(torch.optim.Adam, params, grads, **torch_options))


@pytest.mark.parametrize("weight_decay", [0.01, 0.3])
def test_adamw_matches_torch(rng, weight_decay):
    params, grads = make_problem(rng)
    ours, current, state = [], params, adam_init(params)
    for step_grads in grads:
        current, state = adamw_step(current, step_grads, state, lr=0.02, weight_decay=weight_decay)
        ours.append(current)
    theirs = run_torch(torch.optim.AdamW, params, grads, lr=0.02, weight_decay=weight_decay)
    assert_histories_match(ours, theirs)


def test_adamw_differs_from_adam_with_l2_penalty(rng):
    # Decoupled decay is not the same as adding weight_decay * p to the gradient.
    params, grads = make_problem(rng)
    decoupled, _ = adamw_step(params, grads[0], adam_init(params), lr=0.02, weight_decay=0.3)
    coupled = run_torch(torch.optim.Adam, params, grads[:1], lr=0.02, weight_decay=0.3)[0]
    assert not np.allclose(decoupled["W"], coupled["W"], rtol=1e-6)


def assert_same(before, after):
    """Recursive equality of nested dicts of arrays and numbers."""
    if isinstance(before, dict):
        assert list(before) == list(after)
        for key in before:
            assert_same(before[key], after[key])
    else:
        np.testing.assert_array_equal(before, after)


def test_steps_never_modify_their_inputs(rng):
    params, grads = make_problem(rng)
    momentum_state = momentum_step(params, grads[0], momentum_init(params), lr=0.1)[1]
    adam_state = adam_step(params, grads[0], adam_init(params))[1]
    inputs = (params, grads[1], momentum_state, adam_state)
    snapshot = copy.deepcopy(inputs)
    sgd_step(params, grads[1], lr=0.1)
    momentum_step(params, grads[1], momentum_state, lr=0.1)
    adam_step(params, grads[1], adam_state)
    adamw_step(params, grads[1], adam_state)
    clip_grad_norm(grads[1], max_norm=0.1)
    for before, after in zip(snapshot, inputs):
        assert_same(before, after)


def test_steps_reject_mismatched_grads(rng):
    params = {"W": np.zeros((2, 3))}
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3\)"):
        sgd_step(params, {"W": np.zeros((3, 2))}, lr=0.1)
    with pytest.raises(ValueError, match="names"):
        adam_step(params, {"V": np.zeros((2, 3))}, adam_init(params))


# ----------------------------------------------------------------------------- clipping


def torch_clip(arrays, max_norm):
    tensors = [torch.zeros(a.shape, dtype=torch.float64, requires_grad=True) for a in arrays]
    for tensor, a in zip(tensors, arrays):
        tensor.grad = torch.tensor(a)
    total = torch.nn.utils.clip_grad_norm_(tensors, max_norm)
    return [t.grad.numpy() for t in tensors], float(total)


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 1e3])
def test_clip_grad_norm_matches_torch(rng, max_norm):
    grads = [rng.standard_normal((3, 4)), rng.standard_normal(5), rng.standard_normal((2, 2, 2))]
    clipped, total = clip_grad_norm(grads, max_norm)
    expected, expected_total = torch_clip(grads, max_norm)
    assert total == pytest.approx(expected_total, rel=RTOL)
    for mine, theirs in zip(clipped, expected, strict=True):
        assert_close(mine, theirs)


def test_clip_grad_norm_properties(rng):
    grads = {"W": 5 * rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}
    flat = np.concatenate([g.ravel() for g in grads.values()])
    clipped, total = clip_grad_norm(grads, max_norm=1.0)
    assert isinstance(clipped, dict) and list(clipped) == list(grads)
    assert total == pytest.approx(math.sqrt(np.sum(flat**2)), rel=1e-14)
    clipped_flat = np.concatenate([clipped[k].ravel() for k in grads])
    assert np.linalg.norm(clipped_flat) <= 1.0
    ratios = clipped_flat / flat  # one common positive factor: the direction is kept
    assert np.all(ratios > 0) and np.ptp(ratios) < 1e-15


def test_clip_grad_norm_leaves_small_gradients_untouched():
    grads = [np.array([3.0, 4.0]), np.array([0.0])]
    for max_norm in (5.0, 10.0):  # norm exactly 5: at the threshold nothing is scaled
        clipped, total = clip_grad_norm(grads, max_norm)
        assert total == 5.0 and isinstance(clipped, list)
        for mine, original in zip(clipped, grads):
            np.testing.assert_array_equal(mine, original)
            assert mine is not original
    clipped, _ = clip_grad_norm((np.array([3.0, 4.0]),), 1.0)
    assert isinstance(clipped, tuple)
    np.testing.assert_allclose(clipped[0], [0.6, 0.8], rtol=1e-6)


def test_clip_grad_norm_rejects_bad_arguments():
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm([np.ones(2)], -1.0)
    with pytest.raises(ValueError, match="dict or a list"):
        clip_grad_norm(np.ones(2), 1.0)


def test_default_hyper_parameters_are_pytorchs_and_the_documented_momentum(rng):
    """adam_step and adamw_step default to torch.optim's defaults; momentum_step to momentum 0.9."""
    params, grads = make_problem(rng)
    ours, current, state = [], params, adam_init(params)
    for step_grads in grads:
        current, state = adamw_step(current, step_grads, state)
        ours.append(current)
    assert_histories_match(ours, run_torch(torch.optim.AdamW, params, grads))
    ours, current, state = [], params, adam_init(params)
    for step_grads in grads:
        current, state = adam_step(current, step_grads, state)
        ours.append(current)
    assert_histories_match(ours, run_torch(torch.optim.Adam, params, grads))
    ours, current, state = [], params, momentum_init(params)
    for step_grads in grads:
        current, state = momentum_step(current, step_grads, state, lr=0.05)
        ours.append(current)
    assert_histories_match(ours, run_torch(torch.optim.SGD, params, grads, lr=0.05, momentum=0.9))


def test_state_messages_say_how_to_build_the_state():
    params, grads = {"w": np.zeros(2)}, {"w": np.ones(2)}
    with pytest.raises(ValueError, match=r"^state has no 'velocity' entry \(it has \[\]\); build the state with "
                                         r"momentum_init$"):
        momentum_step(params, grads, {}, lr=0.1)
    with pytest.raises(ValueError, match=r"; build the state with adam_init$"):
        adam_step(params, grads, {"t": 0, "m": {"w": np.zeros(2)}})
    with pytest.raises(ValueError, match=r"^state must be the dict momentum_init returns, got list$"):
        momentum_step(params, grads, [], lr=0.1)
    with pytest.raises(ValueError, match=r"^state\['m'\] must be a dict of arrays, got list$"):
        adam_step(params, grads, {"t": 0, "m": [np.zeros(2)], "v": {"w": np.zeros(2)}})
    with pytest.raises(ValueError, match=r"^state must be the dict adam_init returns, with a step count 't'"):
        adam_step(params, grads, {"m": {}, "v": {}})
    with pytest.raises(ValueError, match=r"^params must be a dict of arrays, got list$"):
        momentum_init([np.zeros(1)])


def test_clip_grad_norm_messages_name_the_argument():
    with pytest.raises(ValueError, match=r"^max_norm must be >= 0.0, got -1.0$"):
        clip_grad_norm([np.ones(2)], -1.0)
    with pytest.raises(ValueError, match=r"^grads must be a dict or a list of arrays, got ndarray$"):
        clip_grad_norm(np.ones(2), 1.0)
    clipped, total = clip_grad_norm([], 1.0)
    assert clipped == [] and total == 0.0
