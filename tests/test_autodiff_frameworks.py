"""The engine against JAX, and XLA's flop counts against the engine's (the ``frameworks`` extra).

JAX is imported by a module fixture, once per worker and only when these tests run, so
collecting the suite stays fast. TensorFlow is not imported here: importing it costs several
seconds, and the chapter's TensorFlow blocks are executed (and so tested) with the page.
"""

from __future__ import annotations

import numpy as np
import pytest

from derivations.autodiff import jacfwd, jvp, vjp
from derivations.experiments import autodiff as ex


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
