"""Flow matching: timestep quirks, path/target, masked loss, σ grids, and the jitted Euler sampler."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from uniflow_jax import flow


def test_training_timesteps_reproduce_discrete_schedule_quirk():
    # Recorded in the original: u = 0.4895 -> t = 511 -> network input 510.99997; 0.8735 -> 127.00001.
    sigma, net_t = flow.timesteps_from_u(jnp.array([0.4895, 0.8735, 0.0, 0.99999]))
    np.testing.assert_array_equal(np.asarray(sigma), np.float32([511, 127, 1000, 1]) / np.float32(1000))
    assert net_t[0] == np.float32(510.99997) and net_t[1] == np.float32(127.00001)
    assert net_t[2] == 1000.0 and net_t[3] == 1.0


@pytest.mark.parametrize("strategy", ["logit_normal", "uniform"])
def test_training_timesteps_range_and_determinism(strategy):
    sigma, _net_t = flow.training_timesteps(jax.random.key(0), 4096, strategy)
    assert float(sigma.min()) >= 0.001 and float(sigma.max()) <= 1.0
    np.testing.assert_array_equal(sigma, flow.training_timesteps(jax.random.key(0), 4096, strategy)[0])
    mean = 0.5
    assert abs(float(sigma.mean()) - mean) < 0.02
    if strategy == "logit_normal":  # concentrated in the middle compared to uniform
        assert float(jnp.mean(jnp.abs(sigma - 0.5) < 0.25)) > 0.6
    with pytest.raises(ValueError, match="unknown timestep sampling"):
        flow.training_timesteps(jax.random.key(0), 4, "cosine")


def test_path_and_target():
    x0, eps = jnp.full((2, 3, 4), 2.0), jnp.full((2, 3, 4), -1.0)
    x = flow.interpolate(x0, eps, jnp.array([0.0, 0.25]))
    np.testing.assert_allclose(x[0], 2.0)
    np.testing.assert_allclose(x[1], 0.75 * 2.0 - 0.25)
    np.testing.assert_allclose(flow.velocity_target(x0, eps), -3.0)


def test_masked_mse_is_a_per_sample_mean_over_valid_entries():
    pred = jnp.zeros((2, 3, 2))
    target = jnp.array([[[1, 1], [2, 2], [9, 9]], [[3, 3], [0, 0], [0, 0]]], jnp.float32)
    mask = jnp.array([[True, True, False], [True, False, False]])
    np.testing.assert_allclose(flow.masked_mse(pred, target, mask), [(1 + 1 + 4 + 4) / 4, 9.0])


def test_sway_grid_matches_the_original_recording():
    sigmas = flow.sigma_schedule(4, -1.0)
    np.testing.assert_array_equal(sigmas * np.float32(1000), np.float32([1000, 923.8795, 707.10675, 382.6834, 0]))
    np.testing.assert_allclose(sigmas, np.cos(np.pi / 2 * np.arange(5) / 4), atol=1e-7)
    np.testing.assert_allclose(flow.sigma_schedule(4, None), [1, 0.75, 0.5, 0.25, 0])


def _counting(fn):
    calls = []

    def counted(x, t):
        jax.debug.callback(lambda: calls.append(1))
        return fn(x, t)

    return counted, calls


@pytest.mark.parametrize("num_steps,sway", [(4, -1.0), (25, -1.0), (7, None)])
def test_euler_integrates_linear_field_exactly_with_n_calls(num_steps, sway):
    """dx/dσ = λ·x: Euler gives x₁·Π(1 + λ·Δσ_k); the network is called once per step."""
    lam = 0.7
    velocity, calls = _counting(lambda x, t: lam * x)
    sigmas = flow.sigma_schedule(num_steps, sway)
    x1 = jax.random.normal(jax.random.key(0), (3, 5, 2))
    out = jax.jit(lambda x: flow.euler_sample(velocity, x, sigmas))(x1)
    jax.effects_barrier()
    expected = np.asarray(x1, np.float64) * np.prod(1 + lam * np.diff(sigmas.astype(np.float64)))
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    assert len(calls) == num_steps


def test_euler_feeds_truncated_timesteps_and_constant_field_moves_by_one():
    seen = []

    def velocity(x, t):
        jax.debug.callback(lambda t: seen.append(np.asarray(t)), t)
        return jnp.ones_like(x)

    out = flow.euler_sample(velocity, jnp.zeros((2, 1, 1)), flow.sigma_schedule(4, -1.0))
    jax.effects_barrier()
    np.testing.assert_allclose(out, -1.0, atol=1e-6)  # Σ Δσ = −1
    np.testing.assert_array_equal([s[0] for s in seen], [1000, 923, 707, 382])
    assert all(s.shape == (2,) for s in seen)


def test_classifier_free_guidance_combines_one_doubled_batch():
    batches = []

    def doubled(x, t):
        batches.append(x.shape[0])
        uncond, cond = jnp.split(x, 2)
        return jnp.concatenate([jnp.zeros_like(uncond) + 1.0, cond * 0 + 3.0])

    v = flow.classifier_free_guidance(doubled, 5.0)(jnp.ones((2, 4, 1)), jnp.full((2,), 500.0))
    np.testing.assert_allclose(v, 1.0 + 5.0 * (3.0 - 1.0))
    assert batches == [4]
