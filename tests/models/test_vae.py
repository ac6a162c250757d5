"""Oobleck VAE: parity with the original, real-size parameter count, PyTorch conv semantics, shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from uniflow_jax import config_lib, nnx_utils, parallel, parity
from uniflow_jax.models import layers, vae
from uniflow_jax.weights import key_manifest


def test_matches_original_fixture(ref_dir):
    outputs = parity.check_vae(ref_dir)
    assert len(outputs) == 7
    for name, (ours, original) in outputs.items():
        assert parity.relative_error(ours, original) <= 1e-4, name
    np.testing.assert_array_equal(outputs["out_latent_mask"][0].sum(-1), [20, 15])


def test_real_size_parameter_count_equals_manifest(ref_dir):
    cfg = config_lib.vae_config(config_lib.base_config())
    state = nnx.state(nnx.eval_shape(lambda: vae.VAE(cfg, rngs=nnx.Rngs(0))))
    shapes = key_manifest.read_manifest(ref_dir / "state_dict_stable_vae.txt")
    assert nnx_utils.count_parameters(state, nnx.Param) == key_manifest.count_elements(shapes) == 43_846_785


def test_sin_squared_matches_float64_sine_and_its_derivative():
    x = np.linspace(-2e4, 2e4, 2_000_001, dtype=np.float32)
    exact = np.sin(x.astype(np.float64)) ** 2
    assert np.abs(np.asarray(jax.jit(vae.sin_squared)(x)) - exact).max() <= 5e-7
    grad = jax.grad(lambda v: vae.sin_squared(v).sum())(jnp.asarray(x[::997]))
    np.testing.assert_allclose(grad, np.sin(2 * x[::997].astype(np.float64)), atol=3e-6)


@pytest.mark.parametrize("stride", [2, 4, 6, 10])
def test_conv_transpose_matches_direct_definition(stride):
    """Transposed conv = scatter-add of kernel copies, trimmed by ``padding`` on both sides (PyTorch)."""
    rng = np.random.default_rng(stride)
    k, cin, cout, t = 2 * stride, 3, 2, 5
    x, w = rng.standard_normal((1, t, cin)), rng.standard_normal((k, cin, cout))
    pad = (stride + 1) // 2
    full = np.zeros(((t - 1) * stride + k, cout))
    for i in range(t):
        full[i * stride : i * stride + k] += np.einsum("c,kco->ko", x[0, i], w)
    expected = full[pad : full.shape[0] - pad]
    ours = layers.conv_transpose1d(jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32), stride=stride, padding=pad)
    assert ours.shape == (1, t * stride, cout)
    np.testing.assert_allclose(ours[0], expected, atol=1e-5)


def test_round_trip_shapes_and_sampling():
    cfg = vae.VAEConfig(channels=4)
    mesh = parallel.make_mesh((1, 1, 1), jax.devices()[:1])
    graphdef, state = nnx_utils.create_sharded(lambda: vae.VAE(cfg, rngs=nnx.Rngs(0)), mesh)

    @jax.jit
    def run(state, wave, key):
        model = nnx.merge(graphdef, state)
        mean, std = model.encode_moments(wave)
        z = model.encode(wave, key)
        return mean, std, z, model.decode(z)

    wave = jax.random.uniform(jax.random.key(0), (2, 3 * cfg.hop_length), minval=-0.5, maxval=0.5)
    mean, std, z, decoded = run(state, wave, jax.random.key(1))
    assert mean.shape == (2, 3, cfg.latent_dim) and decoded.shape == wave.shape
    assert np.all(std > 1e-4)
    np.testing.assert_allclose(run(state, wave, jax.random.key(1))[2], z)  # explicit key: deterministic
    assert not np.allclose(run(state, wave, jax.random.key(2))[2], z)
