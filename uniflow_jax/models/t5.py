"""The frozen T5 text encoder (Flan-T5-large in UniFlow-Audio): captions and task instructions.

Hugging Face ``T5EncoderModel`` semantics: RMS layer norm (no mean, no bias), unscaled dot-product
attention with a bucketed relative-position bias computed once (block 0's table) and shared by all
blocks, gated-GELU (tanh approximation) feed-forward. Runs in float32.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from uniflow_jax.models import layers
from uniflow_jax.models.layers import Linear


@dataclasses.dataclass(frozen=True)
class T5Config:
    vocab_size: int = 32128
    d_model: int = 1024
    d_kv: int = 64
    d_ff: int = 2816
    num_layers: int = 24
    num_heads: int = 16
    num_buckets: int = 32
    max_distance: int = 128
    eps: float = 1e-6


def relative_position_buckets(length: int, num_buckets: int, max_distance: int) -> np.ndarray:
    """Bidirectional T5 buckets (q, k) for key − query offsets, in the float32 arithmetic of the original."""
    offsets = np.arange(length)[None, :] - np.arange(length)[:, None]
    half = num_buckets // 2
    buckets = (offsets > 0).astype(np.int64) * half
    distance = np.abs(offsets)
    max_exact = half // 2
    # log rounded once from float64 (= a correctly rounded float32 log), the rest in float32 as in PyTorch
    log_ratio = np.log(np.maximum(distance, 1).astype(np.float32) / np.float32(max_exact)).astype(np.float32)
    scaled = log_ratio / np.float32(math.log(max_distance / max_exact)) * np.float32(half - max_exact)
    large = np.minimum(max_exact + scaled.astype(np.int64), half - 1)
    return buckets + np.where(distance < max_exact, distance, large)


class RMSNorm(nnx.Module):
    """x / √(mean x² + eps) · weight, statistics in float32."""

    def __init__(self, dim: int, eps: float):
        self.eps = eps
        self.weight = nnx.Param(jnp.ones((dim,)), axes=("embed",), torch="plain")

    def __call__(self, x: jax.Array) -> jax.Array:
        xf = x.astype(jnp.float32)
        return self.weight[...] * (xf * jax.lax.rsqrt(jnp.mean(jnp.square(xf), -1, keepdims=True) + self.eps))


class T5Attention(nnx.Module):
    def __init__(self, cfg: T5Config, *, rngs: nnx.Rngs):
        inner = cfg.num_heads * cfg.d_kv
        self.num_heads, self.d_kv = cfg.num_heads, cfg.d_kv
        self.q = Linear(cfg.d_model, inner, ("embed", "heads"), use_bias=False, rngs=rngs)
        self.k = Linear(cfg.d_model, inner, ("embed", "heads"), use_bias=False, rngs=rngs)
        self.v = Linear(cfg.d_model, inner, ("embed", "heads"), use_bias=False, rngs=rngs)
        self.o = Linear(inner, cfg.d_model, ("heads", "embed"), use_bias=False, rngs=rngs)

    def __call__(self, x: jax.Array, bias: jax.Array, mask: jax.Array) -> jax.Array:
        b, t, _ = x.shape
        heads = lambda a: a.reshape(b, t, self.num_heads, self.d_kv)  # noqa: E731
        out = jax.nn.dot_product_attention(
            heads(self.q(x)), heads(self.k(x)), heads(self.v(x)), bias=bias, mask=mask[:, None, None, :], scale=1.0
        )
        return self.o(out.reshape(b, t, -1))


class GatedGeluFFN(nnx.Module):
    def __init__(self, cfg: T5Config, *, rngs: nnx.Rngs):
        self.wi_0 = Linear(cfg.d_model, cfg.d_ff, ("embed", "mlp"), use_bias=False, rngs=rngs)
        self.wi_1 = Linear(cfg.d_model, cfg.d_ff, ("embed", "mlp"), use_bias=False, rngs=rngs)
        self.wo = Linear(cfg.d_ff, cfg.d_model, ("mlp", "embed"), use_bias=False, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.wo(jax.nn.gelu(self.wi_0(x), approximate=True) * self.wi_1(x))


class T5Block(nnx.Module):
    def __init__(self, cfg: T5Config, *, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(cfg.d_model, cfg.eps)
        self.attn = T5Attention(cfg, rngs=rngs)
        self.ffn_norm = RMSNorm(cfg.d_model, cfg.eps)
        self.ffn = GatedGeluFFN(cfg, rngs=rngs)

    def __call__(self, x: jax.Array, bias: jax.Array, mask: jax.Array) -> jax.Array:
        x = x + self.attn(self.attn_norm(x), bias, mask)
        return x + self.ffn(self.ffn_norm(x))


class T5Encoder(nnx.Module):
    """token ids (B, L) + attention mask → last hidden state (B, L, d_model), padded positions included."""

    def __init__(self, cfg: T5Config, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed_tokens = layers.embed(cfg.vocab_size, cfg.d_model, 1.0, rngs)
        self.relative_attention_bias = layers.embed(cfg.num_buckets, cfg.num_heads, 1.0, rngs)
        self.blocks = layers.create_stack(lambda r: T5Block(cfg, rngs=r), cfg.num_layers, rngs)
        self.final_layer_norm = RMSNorm(cfg.d_model, cfg.eps)

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
        cfg = self.cfg
        buckets = relative_position_buckets(input_ids.shape[1], cfg.num_buckets, cfg.max_distance)
        bias = jnp.transpose(self.relative_attention_bias(jnp.asarray(buckets)), (2, 0, 1))[None]
        mask = attention_mask.astype(bool)
        x = self.embed_tokens(input_ids)
        x, _ = layers.scan_stack(self.blocks, lambda blk, h, _: (blk(h, bias, mask), None), x)
        return self.final_layer_norm(x)
