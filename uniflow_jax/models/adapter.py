"""The instruction adapter, the duration predictors, and length regulation (content units → latent frames).

The adapter lets the task instruction act on the content (content attends to the encoded instruction),
then predicts durations from the adapted content: per unit (log of 5 ms frames + 1, for time-aligned
tasks) and per sample (log of seconds + 1). Duration-loss gradients reaching the encoders are scaled by
``duration_grad_scale`` through a stop-gradient mix, as in the original.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from uniflow_jax.models import layers
from uniflow_jax.models.layers import LayerNorm, Linear

FRAME_RESOLUTION = 0.005  # seconds per duration-target frame


@dataclasses.dataclass(frozen=True)
class AdapterConfig:
    dim: int = 1024
    num_heads: int = 16
    duration_grad_scale: float = 0.1
    filter_channels: int = 512
    num_layers: int = 5
    kernel_size: int = 3


class DurationLayer(nnx.Module):
    """Conv(k, 'same' zero padding) → ReLU → LayerNorm over channels (eps 1e-12)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, *, rngs: nnx.Rngs):
        self.conv = layers.Conv1d(cin, cout, kernel_size, ("embed", "mlp"), padding=kernel_size // 2, rngs=rngs)
        self.norm = LayerNorm(cout, "mlp", eps=1e-12, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array | None) -> jax.Array:
        return self.norm(jax.nn.relu(self.conv(x, mask)))


class DurationPredictor(nnx.Module):
    """Per-unit log-duration: conv layers (masked after each) → Linear(filter → 1) × mask."""

    def __init__(self, cfg: AdapterConfig, *, rngs: nnx.Rngs):
        widths = [cfg.dim] + [cfg.filter_channels] * cfg.num_layers
        self.layers = nnx.List(
            DurationLayer(widths[i], widths[i + 1], cfg.kernel_size, rngs=rngs) for i in range(cfg.num_layers)
        )
        self.linear = Linear(cfg.filter_channels, 1, ("mlp", None), rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array, mask_padding: bool = False) -> jax.Array:
        """``mask_padding``: the first convolution reads padded units as zeros (the later ones always do: each
        layer's output is masked), so that a row's durations do not depend on its padding."""
        keep = mask[..., None].astype(x.dtype)
        for layer in self.layers:
            x = layer(x, mask if mask_padding else None) * keep
        return (self.linear(x) * keep)[..., 0]


class GlobalDurationMLP(nnx.Module):
    """Masked-mean-pooled content → Linear → ReLU → Linear(→ 1): log(seconds + 1)."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs):
        self.fc1 = Linear(dim, dim, ("embed", "mlp"), rngs=rngs)
        self.fc2 = Linear(dim, 1, ("mlp", None), rngs=rngs)

    def __call__(self, pooled: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.relu(self.fc1(pooled)))[..., 0]


@dataclasses.dataclass
class AdapterOutput:
    content: jax.Array  # (B, Lc, D), not masked (the original leaves padded rows non-zero)
    local_duration: jax.Array  # (B, Lc) log(frames of 5 ms + 1)
    global_duration: jax.Array  # (B,) log(seconds + 1)


jax.tree_util.register_dataclass(AdapterOutput)


class CrossAttentionAdapter(nnx.Module):
    """Content attends to the instruction (residual + LayerNorm), then durations and a 1×1 projection."""

    def __init__(self, cfg: AdapterConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.attn = layers.TorchMultiheadAttention(cfg.dim, cfg.num_heads, use_bias=True, rngs=rngs)
        self.norm = LayerNorm(cfg.dim, "embed", rngs=rngs)
        self.duration_predictor = DurationPredictor(cfg, rngs=rngs)
        self.global_duration_mlp = GlobalDurationMLP(cfg.dim, rngs=rngs)
        self.content_proj = layers.Conv1d(cfg.dim, cfg.dim, 1, ("embed", "embed"), rngs=rngs)

    def __call__(
        self,
        content: jax.Array,
        content_mask: jax.Array,
        instruction: jax.Array,
        instruction_mask: jax.Array,
        mask_padding: bool = False,
    ) -> AdapterOutput:
        keep = content_mask[..., None].astype(content.dtype)
        x = self.norm(content + self.attn(content, instruction, instruction_mask) * keep)
        scale = self.cfg.duration_grad_scale
        x_dur = x * scale + jax.lax.stop_gradient(x) * (1 - scale)
        pooled = jnp.sum(x_dur * keep, axis=1) / jnp.sum(keep, axis=1)
        return AdapterOutput(
            content=self.content_proj(x),
            local_duration=self.duration_predictor(x_dur, content_mask, mask_padding),
            global_duration=self.global_duration_mlp(pooled),
        )


def unit_counts(seconds: jax.Array, latent_rate: float) -> jax.Array:
    """Latent frames per unit: round-half-to-even of float32(seconds)·rate (50 for the released VAE), as the
    original."""
    return jnp.round(seconds.astype(jnp.float32) * jnp.float32(latent_rate)).astype(jnp.int32)


def inference_lengths(
    local_duration: jax.Array, global_duration: jax.Array, mask: jax.Array, is_ta: jax.Array, latent_rate: float
) -> dict[str, jax.Array]:
    """The original's length rules from predicted log-durations.

    Per unit d̂ = (⌈exp(l̂)·mask⌉ − 1)·5 ms (−5 ms at padded units, which rounds to 0 latents) and
    n̂ = round(d̂·rate), rate = the VAE's latent frames per second (50). TA samples last Σ n̂ latent frames (no
    accumulated rounding); NTA samples round((exp(ĝ) − 1)·rate). ``global_seconds``: each sample's length in s.
    """
    local_seconds = (jnp.ceil(jnp.exp(local_duration) * mask) - 1) * jnp.float32(FRAME_RESOLUTION)
    counts = unit_counts(local_seconds, latent_rate)
    predicted_seconds = jnp.exp(global_duration) - 1
    nta_frames = jnp.round(predicted_seconds * jnp.float32(latent_rate)).astype(jnp.int32)
    lengths = jnp.where(is_ta, jnp.sum(counts, axis=1), nta_frames)
    return {
        "local_seconds": local_seconds,
        "counts": counts,
        "lengths": lengths,
        "global_seconds": jnp.where(is_ta, lengths.astype(jnp.float32) / latent_rate, predicted_seconds),
    }
