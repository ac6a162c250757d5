"""DiT backbone: parity with the original, sizes, padding invariance, sharding, a scanned stack."""

import contextlib
import dataclasses
import io
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.ad_checkpoint import print_saved_residuals

from uniflow_jax import config_lib, nnx_utils, parallel, parity
from uniflow_jax.models import dit
from uniflow_jax.weights import key_manifest

TINY = dit.DiTConfig(embed_dim=64, depth=4, num_heads=4, context_dim=32, ta_context_dim=32)


def _inputs(cfg: dit.DiTConfig, batch: int = 8, frames: int = 24, ctx_len: int = 6, seed: int = 0):
    k = jax.random.split(jax.random.key(seed), 4)
    x = jax.random.normal(k[0], (batch, frames, cfg.latent_dim))
    ta = jax.random.normal(k[1], (batch, frames, cfg.ta_context_dim))
    ctx = jax.random.normal(k[2], (batch, ctx_len, cfg.context_dim))
    t = jax.random.uniform(k[3], (batch,), minval=1, maxval=1000)
    x_mask = jnp.arange(frames)[None] < jnp.linspace(frames // 2, frames, batch).astype(int)[:, None]
    ctx_mask = jnp.arange(ctx_len)[None] < jnp.linspace(1, ctx_len, batch).astype(int)[:, None]
    return x, t, ta, ctx, x_mask, ctx_mask


def test_matches_original_fixture(ref_dir):
    outputs = parity.check_dit(ref_dir)
    assert set(outputs) == {"out_velocity", "out_velocity_scalar_timestep"}
    for name, (ours, original) in outputs.items():
        assert parity.relative_error(ours, original) <= 1e-4, name
    # The scalar timestep is truncated (923.8795 -> 923), so the two outputs differ.
    a, b = outputs["out_velocity"][0], outputs["out_velocity_scalar_timestep"][0]
    assert np.abs(a - b).max() > 1e-4


@pytest.mark.parametrize("size", ["small", "base", "large"])
def test_parameter_count_equals_manifest(ref_dir, size):
    cfg = config_lib.dit_config(config_lib.base_config(size))
    state = nnx.state(nnx.eval_shape(lambda: dit.DiT(cfg, rngs=nnx.Rngs(0))))
    shapes = key_manifest.read_manifest(ref_dir / f"state_dict_flow_matching_{size}.txt")
    assert nnx_utils.count_parameters(state) == key_manifest.count_elements(shapes, "backbone.")
    buffers = key_manifest.count_elements({k: v for k, v in shapes.items() if k.endswith("inv_freq")}, "backbone.")
    assert nnx_utils.count_parameters(state, nnx.Param) == key_manifest.count_elements(shapes, "backbone.") - buffers


@pytest.fixture(scope="module")
def tiny():
    """A jitted tiny backbone with every parameter randomised (zero-initialised projections would hide bugs)."""
    mesh = parallel.make_mesh((1, 1, 1), jax.devices()[:1])
    graphdef, state = nnx_utils.create_sharded(lambda: dit.DiT(TINY, rngs=nnx.Rngs(2)), mesh)
    initial = state
    rng = np.random.default_rng(3)
    state = jax.tree.map(lambda p: p + 0.05 * rng.standard_normal(p.shape, np.float32), state)
    forward = jax.jit(lambda s, *a: nnx.merge(graphdef, s)(*a))
    return forward, state, initial


def test_original_initialisation_zeroes_modulation_and_cross_attention_output(tiny):
    model = nnx.merge(nnx.graphdef(dit.DiT(TINY, rngs=nnx.Rngs(0))), tiny[2])
    assert not np.any(model.in_blocks.adaln.time_ada.kernel[...])
    assert not np.any(model.out_blocks.cross_attn.proj.kernel[...])
    assert not np.any(model.time_ada_final.kernel[...])
    assert np.any(model.final_block.linear.kernel[...])
    assert model.in_blocks.attn.to_q.kernel.shape == (2, 64, 64)  # stacked: (layers, in, out)


def test_padding_does_not_change_valid_frames(tiny):
    forward, state, _ = tiny
    model = lambda *a: forward(state, *a)  # noqa: E731
    x, t, ta, ctx, _, ctx_mask = _inputs(TINY, batch=2)
    # The final k=3 conv reads one frame past the last valid one (as in the original), so every sample
    # keeps at least one padded frame before more padding is appended.
    x_mask = jnp.arange(24)[None] < jnp.array([[13], [23]])
    out = model(x, t, ta, ctx, x_mask, ctx_mask)
    pad = lambda a, n: jnp.pad(a, ((0, 0), (0, n)) + ((0, 0),) * (a.ndim - 2), constant_values=0)  # noqa: E731
    noise = jax.random.normal(jax.random.key(9), (2, 8, TINY.latent_dim))
    out_padded = model(
        jnp.concatenate([x, noise], axis=1), t, pad(ta, 8), pad(ctx, 3), pad(x_mask, 8), pad(ctx_mask, 3)
    )
    for b in range(2):
        valid = np.asarray(x_mask[b])
        np.testing.assert_allclose(out_padded[b, :24][valid], out[b][valid], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("frames,ctx_len", [(24, 6), (11, 7)])
@pytest.mark.parametrize("mesh_shape", [(8, 1, 1), (2, 4, 1), (2, 2, 2)])
def test_sharded_forward_equals_single_device(tiny, mesh_shape, frames, ctx_len):
    forward, state, _ = tiny
    inputs = _inputs(TINY, frames=frames, ctx_len=ctx_len)
    one_state, one_inputs = jax.device_put((state, inputs), jax.devices()[0])
    reference = jax.jit(forward)(one_state, *one_inputs)
    assert len(reference.sharding.device_set) == 1
    mesh = parallel.make_mesh(mesh_shape)
    with jax.set_mesh(mesh), parallel.axis_rules(parallel.DEFAULT_RULES):
        sharded_state = parallel.shard_state(state, mesh)
        sharded_inputs = [jax.device_put(a, parallel.batch_sharding(mesh, a.ndim)) for a in inputs]
        out = jax.jit(forward)(sharded_state, *sharded_inputs)
    assert len(out.sharding.device_set) == 8
    np.testing.assert_allclose(np.asarray(out), np.asarray(reference), atol=1e-5, rtol=0)


def test_program_does_not_grow_with_depth():
    """In/out stacks are scanned: the lowered program (what XLA compiles) is the same size for depth 4 and 16."""

    def program_lines(depth: int) -> int:
        cfg = dit.DiTConfig(embed_dim=64, depth=depth, num_heads=4, context_dim=32, ta_context_dim=32)
        graphdef, state = nnx.split(nnx.eval_shape(lambda: dit.DiT(cfg, rngs=nnx.Rngs(0))))
        args = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), _inputs(cfg))
        return len(jax.jit(lambda s, *a: nnx.merge(graphdef, s)(*a)).lower(state, *args).as_text().splitlines())

    assert program_lines(16) == program_lines(4)


def test_every_parameter_carries_logical_axes_of_its_rank():
    for make in (lambda: dit.DiT(TINY, rngs=nnx.Rngs(0)),):
        for path, var in nnx.to_flat_state(nnx.state(nnx.eval_shape(make))):
            axes = parallel.variable_axes(var)
            assert len(axes) == len(var.shape), (path, axes, var.shape)
            assert all(a is None or a in dict(parallel.DEFAULT_RULES) for a in axes), (path, axes)


def _loss_and_grad(cfg: dit.DiTConfig, state: nnx.State):
    x, t, ta, ctx, x_mask, ctx_mask = _inputs(cfg, batch=2)
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: dit.DiT(cfg, rngs=nnx.Rngs(0))))
    loss = lambda s: jnp.mean(nnx.merge(graphdef, s)(x, t, ta, ctx, x_mask, ctx_mask) ** 2)  # noqa: E731
    return jax.jit(jax.value_and_grad(loss))(state)


@pytest.fixture(scope="module")
def no_remat_loss_and_grad(tiny):
    return _loss_and_grad(dataclasses.replace(TINY, remat="none"), tiny[1])


@pytest.mark.parametrize("remat", ["full", "dots"])
def test_remat_policies_give_the_same_loss_and_gradients(tiny, no_remat_loss_and_grad, remat):
    l0, g0 = no_remat_loss_and_grad
    l1, g1 = _loss_and_grad(dataclasses.replace(TINY, remat=remat), tiny[1])
    np.testing.assert_allclose(l1, l0, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("remat", ["full", "dots"])
def test_remat_keeps_no_attention_probabilities_for_the_backward_pass(tiny, remat):
    """Every block, the mid block and the conditioning streams included, runs under the remat policy: what the
    backward pass keeps of an attention is its inputs, never its (heads, frames, frames) probabilities."""
    cfg = dataclasses.replace(TINY, remat=remat)
    x, t, ta, ctx, x_mask, ctx_mask = _inputs(cfg, batch=2, frames=40)
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: dit.DiT(cfg, rngs=nnx.Rngs(0))))
    loss = lambda s: jnp.mean(nnx.merge(graphdef, s)(x, t, ta, ctx, x_mask, ctx_mask) ** 2)  # noqa: E731
    listing = io.StringIO()
    with contextlib.redirect_stdout(listing):
        print_saved_residuals(loss, tiny[1])  # one line per residual: "f32[2,4,40,40] output of exp from ..."
    saved = listing.getvalue().splitlines()
    assert any("output of" in line for line in saved), saved
    probabilities = [line for line in saved if re.match(r"\w+\[[\d,]*40,40\]", line)]
    assert not probabilities, probabilities
