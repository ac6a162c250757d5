"""Loading original state dicts: names, layouts, stacking, and complete error reports."""

import jax
import numpy as np
import pytest
from flax import nnx

from uniflow_jax import nnx_utils, parallel
from uniflow_jax.models import dit, vae
from uniflow_jax.weights import names, torch_import

TINY = dit.DiTConfig(embed_dim=16, depth=2, num_heads=2, context_dim=8, ta_context_dim=8)


def _abstract(make):
    return nnx.state(nnx.eval_shape(make))


def test_dit_export_import_round_trip_uses_original_names():
    model = dit.DiT(TINY, rngs=nnx.Rngs(0))
    exported = torch_import.export_state(nnx.state(model), names.DIT)
    assert exported["in_blocks.0.mlp.net.0.proj.weight"].shape == (8 * 16, 16)  # torch Linear (out, in)
    assert exported["patch_embed.proj.weight"].shape == (16, 128, 1)  # torch Conv1d (out, in, k)
    assert exported["final_block.final_layer.weight"].shape == (128, 128, 3)
    assert "out_blocks.0.skip_linear.weight" in exported and "in_blocks.1.attn.to_q.weight" not in exported
    assert "mid_block.attn.rotary.inv_freq" in exported
    restored = torch_import.import_state(_abstract(lambda: dit.DiT(TINY, rngs=nnx.Rngs(1))), exported, names.DIT)
    for (path, a), (_, b) in zip(nnx.to_flat_state(nnx.state(model)), nnx.to_flat_state(restored), strict=False):
        np.testing.assert_array_equal(a.get_value(), b.get_value(), err_msg=str(path))


def test_vae_export_keeps_weight_norm_and_transposed_conv_layouts():
    cfg = vae.VAEConfig(channels=2)
    mesh = parallel.make_mesh((1, 1, 1), jax.devices()[:1])
    _, state = nnx_utils.create_sharded(lambda: vae.VAE(cfg, rngs=nnx.Rngs(0)), mesh)
    exported = torch_import.export_state(state, names.VAE)
    assert exported["decoder.layers.1.layers.1.weight_v"].shape == (16, 8, 20)  # ConvTranspose1d (in, out, k)
    assert exported["decoder.layers.1.layers.1.weight_g"].shape == (16, 1, 1)  # norm over all but dim 0 (in)
    assert exported["encoder.layers.1.layers.4.weight_g"].shape == (2, 1, 1)
    assert "decoder.layers.6.bias" not in exported


def test_every_problem_is_reported_at_once():
    model = dit.DiT(TINY, rngs=nnx.Rngs(0))
    tensors = dict(torch_import.export_state(nnx.state(model), names.DIT))
    del tensors["mid_block.norm1.weight"]
    del tensors["out_blocks.0.adaln.time_ada.bias"]
    tensors["in_blocks.0.attn.to_k.weight"] = np.zeros((3, 3), np.float32)
    tensors["mid_block.extra.weight"] = np.zeros(2, np.float32)
    with pytest.raises(torch_import.WeightLoadError) as error:
        torch_import.import_state(_abstract(lambda: dit.DiT(TINY, rngs=nnx.Rngs(0))), tensors, names.DIT)
    message = str(error.value)
    assert "4 problem(s)" in message
    assert "missing: mid_block.norm1.weight" in message
    assert "missing: out_blocks.0.adaln.time_ada.bias" in message
    assert "shape mismatch: in_blocks.0.attn.to_k.weight has (3, 3), expected (16, 16)" in message
    assert "unexpected: mid_block.extra.weight" in message


def test_prefixed_names_for_nested_modules():
    prefixed = names.with_prefix(names.DIT, "backbone.")
    assert (
        prefixed.original_name(("in_blocks", "mlp", "proj_in", "kernel"), 3)
        == "backbone.in_blocks.3.mlp.net.0.proj.weight"
    )
    assert prefixed.original_name(("time_embed", "fc2", "bias")) == "backbone.time_embed.mlp.2.bias"
