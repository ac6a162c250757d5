"""The dual-fusion DiT backbone (upstream ``LayerFusionAudioDiT``).

A U-ViT over latent frames: ``depth/2`` in-blocks whose outputs are kept as long skips, one mid block,
``depth/2`` out-blocks that fuse the skips back in LIFO order. Each block is adaLN self-attention (RoPE) →
additive time-aligned fusion → cross-attention to the context → adaLN GEGLU MLP. The in- and out-stacks
are stored with a leading ``layers`` axis and applied with ``jax.lax.scan`` so compile time does not grow
with depth. Activations are channels-last (B, T, C).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from uniflow_jax import parallel
from uniflow_jax.models import layers
from uniflow_jax.models.layers import LayerNorm, Linear

REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}
ATTENTION_IMPLEMENTATIONS = ("xla", "cudnn", "splash")  # layers.masked_attention's


@dataclasses.dataclass(frozen=True)
class DiTConfig:
    """Backbone sizes. ``depth`` counts the in- and out-blocks (the original's ``depth``); one mid block is added."""

    embed_dim: int = 768
    depth: int = 16
    num_heads: int = 12
    mlp_ratio: float = 4.0
    latent_dim: int = 128
    context_dim: int = 1024
    ta_context_dim: int = 1024
    time_freq_dim: int = 256
    remat: str = "dots"
    dtype: str = "float32"
    scan_unroll: int = 1  # layers per scan iteration (1: compile time independent of depth)
    attention: str = "xla"  # "xla", "cudnn" (GPU, bf16) or "splash" (TPU): see layers.masked_attention

    def __post_init__(self):
        if self.depth % 2:
            raise ValueError(f"depth must be even (in + out blocks), got {self.depth}")
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"remat must be one of {sorted(REMAT_POLICIES)}, got {self.remat!r}")
        if self.attention not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"attention must be one of {ATTENTION_IMPLEMENTATIONS}, got {self.attention!r}")

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)


class TimestepEmbedding(nnx.Module):
    """Sinusoid (cos first) → Linear → SiLU → Linear."""

    def __init__(self, freq_dim: int, dim: int, *, rngs: nnx.Rngs):
        self.freq_dim = freq_dim
        self.fc1 = Linear(freq_dim, dim, ("time_freq", "embed"), rngs=rngs)
        self.fc2 = Linear(dim, dim, ("embed", "embed"), rngs=rngs)

    def __call__(self, t: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.silu(self.fc1(layers.sinusoidal_timestep_embedding(t, self.freq_dim))))


class ContextEmbedding(nnx.Module):
    """Linear → SiLU → Linear on the context tokens, applied once (each block norms it itself)."""

    def __init__(self, context_dim: int, dim: int, *, dtype, rngs: nnx.Rngs):
        self.fc1 = Linear(context_dim, dim, ("channels", "embed"), dtype=dtype, rngs=rngs)
        self.fc2 = Linear(dim, dim, ("embed", "embed"), dtype=dtype, rngs=rngs)

    def __call__(self, context: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.silu(self.fc1(context)))


class AdaLN(nnx.Module):
    """Per-block modulation: Linear(D→6D) of SiLU(time embedding), zero-initialised."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs):
        self.time_ada = Linear(dim, 6 * dim, ("embed", "mlp"), kernel_init=layers.zeros, rngs=rngs)

    def __call__(self, time_silu: jax.Array) -> tuple[jax.Array, ...]:
        return tuple(jnp.split(self.time_ada(time_silu), 6, axis=-1))


class DiTBlock(nnx.Module):
    """One LayerFusion block; out-blocks (``skip=True``) first fuse their long skip."""

    def __init__(self, cfg: DiTConfig, *, skip: bool, rngs: nnx.Rngs):
        d, dtype = cfg.embed_dim, jnp.dtype(cfg.dtype)
        if skip:
            self.skip_norm = LayerNorm(2 * d, "embed", rngs=rngs)
            self.skip_linear = Linear(2 * d, d, ("mlp", "embed"), dtype=dtype, rngs=rngs)
        self.norm1 = LayerNorm(d, "embed", rngs=rngs)
        fused = cfg.attention
        self.attn = layers.Attention(d, cfg.num_heads, rope=True, dtype=dtype, implementation=fused, rngs=rngs)
        self.ta_context_norm = LayerNorm(cfg.ta_context_dim, "channels", rngs=rngs)
        self.ta_context_projection = Linear(
            cfg.ta_context_dim, d, ("channels", "embed"), use_bias=False, dtype=dtype, rngs=rngs
        )
        self.norm2 = LayerNorm(d, "embed", rngs=rngs)
        self.norm_context = LayerNorm(d, "embed", rngs=rngs)
        self.cross_attn = layers.Attention(
            d, cfg.num_heads, rope=False, zero_out=True, dtype=dtype, implementation=fused, rngs=rngs
        )
        self.norm3 = LayerNorm(d, "embed", rngs=rngs)
        self.mlp = layers.GEGLUFeedForward(d, cfg.mlp_hidden, dtype=dtype, rngs=rngs)
        self.adaln = AdaLN(d, rngs=rngs)

    def conditioning(self, ta_context: jax.Array, context: jax.Array) -> dict[str, jax.Array]:
        """What the block takes from the conditioning streams — the projected time-aligned stream and the
        cross-attention keys/values: constant over a generation's steps, so the sampler computes them once."""
        k, v = self.cross_attn.key_values(self.norm_context(context))
        return {"ta": self.ta_context_projection(self.ta_context_norm(ta_context)), "k": k, "v": v}

    def __call__(
        self,
        x: jax.Array,
        skip: jax.Array | None,
        time_silu: jax.Array,
        rope: jax.Array,
        conditioning: dict[str, jax.Array],
        x_mask: jax.Array,
        context_mask: jax.Array,
    ) -> jax.Array:
        if skip is not None:
            x = self.skip_linear(self.skip_norm(jnp.concatenate([x, skip], axis=-1)))
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaln(time_silu)
        h = layers.modulate(self.norm1(x), shift1, scale1)
        x = x + jnp.tanh(1 - gate1)[:, None, :] * self.attn(h, h, x_mask, rope)
        x = x + conditioning["ta"]
        x = x + self.cross_attn.attend(self.norm2(x), conditioning["k"], conditioning["v"], context_mask)
        h = layers.modulate(self.norm3(x), shift2, scale2)
        x = x + (1 - gate2)[:, None, :] * self.mlp(h)
        return parallel.constrain(x.astype(conditioning["ta"].dtype), ("batch", "length", "embed"))


class FinalBlock(nnx.Module):
    """LayerNorm → FiLM → Linear(D→latent) → Conv1d(k3)."""

    def __init__(self, cfg: DiTConfig, *, rngs: nnx.Rngs):
        self.norm = LayerNorm(cfg.embed_dim, "embed", rngs=rngs)
        self.linear = Linear(cfg.embed_dim, cfg.latent_dim, ("embed", "latent"), rngs=rngs)
        self.final_layer = layers.Conv1d(cfg.latent_dim, cfg.latent_dim, 3, ("latent", "latent"), padding=1, rngs=rngs)

    def __call__(self, x: jax.Array, shift: jax.Array, scale: jax.Array, x_mask: jax.Array | None) -> jax.Array:
        return self.final_layer(self.linear(layers.modulate(self.norm(x), shift, scale)), x_mask)


class DiT(nnx.Module):
    """The backbone. Inputs channels-last: x_t (B,T,latent), ta_context (B,T,ta_dim), context (B,L,ctx_dim)."""

    def __init__(self, cfg: DiTConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d, dtype = cfg.embed_dim, jnp.dtype(cfg.dtype)
        self.patch_embed = layers.Conv1d(cfg.latent_dim, d, 1, ("latent", "embed"), dtype=dtype, rngs=rngs)
        self.time_embed = TimestepEmbedding(cfg.time_freq_dim, d, rngs=rngs)
        self.time_ada_final = Linear(d, 2 * d, ("embed", "mlp"), kernel_init=layers.zeros, rngs=rngs)
        self.context_embed = ContextEmbedding(cfg.context_dim, d, dtype=dtype, rngs=rngs)
        self.in_blocks = layers.create_stack(lambda r: DiTBlock(cfg, skip=False, rngs=r), cfg.depth // 2, rngs)
        self.mid_block = DiTBlock(cfg, skip=False, rngs=rngs)
        self.out_blocks = layers.create_stack(lambda r: DiTBlock(cfg, skip=True, rngs=r), cfg.depth // 2, rngs)
        self.final_block = FinalBlock(cfg, rngs=rngs)

    def conditioning(
        self, ta_context: jax.Array, context: jax.Array, remat_policy: Callable | None = None
    ) -> dict[str, dict[str, jax.Array]]:
        """Every block's share of the conditioning streams (see :meth:`DiTBlock.conditioning`), the stacks'
        stacked on their ``layers`` axis: ta_context (B, T, ta_dim), context (B, L, ctx_dim). ``remat_policy``
        (training): the blocks' norms are recomputed for the backward pass, not kept in float32 per layer."""
        dtype = jnp.dtype(self.cfg.dtype)
        ta = ta_context.astype(dtype)
        ctx = self.context_embed(context.astype(dtype))
        of_stack = lambda blk, carry, _: (carry, blk.conditioning(ta, ctx))  # noqa: E731
        unroll = self.cfg.scan_unroll
        stacked = lambda stack: layers.scan_stack(stack, of_stack, None, None, remat_policy, unroll)[1]  # noqa: E731
        mid = layers.checkpointed(self.mid_block, DiTBlock.conditioning, ta, ctx, remat_policy=remat_policy)
        return {"in": stacked(self.in_blocks), "mid": mid, "out": stacked(self.out_blocks)}

    def __call__(
        self,
        x: jax.Array,
        timesteps: jax.Array,
        ta_context: jax.Array | None,
        context: jax.Array | None,
        x_mask: jax.Array,
        context_mask: jax.Array,
        *,
        conditioning: dict[str, dict[str, jax.Array]] | None = None,
        mask_padding: bool = False,
    ) -> jax.Array:
        """Predicted velocity (B, T, latent).

        ``timesteps`` is on the 0..1000 scale: a (B,) vector is embedded as given; a scalar is broadcast
        and truncated to an integer first, as the original does at inference. ``conditioning`` (from
        :meth:`conditioning`) replaces ``ta_context`` and ``context``, which are then not read. ``mask_padding``: the
        final k=3 convolution reads padded frames as zeros (inference: a row's velocity does not depend on its
        padding; the original reads them, as training does).
        """
        b, t, _ = x.shape
        dtype = jnp.dtype(self.cfg.dtype)
        if timesteps.ndim == 0:
            timesteps = jnp.broadcast_to(jnp.trunc(timesteps), (b,))
        policy, unroll = REMAT_POLICIES[self.cfg.remat], self.cfg.scan_unroll
        if conditioning is None:
            if ta_context.shape[1] == t - 1:  # the original front-pads a one-frame-short stream
                ta_context = jnp.pad(ta_context, ((0, 0), (1, 0), (0, 0)))
            conditioning = self.conditioning(ta_context, context, policy)
        h = parallel.constrain(self.patch_embed(x.astype(dtype)), ("batch", "length", "embed"))
        time_silu = jax.nn.silu(self.time_embed(timesteps))
        # One RoPE table for every block, computed outside the layer loops (see Rotary.table): all blocks have
        # the same head size and frequencies (per-block inv_freq buffers are kept for the checkpoints' sake;
        # conversion checks that they hold the computed constants).
        args = (time_silu, self.mid_block.attn.rotary.table(t))
        masks = (x_mask, context_mask)

        h, skips = layers.scan_stack(
            self.in_blocks,
            lambda blk, h, c: (blk(h, None, *args, c, *masks),) * 2,
            h,
            conditioning["in"],
            policy,
            unroll,
        )
        mid = lambda blk, h: blk(h, None, *args, conditioning["mid"], *masks)  # noqa: E731
        h = layers.checkpointed(self.mid_block, mid, h, remat_policy=policy)
        h, _ = layers.scan_stack(
            self.out_blocks,
            lambda blk, h, xs: (blk(h, xs[0], *args, xs[1], *masks), None),
            h,
            (jnp.flip(skips, axis=0), conditioning["out"]),
            policy,
            unroll,
        )
        shift, scale = jnp.split(self.time_ada_final(time_silu), 2, axis=-1)
        return self.final_block(h, shift, scale, x_mask if mask_padding else None).astype(jnp.float32)
