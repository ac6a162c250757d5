"""The frozen CLIP vision encoder (ViT-L/14 in UniFlow-Audio): per-frame video features for V2A.

Hugging Face ``CLIPVisionModel`` semantics: patch embedding + class token + learned positions,
``pre_layrnorm``, pre-LN transformer layers with quick-GELU MLPs, and the pooler output = post-LN of the
class token (what V2A stores per frame). Images are channels-last (B, H, W, 3), already normalised.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from uniflow_jax.models import layers
from uniflow_jax.models.layers import LayerNorm, Linear

# CLIP image normalisation (openai/clip-vit-large-patch14 preprocessor_config.json).
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclasses.dataclass(frozen=True)
class CLIPVisionConfig:
    image_size: int = 224
    patch_size: int = 14
    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_layers: int = 24
    num_heads: int = 16
    eps: float = 1e-5


class CLIPAttention(nnx.Module):
    def __init__(self, dim: int, num_heads: int, *, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.q_proj = Linear(dim, dim, ("embed", "heads"), rngs=rngs)
        self.k_proj = Linear(dim, dim, ("embed", "heads"), rngs=rngs)
        self.v_proj = Linear(dim, dim, ("embed", "heads"), rngs=rngs)
        self.out_proj = Linear(dim, dim, ("heads", "embed"), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, d = x.shape
        heads = lambda a: a.reshape(b, t, self.num_heads, d // self.num_heads)  # noqa: E731
        out = layers.masked_attention(heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x)), None)
        return self.out_proj(out.reshape(b, t, d))


class CLIPLayer(nnx.Module):
    def __init__(self, cfg: CLIPVisionConfig, *, rngs: nnx.Rngs):
        self.layer_norm1 = LayerNorm(cfg.hidden_size, "embed", eps=cfg.eps, rngs=rngs)
        self.self_attn = CLIPAttention(cfg.hidden_size, cfg.num_heads, rngs=rngs)
        self.layer_norm2 = LayerNorm(cfg.hidden_size, "embed", eps=cfg.eps, rngs=rngs)
        self.fc1 = Linear(cfg.hidden_size, cfg.intermediate_size, ("embed", "mlp"), rngs=rngs)
        self.fc2 = Linear(cfg.intermediate_size, cfg.hidden_size, ("mlp", "embed"), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.self_attn(self.layer_norm1(x))
        h = self.fc1(self.layer_norm2(x))
        return x + self.fc2(h * jax.nn.sigmoid(1.702 * h))  # quick GELU


class CLIPVisionEncoder(nnx.Module):
    def __init__(self, cfg: CLIPVisionConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d, p = cfg.hidden_size, cfg.patch_size
        num_positions = (cfg.image_size // p) ** 2 + 1
        self.class_embedding = nnx.Param(jax.random.normal(rngs.params(), (d,)) * d**-0.5, axes=("embed",))
        kinit = layers.init_with_axes(nnx.initializers.normal(0.02), (None, None, "channels", "embed"), "conv2d")
        self.patch_embedding = nnx.Param(kinit(rngs.params(), (p, p, 3, d)))
        self.position_embedding = layers.embed(num_positions, d, 0.02, rngs)
        self.pre_layrnorm = LayerNorm(d, "embed", eps=cfg.eps, rngs=rngs)
        self.layers = layers.create_stack(lambda r: CLIPLayer(cfg, rngs=r), cfg.num_layers, rngs)
        self.post_layernorm = LayerNorm(d, "embed", eps=cfg.eps, rngs=rngs)

    def __call__(self, pixels: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Normalised images (B, H, W, 3) → (pooler output (B, D), last hidden state (B, 1 + N, D))."""
        p = self.cfg.patch_size
        patches = jax.lax.conv_general_dilated(
            pixels.astype(jnp.float32),
            self.patch_embedding[...],
            (p, p),
            "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        b = patches.shape[0]
        tokens = patches.reshape(b, -1, patches.shape[-1])
        cls = jnp.broadcast_to(self.class_embedding[...], (b, 1, tokens.shape[-1]))
        x = jnp.concatenate([cls, tokens], axis=1) + self.position_embedding.embedding[...][None]
        x, _ = layers.scan_stack(self.layers, lambda layer, h, _: (layer(h), None), self.pre_layrnorm(x))
        return self.post_layernorm(x[:, 0]), x
