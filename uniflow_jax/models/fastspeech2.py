"""FastSpeech2 content encoders: phonemes (TTS) and music scores (SVS).

Both are a pre-LN FFT stack (self-attention without biases + a convolutional FFN) over embedded units,
with padded frames zeroed after every residual, a final LayerNorm, a speaker vector added to *all*
frames (padded ones included, as in the original) and a projection to the content width.
The score encoder keeps the original's relative-position quirk: the summed embeddings are scaled by √d a
second time and a sinusoid table for positions 4999, 4998, … is added.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from uniflow_jax.models import layers
from uniflow_jax.models.layers import LayerNorm, Linear

REL_POS_TABLE_SIZE = 5000


@dataclasses.dataclass(frozen=True)
class FastSpeech2Config:
    """``num_speakers`` > 0 selects a singer-id embedding (SVS); otherwise an x-vector projection (TTS)."""

    vocab_size: int = 92
    d_model: int = 512
    num_layers: int = 4
    num_heads: int = 2
    kernel_size: int = 9
    d_out: int = 1024
    speaker_dim: int = 256
    num_speakers: int = 0
    midi_vocab_size: int = 300
    slur_vocab_size: int = 2


def fairseq_positions_table(num_positions: int, dim: int) -> np.ndarray:
    """fairseq's sinusoid table: [sin | cos] halves, frequencies exp(−ln 10⁴·i/(d/2 − 1)); row 0 (padding) = 0."""
    half = dim // 2
    freqs = np.exp(np.arange(half, dtype=np.float32) * np.float32(-math.log(10000) / (half - 1)))
    args = np.arange(num_positions, dtype=np.float32)[:, None] * freqs[None, :]
    table = np.concatenate([np.sin(args), np.cos(args)], axis=1).astype(np.float32)
    table[0] = 0.0
    return table


def reversed_relative_positions_table(num_rows: int, dim: int) -> np.ndarray:
    """The score encoder's table: row i encodes position 4999 − i, sin on even / cos on odd channels."""
    positions = np.arange(REL_POS_TABLE_SIZE - 1, REL_POS_TABLE_SIZE - 1 - num_rows, -1, dtype=np.float32)
    # Large arguments (~5000 rad) amplify ulp differences: exp and sin are rounded once, from float64.
    exponent = np.arange(0, dim, 2, dtype=np.float32) * np.float32(-math.log(10000.0) / dim)
    div = np.exp(exponent.astype(np.float64)).astype(np.float32)
    args = positions[:, None] * div[None, :]
    table = np.zeros((num_rows, dim), np.float32)
    table[:, 0::2] = np.sin(args.astype(np.float64))
    table[:, 1::2] = np.cos(args.astype(np.float64))
    return table


class FFTLayer(nnx.Module):
    """Pre-LN: x += Attn(LN(x)); zero pads; x += FFN(LN(x)); zero pads. FFN = Conv(k)·k^−½ → GELU → Linear."""

    def __init__(self, cfg: FastSpeech2Config, *, rngs: nnx.Rngs):
        d, k = cfg.d_model, cfg.kernel_size
        self.kernel_size = k
        self.layer_norm1 = LayerNorm(d, "embed", rngs=rngs)
        self.self_attn = layers.TorchMultiheadAttention(d, cfg.num_heads, use_bias=False, rngs=rngs)
        self.layer_norm2 = LayerNorm(d, "embed", rngs=rngs)
        self.ffn_1 = layers.Conv1d(d, 4 * d, k, ("embed", "mlp"), padding=k // 2, rngs=rngs)
        self.ffn_2 = Linear(4 * d, d, ("mlp", "embed"), rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array, mask_padding: bool = False) -> jax.Array:
        """``mask_padding``: the convolution reads padded units as zeros (inference: a row's output does not depend
        on its padding); off, padded units are read as the original reads them (LayerNorm of zeros)."""
        keep = mask[..., None].astype(x.dtype)
        h = self.layer_norm1(x)
        x = (x + self.self_attn(h, h, mask)) * keep
        h = self.ffn_1(self.layer_norm2(x), mask if mask_padding else None) * self.kernel_size**-0.5
        return (x + self.ffn_2(jax.nn.gelu(h, approximate=False))) * keep


class FastSpeech2Encoder(nnx.Module):
    """Shared trunk: FFT stack (scanned) → final LayerNorm → + speaker → projection to the content width."""

    def __init__(self, cfg: FastSpeech2Config, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d = cfg.d_model
        self.phone_embed = layers.embed(cfg.vocab_size, d, d**-0.5, rngs)
        self.layers = layers.create_stack(lambda r: FFTLayer(cfg, rngs=r), cfg.num_layers, rngs)
        self.final_norm = LayerNorm(d, "embed", rngs=rngs)
        if cfg.num_speakers:
            self.spk_embed_proj = layers.embed(cfg.num_speakers + 1, d, d**-0.5, rngs)
        else:
            self.spk_embed_proj = Linear(cfg.speaker_dim, d, ("channels", "embed"), rngs=rngs)
        self.out_proj = Linear(d, cfg.d_out, ("embed", "channels"), rngs=rngs)

    def encode(self, x: jax.Array, mask: jax.Array, speaker: jax.Array, mask_padding: bool = False) -> jax.Array:
        keep = mask[..., None].astype(x.dtype)
        step = lambda layer, h, _: (layer(h, mask, mask_padding), None)  # noqa: E731
        x, _ = layers.scan_stack(self.layers, step, x * keep)
        x = self.final_norm(x) * keep
        return self.out_proj(x + self.spk_embed_proj(speaker)[:, None, :])


class PhonemeEncoder(FastSpeech2Encoder):
    """TTS content: √d·Emb(phoneme) + fairseq positions (1..n, padding 0), x-vector speaker."""

    def __init__(self, cfg: FastSpeech2Config, *, rngs: nnx.Rngs):
        super().__init__(cfg, rngs=rngs)
        # The original keeps a dtype-carrier buffer here; kept so exported checkpoints load strictly.
        self.pos_float_tensor = layers.Buffer(jnp.zeros((1,)), axes=(None,), torch="plain")

    def __call__(
        self, phoneme: jax.Array, mask: jax.Array, speaker: jax.Array, mask_padding: bool = False
    ) -> jax.Array:
        d = self.cfg.d_model
        positions = jnp.cumsum(mask, axis=1) * mask
        table = jnp.asarray(fairseq_positions_table(phoneme.shape[1] + 1, d))
        x = math.sqrt(d) * self.phone_embed(phoneme) + table[positions]
        return self.encode(x, mask, speaker, mask_padding)


class MidiEncoder(FastSpeech2Encoder):
    """SVS content: phones + notes + note durations + slurs, relative-position quirk, singer-id speaker."""

    def __init__(self, cfg: FastSpeech2Config, *, rngs: nnx.Rngs):
        super().__init__(cfg, rngs=rngs)
        d = cfg.d_model
        self.midi_embed = layers.embed(cfg.midi_vocab_size, d, d**-0.5, rngs)
        self.midi_dur_embed = Linear(1, d, (None, "embed"), rngs=rngs)
        self.is_slur_embed = layers.embed(cfg.slur_vocab_size, d, d**-0.5, rngs)

    def __call__(
        self,
        phoneme: jax.Array,
        midi: jax.Array,
        midi_duration: jax.Array,
        is_slur: jax.Array,
        mask: jax.Array,
        singer: jax.Array,
        mask_padding: bool = False,
    ) -> jax.Array:
        d = self.cfg.d_model
        x = (
            math.sqrt(d) * self.phone_embed(phoneme)
            + self.midi_embed(midi)
            + self.midi_dur_embed(midi_duration[..., None].astype(jnp.float32))
            + self.is_slur_embed(is_slur)
        )
        x = x * math.sqrt(d) + jnp.asarray(reversed_relative_positions_table(phoneme.shape[1], d))
        return self.encode(x, mask, singer, mask_padding)
