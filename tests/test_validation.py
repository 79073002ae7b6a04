"""Bad input to the reference gets a ValueError that names the argument, never a quiet result.

Masks must be boolean (an additive mask would be inverted by a cast), every hyper-parameter is
range-checked, optimiser state is checked against the parameters, and a cache from the wrong
operation is refused by name.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from derivations.reference import (
    adam_init,
    adam_step,
    adamw_step,
    attention,
    attention_backward,
    clip_grad_norm,
    cross_entropy,
    cross_entropy_backward,
    embedding,
    embedding_backward,
    gelu,
    gelu_backward,
    gelu_derivative_max_difference,
    gradcheck,
    layer_norm,
    layer_norm_backward,
    linear,
    linear_backward,
    memory_efficient_attention,
    momentum_init,
    momentum_step,
    multi_head_attention,
    multi_head_attention_backward,
    numerical_gradient,
    positional_encoding,
    relative_error,
    relu,
    relu_backward,
    rnn_backward,
    rnn_forward,
    sgd_step,
    softmax,
    softmax_backward,
)
from derivations.reference.attention import AttentionCache, SoftmaxCache
from derivations.reference.layers import LayerNormCache, LinearCache
from derivations.reference.model import TransformerConfig, backward, forward, init_params
from derivations.reference.monitor import gradient_report
from derivations.reference.train import TrainingSettings

NAN, INF = math.nan, math.inf


# ----------------------------------------------------------------------------- masks


BAD_MASKS = {
    "additive 0/-inf": np.array([[0.0, -INF], [0.0, 0.0]]),
    "one half": np.array([[1.0, 0.5], [1.0, 1.0]]),
    "nan": np.array([[1.0, NAN], [1.0, 1.0]]),
    "integers": np.array([[1, 0], [1, 1]]),
    "strings": np.array([["yes", "no"], ["yes", "yes"]]),
}


@pytest.mark.parametrize("kind", sorted(BAD_MASKS))
def test_non_boolean_masks_are_refused_with_the_dtype_and_the_conversion(kind):
    mask = BAD_MASKS[kind]
    Q = K = V = np.eye(2)
    calls = {
        "softmax": lambda: softmax(np.zeros((2, 2)), mask),
        "attention": lambda: attention(Q, K, V, mask),
        "multi_head_attention": lambda: multi_head_attention(Q, Q, Q, Q, Q, n_heads=1, mask=mask),
        "memory_efficient_attention": lambda: memory_efficient_attention(Q, K, V, mask),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match=rf"mask must be a boolean array.*dtype {mask.dtype}.*mask == 0") as info:
            call()
        assert "additive" in str(info.value), name


def test_an_additive_mask_converted_as_the_message_says_matches_the_boolean_mask():
    rng = np.random.default_rng(0)
    Q, K, V = rng.standard_normal((3, 2)), rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    additive = np.where(np.tril(np.ones((3, 3), dtype=bool)), 0.0, -INF)
    O, _ = attention(Q, K, V, additive == 0)
    O_plain, _ = attention(Q, K, V, np.tril(np.ones((3, 3), dtype=bool)))
    np.testing.assert_array_equal(O, O_plain)


def test_python_lists_of_bools_are_masks():
    y, _ = softmax([[1.0, 2.0]], mask=[[True, False]])
    assert y.tolist() == [[1.0, 0.0]]


def test_masks_that_do_not_broadcast_are_named():
    with pytest.raises(ValueError, match=r"mask \(3,\) does not broadcast to x \(2, 2\)"):
        softmax(np.zeros((2, 2)), np.ones(3, dtype=bool))


# ----------------------------------------------------------------------------- sizes


def test_attention_needs_keys_and_a_key_dimension():
    with pytest.raises(ValueError, match=r"Q \(2, 0\) and K \(3, 0\) have d_k = 0"):
        attention(np.zeros((2, 0)), np.zeros((3, 0)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"K \(0, 2\) and V \(0, 1\) have n_k = 0"):
        attention(np.zeros((2, 2)), np.zeros((0, 2)), np.zeros((0, 1)))
    O, cache = attention(np.zeros((0, 2)), np.zeros((3, 2)), np.ones((3, 4)))  # no query: nothing to compute
    assert O.shape == (0, 4) and attention_backward(np.zeros((0, 4)), cache)[1].shape == (3, 2)


def test_softmax_needs_a_non_empty_last_axis():
    for x in (np.float64(1.0), np.zeros((2, 0))):
        with pytest.raises(ValueError, match="needs a non-empty last axis"):
            softmax(x)
    assert softmax(np.zeros((0, 3)))[0].shape == (0, 3)


def test_multi_head_attention_needs_tokens_and_features():
    with pytest.raises(ValueError, match=r"X \(0, 4\) must be .*n >= 1"):
        multi_head_attention(np.zeros((0, 4)), *[np.eye(4)] * 4, n_heads=2)
    with pytest.raises(ValueError, match="n_heads must be an integer"):
        multi_head_attention(np.zeros((2, 4)), *[np.eye(4)] * 4, n_heads=2.0)
    with pytest.raises(ValueError, match="n_heads must be an integer"):
        multi_head_attention(np.zeros((2, 4)), *[np.eye(4)] * 4, n_heads=True)
    with pytest.raises(ValueError, match=r"W_o must be an array of real numbers"):
        multi_head_attention(np.zeros((2, 2)), *[np.eye(2)] * 3, np.array([["a", "b"], ["c", "d"]]), n_heads=1)


# ----------------------------------------------------------------------------- scalar parameters


@pytest.mark.parametrize("eps", [0.0, -1e-5, NAN, INF, "1e-5", True, None])
def test_layer_norm_eps_must_be_positive_and_finite(eps):
    with pytest.raises(ValueError, match="eps"):
        layer_norm(np.ones((2, 3)), np.ones(3), np.zeros(3), eps=eps)


@pytest.mark.parametrize("approximate", [None, "TANH", "erf", True, ("tanh",)])
def test_gelu_approximate_must_be_one_of_two_strings(approximate):
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        gelu([1.0], approximate=approximate)
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        gelu([1.0], approximate=np.array(["tanh", "none"]))


def test_gelu_derivative_search_range_is_checked():
    for kwargs, name in (({"x_max": 0.0}, "x_max"), ({"step": 0.0}, "step"), ({"step": 20.0}, "step"),
                         ({"x_max": NAN}, "x_max")):
        with pytest.raises(ValueError, match=name):
            gelu_derivative_max_difference(**kwargs)


@pytest.mark.parametrize("value", [-1, 2.5, True, "3"])
def test_positional_encoding_sizes_are_integers_in_range(value):
    with pytest.raises(ValueError, match="seq_len"):
        positional_encoding(value, 4)
    with pytest.raises(ValueError, match="d_model"):
        positional_encoding(3, value if value != -1 else 0)


def test_inputs_that_are_not_real_numbers_are_named():
    with pytest.raises(ValueError, match=r"x must be an array of real numbers, got dtype <U"):
        linear(["1.0", "2.0"], np.eye(2))
    with pytest.raises(ValueError, match="W must be an array of real numbers, got dtype complex128"):
        linear([1.0, 2.0], np.eye(2) * 1j)
    with pytest.raises(ValueError, match="x must be a numeric array"):
        relu(np.array([1.0, "a"], dtype=object))


# ----------------------------------------------------------------------------- optimisers


def test_adam_moments_of_the_wrong_shape_name_the_parameter_and_both_shapes():
    params, grads = {"w": np.zeros(2)}, {"w": np.ones(2)}
    state = {"t": 0, "m": {"w": np.zeros((2, 2))}, "v": {"w": np.zeros(2)}}
    with pytest.raises(ValueError, match=r"state\['m'\]\['w'\] has shape \(2, 2\), params\['w'\] has shape \(2,\)"):
        adam_step(params, grads, state)
    state = {"t": 0, "m": {"w": np.zeros(2)}, "v": {"w": np.zeros((1, 2))}}
    with pytest.raises(ValueError, match=r"state\['v'\]\['w'\] has shape \(1, 2\)"):
        adamw_step(params, grads, state)


@pytest.mark.parametrize("missing", ["t", "m", "v"])
def test_a_missing_adam_state_entry_is_a_value_error_naming_it(missing):
    params = {"w": np.zeros(2)}
    state = {k: v for k, v in adam_init(params).items() if k != missing}
    with pytest.raises(ValueError, match=f"'{missing}'"):
        adam_step(params, {"w": np.ones(2)}, state)


def test_momentum_state_is_checked_against_the_parameters():
    params, grads = {"w": np.zeros(2), "b": np.zeros(1)}, {"w": np.ones(2), "b": np.ones(1)}
    with pytest.raises(ValueError, match=r"state has no 'velocity' entry.*momentum_init"):
        momentum_step(params, grads, {}, lr=0.1)
    with pytest.raises(ValueError, match=r"state\['velocity'\] does not match params: missing \['b'\]"):
        momentum_step(params, grads, {"velocity": {"w": np.zeros(2)}}, lr=0.1)
    with pytest.raises(ValueError, match=r"unexpected \['c'\]"):
        momentum_step(params, grads, {"velocity": {"w": np.zeros(2), "b": np.zeros(1), "c": np.zeros(1)}}, lr=0.1)
    with pytest.raises(ValueError, match=r"state\['velocity'\]\['w'\] has shape \(3,\), params\['w'\] has shape \(2,\)"):
        momentum_step(params, grads, {"velocity": {"w": np.zeros(3), "b": np.zeros(1)}}, lr=0.1)
    with pytest.raises(ValueError, match="state must be the dict"):
        momentum_step(params, grads, [np.zeros(2)], lr=0.1)


def test_adam_state_values_are_checked():
    params, grads = {"w": np.zeros(2)}, {"w": np.ones(2)}
    for t in (-1, 1.5, True, None):
        with pytest.raises(ValueError, match=r"state\['t'\]"):
            adam_step(params, grads, {**adam_init(params), "t": t})
    with pytest.raises(ValueError, match=r"state\['v'\]\['w'\] has negative entries"):
        adam_step(params, grads, {**adam_init(params), "v": {"w": np.array([0.0, -1.0])}})


def test_params_and_grads_with_different_names_are_named():
    with pytest.raises(ValueError, match=r"missing \['b'\], unexpected \['c'\]"):
        sgd_step({"w": np.zeros(1), "b": np.zeros(1)}, {"w": np.zeros(1), "c": np.zeros(1)}, lr=0.1)
    with pytest.raises(ValueError, match="params must be a dict"):
        sgd_step([np.zeros(1)], [np.zeros(1)], lr=0.1)
    with pytest.raises(ValueError, match="grads must be a dict"):
        sgd_step({"w": np.zeros(1)}, [np.zeros(1)], lr=0.1)
    with pytest.raises(ValueError, match="params must be a dict"):
        adam_init([np.zeros(1)])
    with pytest.raises(ValueError, match="params must be a dict"):
        momentum_init([np.zeros(1)])


HYPER = [
    ("sgd", {"lr": -0.1}, "lr"), ("sgd", {"lr": NAN}, "lr"), ("sgd", {"lr": INF}, "lr"), ("sgd", {"lr": "0.1"}, "lr"),
    ("momentum", {"momentum": -0.5}, "momentum"), ("momentum", {"momentum": NAN}, "momentum"),
    ("momentum", {"lr": -1.0}, "lr"),
    ("adam", {"beta1": 1.0}, "beta1"), ("adam", {"beta1": -0.1}, "beta1"), ("adam", {"beta2": 1.0}, "beta2"),
    ("adam", {"beta2": NAN}, "beta2"), ("adam", {"eps": 0.0}, "eps"), ("adam", {"eps": -1e-8}, "eps"),
    ("adam", {"lr": -1e-3}, "lr"), ("adamw", {"weight_decay": -0.01}, "weight_decay"),
    ("adamw", {"weight_decay": NAN}, "weight_decay"), ("adamw", {"lr": True}, "lr"),
]


@pytest.mark.parametrize("optimizer, change, name", HYPER, ids=[f"{o}-{k}" for o, k, _ in HYPER])
def test_optimiser_hyper_parameters_are_range_checked(optimizer, change, name):
    params, grads = {"w": np.zeros(2)}, {"w": np.ones(2)}
    calls = {
        "sgd": lambda: sgd_step(params, grads, **{"lr": 0.1, **change}),
        "momentum": lambda: momentum_step(params, grads, momentum_init(params), **{"lr": 0.1, **change}),
        "adam": lambda: adam_step(params, grads, adam_init(params), **change),
        "adamw": lambda: adamw_step(params, grads, adam_init(params), **change),
    }
    with pytest.raises(ValueError, match=rf"^{name} must"):
        calls[optimizer]()


def test_hyper_parameters_at_the_edge_of_their_range_are_accepted():
    params, grads = {"w": np.array([1.0])}, {"w": np.array([2.0])}
    assert sgd_step(params, grads, lr=0.0)["w"].tolist() == [1.0]
    assert momentum_step(params, grads, momentum_init(params), lr=1.0, momentum=0.0)[0]["w"].tolist() == [-1.0]
    new, _ = adam_step(params, grads, adam_init(params), lr=1.0, beta1=0.0, beta2=0.0, eps=1e-300)
    assert new["w"].tolist() == [0.0]  # m_hat = g, v_hat = g^2: a step of exactly lr
    assert adamw_step(params, grads, adam_init(params), lr=0.0, weight_decay=0.0)[0]["w"].tolist() == [1.0]


@pytest.mark.parametrize("max_norm", [-1.0, NAN, "1", None])
def test_clip_max_norm_is_checked(max_norm):
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm([np.ones(2)], max_norm)


def test_clip_with_infinite_max_norm_never_clips_and_the_flag_must_be_bool():
    clipped, total = clip_grad_norm([np.array([3e100, 4e100])], INF)
    assert total == 5e100 and clipped[0].tolist() == [3e100, 4e100]
    with pytest.raises(ValueError, match="error_if_nonfinite"):
        clip_grad_norm([np.ones(2)], 1.0, error_if_nonfinite="yes")


# ----------------------------------------------------------------------------- caches


def test_caches_are_named_tuples_that_still_index_like_the_old_tuples():
    Q = np.array([[1.0, 0.0]])
    K, V = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0], [3.0]])
    _, cache = attention(Q, K, V)
    assert isinstance(cache, AttentionCache) and isinstance(cache, tuple)
    assert cache._fields == ("Q", "K", "V", "A") and cache[3] is cache.A
    e = math.exp(1 / math.sqrt(2))  # the score of key 0 is 1/sqrt(2), of key 1 is 0
    np.testing.assert_allclose(cache.A, [[e / (e + 1), 1 / (e + 1)]], rtol=1e-15)
    _, cache = layer_norm(np.array([1.0, 3.0]), np.ones(2), np.zeros(2))
    assert isinstance(cache, LayerNormCache) and cache.sigma.tolist() == [math.sqrt(1.0 + 1e-5)]
    y, cache = softmax([0.0, 0.0])
    np.testing.assert_array_equal(softmax_backward([1.0, 0.0], (cache.y,)), [0.25, -0.25])  # a hand-built tuple


def test_a_cache_from_another_operation_is_refused_by_name():
    _, linear_cache = linear(np.ones((2, 2)), np.eye(2))
    assert isinstance(linear_cache, LinearCache)
    with pytest.raises(ValueError, match=r"cache must be the LayerNormCache.*that layer_norm returns"):
        layer_norm_backward(np.ones((2, 2)), linear_cache)
    with pytest.raises(ValueError, match=r"SoftmaxCache"):
        softmax_backward(np.ones(2), linear_cache)
    with pytest.raises(ValueError, match=r"AttentionCache"):
        attention_backward(np.ones((1, 1)), softmax([1.0])[1])
    with pytest.raises(ValueError, match=r"LinearCache"):
        linear_backward(np.ones((2, 2)), None)
    with pytest.raises(ValueError, match="RNNCache"):
        rnn_backward(np.ones((1, 1, 1)), linear_cache)
    with pytest.raises(ValueError, match="GeluCache"):
        gelu_backward(np.ones(1), SoftmaxCache(np.ones(1)))
    with pytest.raises(ValueError, match="cache.approximate"):
        gelu_backward(np.ones(1), (np.ones(1), "erf"))
    with pytest.raises(ValueError, match="the dict that forward returns"):
        backward(np.ones((1, 20)), linear_cache)


# ----------------------------------------------------------------------------- gradcheck and monitor


def test_gradcheck_arguments_are_checked():
    f = lambda x: float(np.sum(x**2))  # noqa: E731
    x = [np.array([1.0, 2.0])]
    for kwargs, name in (({"h": 0.0}, "h"), ({"h": NAN}, "h"), ({"max_entries": 0}, "max_entries"),
                         ({"seed": -1}, "seed")):
        with pytest.raises(ValueError, match=name):
            gradcheck(f, x, [np.array([2.0, 4.0])], **kwargs)
    with pytest.raises(ValueError, match="index 1 is not one of the 1 inputs"):
        numerical_gradient(f, x, 1)
    with pytest.raises(ValueError, match=r"entries must be flat indices in \[0, 2\)"):
        numerical_gradient(f, x, 0, entries=[2])
    with pytest.raises(ValueError, match="floor"):
        relative_error([1.0], [1.0], floor=0.0)
    with pytest.raises(ValueError, match=r"analytic \(2,\) and numeric \(3,\)"):
        relative_error([1.0, 2.0], [1.0, 2.0, 3.0])


@pytest.mark.parametrize("huge", [0.0, -1.0, NAN, INF, "100"])
def test_gradient_report_threshold_is_checked(huge):
    with pytest.raises(ValueError, match="huge"):
        gradient_report({"w": np.ones(2)}, huge=huge)


# ----------------------------------------------------------------------------- model and training settings


@pytest.mark.parametrize("change, name", [
    ({"ln_eps": INF}, "ln_eps"), ({"ln_eps": NAN}, "ln_eps"), ({"ln_eps": 0.0}, "ln_eps"),
    ({"n_layers": True}, "n_layers"), ({"d_model": 2.5}, "d_model"), ({"vocab_size": 0}, "vocab_size"),
    ({"norm": ["pre"]}, "norm"), ({"activation": np.array(["relu"])}, "activation"),
])
def test_config_fields_are_checked(change, name):
    with pytest.raises(ValueError, match=name):
        TransformerConfig(**change)


def test_forward_arguments_are_checked():
    config = TransformerConfig(n_layers=1, d_model=8, n_heads=2, d_ff=8)
    params = init_params(config)
    with pytest.raises(ValueError, match="record must be True or False"):
        forward(params, [[1, 2]], config, record="yes")
    with pytest.raises(ValueError, match="config must be a TransformerConfig"):
        forward(params, [[1, 2]], config.as_dict())
    with pytest.raises(ValueError, match="seed"):
        init_params(config, seed=-1)


@pytest.mark.parametrize("change, name", [
    ({"lr": 0.0}, "lr"), ({"lr": NAN}, "lr"), ({"steps": -1}, "steps"), ({"batch_size": 0}, "batch_size"),
    ({"eval_every": 0}, "eval_every"), ({"probe_size": 5000}, "probe_size"), ({"probe_steps": [0, 10]}, "probe_steps"),
    ({"probe_steps": (0, -5)}, "probe_steps"), ({"example": "Sum(1,2,3)"}, "Sum"), ({"config": {}}, "config"),
    ({"timing_repeats": 0}, "timing_repeats"), ({"n_train": 0}, "n_train"), ({"init_seed": 1.5}, "init_seed"),
])
def test_training_settings_are_checked(change, name):
    with pytest.raises(ValueError, match=name):
        TrainingSettings(**change)


def test_the_other_ops_name_their_bad_arguments():
    with pytest.raises(ValueError, match=r"targets must be an integer array"):
        cross_entropy(np.zeros((1, 2)), [True])
    with pytest.raises(ValueError, match=r"E \(3,\) must be a matrix"):
        embedding([0], np.zeros(3))
    with pytest.raises(ValueError, match=r"W_hh \(2, 3\)"):
        rnn_forward(np.zeros((1, 1, 2)), np.zeros((1, 3)), np.zeros((2, 3)), np.zeros((2, 3)), np.zeros(3))


def test_backward_cache_messages_name_the_forward_function():
    with pytest.raises(ValueError, match=r"^cache must be the GeluCache\('x', 'approximate'\) that gelu returns, got "
                                         r"NoneType$"):
        gelu_backward(np.ones(1), None)
    with pytest.raises(ValueError, match=r"that rnn_forward returns, got NoneType$"):
        rnn_backward(np.ones((1, 1, 1)), None)
    with pytest.raises(ValueError, match=r"^x_max must be > 0.0, got -1.0$"):
        gelu_derivative_max_difference(x_max=-1.0)
    with pytest.raises(ValueError, match=r"^step must be <= 1.0, got 2.0$"):
        gelu_derivative_max_difference(x_max=1.0, step=2.0)


def test_messages_are_exact_where_a_name_alone_would_match_a_garbled_one():
    with pytest.raises(ValueError, match=r"^n_heads = 5 must be positive and divide d_model = 64$"):
        TransformerConfig(n_heads=5)
    with pytest.raises(ValueError, match=r"^ln_eps must be > 0.0, got 0.0$"):
        TransformerConfig(ln_eps=0.0)
    with pytest.raises(ValueError, match=r"^cache must be the dict that forward returns$"):
        backward(np.ones((1, 20)), {})
    with pytest.raises(ValueError, match=r"^params must be a dict of arrays, got list$"):
        adam_init([np.zeros(1)])
    params, grads = {"w": np.zeros(2)}, {"w": np.ones(2)}
    with pytest.raises(ValueError, match=r"^beta2 must be >= 0.0, got -0.1$"):
        adam_step(params, grads, adam_init(params), beta2=-0.1)
    with pytest.raises(ValueError, match=r"^state\['t'\] must be >= 0, got -1$"):
        adam_step(params, grads, {**adam_init(params), "t": -1})
    with pytest.raises(ValueError, match=r"^state has no 'm' entry \(it has \['t', 'v'\]\); build the state with "
                                         r"adam_init$"):
        adam_step(params, grads, {"t": 0, "v": {"w": np.zeros(2)}})
    with pytest.raises(ValueError, match=r"that relu returns, got NoneType$"):
        relu_backward(np.ones(1), None)
    with pytest.raises(ValueError, match=r"that cross_entropy returns, got NoneType$"):
        cross_entropy_backward(1.0, None)
    with pytest.raises(ValueError, match=r"that layer_norm returns, got NoneType$"):
        layer_norm_backward(np.ones(1), None)
    with pytest.raises(ValueError, match=r"that linear returns, got NoneType$"):
        linear_backward(np.ones(1), None)
    with pytest.raises(ValueError, match=r"that embedding returns, got NoneType$"):
        embedding_backward(np.ones(1), None)
    with pytest.raises(ValueError, match=r"that multi_head_attention returns, got NoneType$"):
        multi_head_attention_backward(np.ones(1), None)


def test_more_messages_that_must_name_the_argument_exactly():
    with pytest.raises(ValueError, match=r"^seed must be >= 0, got -1$"):
        init_params(TransformerConfig(), seed=-1)
    with pytest.raises(ValueError, match=r"^config must be a TransformerConfig, got dict$"):
        forward({}, [[1]], {})
    with pytest.raises(ValueError, match=r"^eps must be > 0.0, got 0.0$"):
        layer_norm(np.ones(2), np.ones(2), np.zeros(2), eps=0.0)
    with pytest.raises(ValueError, match=r"^d_model must be >= 1, got 0$"):
        positional_encoding(3, 0)
    for X in (np.zeros((3, 0)), np.zeros((2, 3, 0))):
        with pytest.raises(ValueError, match=r"must be \[\.\.\., n, d_model\] with n >= 1 and d_model >= 1$"):
            multi_head_attention(X, *[np.zeros((0, 0))] * 4, n_heads=1)


def test_optimiser_pairs_name_what_is_missing_and_what_is_not_a_dict():
    with pytest.raises(ValueError, match=r"^grads have different names from params: missing \['b'\], unexpected \[\]$"):
        sgd_step({"w": np.zeros(1), "b": np.zeros(1)}, {"w": np.zeros(1)}, lr=0.1)
    with pytest.raises(ValueError, match=r"^grads have different names from params: missing \[\], unexpected \['c'\]$"):
        sgd_step({"w": np.zeros(1)}, {"w": np.zeros(1), "c": np.zeros(1)}, lr=0.1)
    with pytest.raises(ValueError, match=r"^params must be a dict of arrays, got list$"):
        sgd_step([np.zeros(1)], {}, lr=0.1)
    with pytest.raises(ValueError, match=r"^grads must be a dict of arrays, got list$"):
        sgd_step({}, [np.zeros(1)], lr=0.1)


def test_a_zero_key_dimension_is_refused_with_leading_axes_too():
    with pytest.raises(ValueError, match=r"have d_k = 0"):
        attention(np.zeros((2, 3, 0)), np.zeros((2, 4, 0)), np.zeros((2, 4, 1)))


def test_training_settings_messages_and_edges():
    from derivations.reference.train import TrainingSettings

    with pytest.raises(ValueError, match=r"^config must be a TransformerConfig, got dict$"):
        TrainingSettings(config={})
    with pytest.raises(ValueError, match=r"^lr must be > 0.0, got 0.0$"):
        TrainingSettings(lr=0.0)
    with pytest.raises(ValueError, match=r"^example must be an expression such as 'Max\(1,6,2\)', got 5$"):
        TrainingSettings(example=5)
    edge = TrainingSettings(n_train=16, probe_size=16, batch_size=1, eval_every=1, timing_repeats=1, n_held_out=0)
    assert edge.probe_size == edge.n_train == 16  # the probe may be the whole training set
