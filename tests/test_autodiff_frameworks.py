"""The engine against JAX and TensorFlow, and XLA's flop counts (the ``frameworks`` extra).

JAX and TensorFlow are imported inside the tests, so collecting the suite stays fast; the
tests of this file are grouped so each framework is imported once per worker.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from derivations.autodiff import jacfwd, jvp, vjp
from derivations.experiments import autodiff as ex

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="module")
def jax():
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


def _small_function_jax(jnp):
    W1 = jnp.array([[1.0, 0.0], [2.0, 1.0], [0.0, -1.0]])
    W2 = jnp.array([[0.5, -1.0], [0.0, 1.0], [1.0, 0.5]])
    return lambda x: jnp.sin(x @ W1) * jnp.tanh(x @ W2)


def test_engine_jvp_and_vjp_equal_jax_s(jax):
    import jax.numpy as jnp

    f = _small_function_jax(jnp)
    rng = np.random.default_rng(0)
    x, u, v = rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal(2)
    _, Ju = jvp(ex.small_function, (x,), (u,))
    _, pullback = vjp(ex.small_function, x)
    _, Ju_jax = jax.jvp(f, (jnp.array(x),), (jnp.array(u),))
    _, pullback_jax = jax.vjp(f, jnp.array(x))
    np.testing.assert_allclose(Ju, np.asarray(Ju_jax), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(pullback(v)[0], np.asarray(pullback_jax(jnp.array(v))[0]), rtol=1e-14, atol=1e-15)


def test_xla_counts_the_same_asymmetry_as_the_engine(jax):
    wide, tall = ex.xla_jacobian_flops(64, 4), ex.xla_jacobian_flops(4, 64)
    assert wide["max_difference"] < 1e-14 and tall["max_difference"] < 1e-14
    assert wide["forward"] > 8 * wide["reverse"] and tall["reverse"] > 8 * tall["forward"]
    engine = ex.jacobian_cost(64, 4)
    # two independent counts of the same programs: within a factor of 1.5 of each other
    assert 1 / 1.5 < wide["forward"] / engine["forward"] < 1.5
    assert 1 / 1.5 < wide["reverse"] / engine["reverse"] < 1.5


def test_xla_jacobian_is_the_engine_s(jax):
    import jax.numpy as jnp

    f, weights = ex.mlp_function(6, 3)
    x = np.random.default_rng(1).standard_normal(6)
    W0, W1, W2 = (jnp.asarray(w) for w in weights)
    J_jax = jax.jacrev(lambda v: jnp.tanh(jnp.tanh(v @ W0) @ W1) @ W2)(jnp.asarray(x))
    np.testing.assert_allclose(jacfwd(f, x), np.asarray(J_jax), rtol=1e-13, atol=1e-15)


def test_engine_vjp_equals_tensorflow_s_gradient_tape():
    import tensorflow as tf

    rng = np.random.default_rng(2)
    x, v = rng.standard_normal(3), rng.standard_normal(2)
    W1 = tf.constant([[1.0, 0.0], [2.0, 1.0], [0.0, -1.0]], dtype=tf.float64)
    W2 = tf.constant([[0.5, -1.0], [0.0, 1.0], [1.0, 0.5]], dtype=tf.float64)
    xt = tf.constant(x[None, :])
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = tf.sin(xt @ W1) * tf.tanh(xt @ W2)
    expected = tape.gradient(y, xt, output_gradients=tf.constant(v[None, :])).numpy()[0]
    np.testing.assert_allclose(vjp(ex.small_function, x)[1](v)[0], expected, rtol=1e-14, atol=1e-15)
