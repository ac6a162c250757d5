"""Pallas splash attention (TPU) behind ``layers.masked_attention(..., implementation="splash")``.

The kernel is flash attention tiled in blocks of 128 queries × 128 keys that never writes the (T, S) score
matrix to HBM, forward and backward. It takes one example's (heads, length, head_dim) and has no key mask, so
padded keys are hidden with segment ids (a query attends only to keys of its own segment): valid keys are
segment 0 with every query, padded keys segment 1. Lengths are padded to whole blocks here and cut back after.
Under a mesh it runs per shard (``shard_map`` over the batch and head axes the logical rules give; keys and
values are gathered whole along their length). On a platform other than TPU it runs in Pallas' interpret mode:
slow, and meant for checking the numerics against XLA's attention on a CPU.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as kernel_lib
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as mask_lib

from uniflow_jax import parallel

BLOCK = 128  # the kernel's query and key tile (its default block sizes, forward and backward)


def _pad_length(x: jax.Array, length: int) -> jax.Array:
    return jnp.pad(x, ((0, 0), (0, length - x.shape[1])) + ((0, 0),) * (x.ndim - 2))


def _local_splash(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array, interpret: bool) -> jax.Array:
    """Splash attention of one shard: q (B, T, H, Dh), k/v (B, S, H, Dh), key_mask (B, S)."""
    b, t, heads, head_dim = q.shape
    s = k.shape[1]
    t_pad, s_pad = -(-t // BLOCK) * BLOCK, -(-s // BLOCK) * BLOCK
    # A row with no valid key would have an empty softmax (a division by zero in the kernel): such a row is
    # padding itself, and attends to all of its keys instead.
    hidden = _pad_length(~key_mask, s_pad).at[:, s:].set(True)
    kv_segments = jnp.where(jnp.any(key_mask, axis=1, keepdims=True), hidden, False).astype(jnp.int32)
    segments = kernel_lib.SegmentIds(q=jnp.zeros((b, t_pad), jnp.int32), kv=kv_segments)
    kernel = kernel_lib.make_splash_mha(
        mask_lib.MultiHeadMask([mask_lib.FullMask((t_pad, s_pad))] * heads),
        block_sizes=kernel_lib.BlockSizes.get_default(),
        head_shards=1,
        q_seq_shards=1,
        interpret=interpret,
    )
    heads_first = lambda x, n: _pad_length(x, n).transpose(0, 2, 1, 3)  # noqa: E731
    scaled = (q.astype(jnp.float32) * head_dim**-0.5).astype(q.dtype)  # the kernel does not scale the logits
    out = jax.vmap(kernel)(heads_first(scaled, t_pad), heads_first(k, s_pad), heads_first(v, s_pad),
                           segment_ids=segments)  # fmt: skip
    return out.transpose(0, 2, 1, 3)[:, :t]


def _on_platform(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array) -> jax.Array:
    """The compiled kernel where the program is lowered for a TPU (also ahead of time, on this host), Pallas'
    interpret mode elsewhere."""
    return jax.lax.platform_dependent(
        q, k, v, key_mask,
        tpu=functools.partial(_local_splash, interpret=False),
        default=functools.partial(_local_splash, interpret=True),
    )  # fmt: skip


def splash_attention(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array | None) -> jax.Array:
    """Scaled dot-product attention over (B, T, H, Dh) with the splash kernel; ``key_mask`` (B, S) hides padded
    keys. Equal to ``jax.nn.dot_product_attention`` wherever a row has a valid key (tests/models/test_splash.py)."""
    key_mask = jnp.ones(k.shape[:2], bool) if key_mask is None else key_mask
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return _on_platform(q, k, v, key_mask)
    q_spec = parallel.logical_to_spec(("batch", "length", "heads", "kv"), q.shape, mesh)
    kv_spec = parallel.logical_to_spec(("batch", None, "heads", "kv"), k.shape, mesh)
    mask_spec = parallel.logical_to_spec(("batch", None), key_mask.shape, mesh)
    sharded = jax.shard_map(
        _on_platform,
        mesh=mesh,
        in_specs=(q_spec, kv_spec, kv_spec, mask_spec),
        out_specs=q_spec,
        check_vma=False,
    )
    return sharded(q, k, v, key_mask)
