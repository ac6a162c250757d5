"""The Pallas splash-attention path (TPU) against XLA's attention, run here in Pallas' interpret mode."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from test_dit import _inputs

from uniflow_jax import nnx_utils, parallel
from uniflow_jax.models import dit, layers

TINY = dit.DiTConfig(embed_dim=64, depth=4, num_heads=4, context_dim=32, ta_context_dim=32, remat="dots")


def _assert_close(ours, reference, tolerance=1e-5):
    """max |ours − reference| ≤ tolerance · max(1, max |reference|), the parity rule at a tighter tolerance."""
    ours, reference = np.asarray(ours), np.asarray(reference)
    assert np.abs(ours - reference).max() <= tolerance * max(1.0, np.abs(reference).max())


def _qkv(b, t, s, h, d, seed=0):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.standard_normal((b, n, h, d)), jnp.float32) for n in (t, s, s)]


@pytest.mark.parametrize("t,s,head_dim", [(250, 70, 16), (130, 128, 80), (128, 300, 64)])
def test_equals_xla_attention_with_padded_keys(t, s, head_dim):
    """Lengths off the 128 block and on it, the head widths of small/base (64) and large (80)."""
    q, k, v = _qkv(3, t, s, 2, head_dim)
    key_mask = jnp.arange(s)[None] < jnp.array([[s], [s // 2], [1]])

    def loss(implementation):
        return lambda q, k, v: jnp.sum(jnp.sin(layers.masked_attention(q, k, v, key_mask, implementation)))

    out_xla, out_splash = (jax.jit(layers.masked_attention, static_argnums=4)(q, k, v, key_mask, i)
                           for i in ("xla", "splash"))  # fmt: skip
    _assert_close(out_splash, out_xla)
    grads = [jax.jit(jax.grad(loss(i), argnums=(0, 1, 2)))(q, k, v) for i in ("xla", "splash")]
    for a, b in zip(*grads, strict=True):
        _assert_close(b, a)


def test_row_without_valid_keys_stays_finite():
    q, k, v = _qkv(2, 16, 8, 2, 16)
    out = layers.masked_attention(q, k, v, jnp.array([[True] * 8, [False] * 8]), "splash")
    assert np.isfinite(np.asarray(out)).all()


def _loss_and_grad(cfg, state, mesh_shape):
    inputs = _inputs(cfg)  # test_dit's: batch 8 × 24 frames, 6 context tokens, padded rows
    x_mask = inputs[4]
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: dit.DiT(cfg, rngs=nnx.Rngs(0))))

    def loss(s, *a):
        out = nnx.merge(graphdef, s)(*a)
        return jnp.sum(jnp.where(x_mask[..., None], out, 0.0) ** 2)

    mesh = parallel.make_mesh(mesh_shape, jax.devices()[: int(np.prod(mesh_shape))])
    with jax.set_mesh(mesh), parallel.axis_rules(parallel.DEFAULT_RULES):
        state = parallel.shard_state(state, mesh)
        inputs = [jax.device_put(a, parallel.batch_sharding(mesh, a.ndim)) for a in inputs]
        return jax.device_get(jax.jit(jax.value_and_grad(loss))(state, *inputs))


@pytest.fixture(scope="module")
def tiny_state():
    mesh = parallel.make_mesh((1, 1, 1), jax.devices()[:1])
    _, state = nnx_utils.create_sharded(lambda: dit.DiT(TINY, rngs=nnx.Rngs(2)), mesh)
    rng = np.random.default_rng(3)  # every parameter randomised: zero-initialised projections would hide bugs
    return jax.device_get(jax.tree.map(lambda p: p + 0.05 * rng.standard_normal(p.shape, np.float32), state))


@pytest.mark.parametrize("mesh_shape", [(1, 1, 1), (2, 2, 2)])
def test_dit_loss_and_gradients_equal_xla(tiny_state, mesh_shape):
    """The backbone trained with splash attention: same loss and gradients as with XLA's, on one device and
    with the batch and heads sharded (the kernel runs per shard)."""
    if len(jax.devices()) < np.prod(mesh_shape):
        pytest.skip(f"needs {np.prod(mesh_shape)} devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)")
    l0, g0 = _loss_and_grad(TINY, tiny_state, (1, 1, 1))
    l1, g1 = _loss_and_grad(dataclasses.replace(TINY, attention="splash"), tiny_state, mesh_shape)
    _assert_close(l1, l0)
    # Against the gradient's overall scale: some leaves' exact gradient is 0 (a bias on the normed keys shifts a
    # query's logits uniformly), which both paths give as rounding noise.
    scale = max(np.abs(g).max() for g in jax.tree.leaves(g0))
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1), strict=True):
        assert np.abs(b - a).max() <= 1e-5 * scale
