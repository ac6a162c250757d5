"""The Oobleck waveform VAE (upstream ``StableVAE``): 24 kHz mono ↔ 128-channel latents at 50 frames/s.

The module tree mirrors the original's ``nn.Sequential`` nesting (``encoder.layers.1.layers.0...``) so that
original checkpoints load by name. Convolutions keep their weight-norm parametrisation (``weight_g``,
``weight_v``) — the form the released checkpoint has and the one the VAE is trained in; the folded weight
g·v/‖v‖ is formed inside the jitted forward, where XLA computes it once per call.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from uniflow_jax.models import layers


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    channels: int = 128
    c_mults: tuple[int, ...] = (1, 2, 4, 8)
    strides: tuple[int, ...] = (2, 4, 6, 10)
    latent_dim: int = 128
    io_channels: int = 1
    sample_rate: int = 24000
    dtype: str = "float32"

    @property
    def hop_length(self) -> int:
        return math.prod(self.strides)

    @property
    def latent_rate(self) -> float:
        """Latent frames per second (the released VAE: 24 kHz / 480 = 50)."""
        return self.sample_rate / self.hop_length


def _torch_default_init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """PyTorch's default conv init: U(±1/√fan_in), fan_in = k·in for a (k, in, out) kernel."""
    bound = 1.0 / math.sqrt(shape[0] * shape[1])
    return jax.random.uniform(key, shape, dtype, -bound, bound)


class WNConv1d(nnx.Module):
    """Weight-normalised Conv1d (or ConvTranspose1d with ``transpose=True``), PyTorch padding semantics.

    ``weight_v`` is stored (k, in, out); the norm runs over every axis but the original's dim 0, i.e. the
    output channel for a convolution and the **input** channel for a transposed convolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        use_bias: bool = True,
        transpose: bool = False,
        rngs: nnx.Rngs,
    ):
        self.stride, self.padding, self.dilation, self.transpose = stride, padding, dilation, transpose
        layout = "conv_transpose" if transpose else "conv"
        v = layers.init_with_axes(_torch_default_init, ("kernel", "channels", "channels"), layout)
        self.weight_v = nnx.Param(v(rngs.params(), (kernel_size, in_channels, out_channels)))
        self.norm_axes = (0, 2) if transpose else (0, 1)
        g = jnp.sqrt(jnp.sum(jnp.square(self.weight_v[...]), axis=self.norm_axes))
        self.weight_g = nnx.Param(g, axes=("channels",), torch="plain")
        if use_bias:
            self.bias = nnx.Param(jnp.zeros((out_channels,)), axes=("channels",), torch="plain")

    def kernel(self) -> jax.Array:
        v = self.weight_v[...]
        norm = jnp.sqrt(jnp.sum(jnp.square(v), axis=self.norm_axes, keepdims=True))
        g = self.weight_g[...]
        g = g[None, :, None] if self.transpose else g[None, None, :]
        return v * (g / norm)

    def __call__(self, x: jax.Array) -> jax.Array:
        bias = self.bias[...] if hasattr(self, "bias") else None
        if self.transpose:
            return layers.conv_transpose1d(x, self.kernel(), bias, stride=self.stride, padding=self.padding)
        return layers.conv1d(x, self.kernel(), bias, stride=self.stride, padding=self.padding, dilation=self.dilation)


# π split for Cody–Waite range reduction: k·_PI_HIGH is exact in float32 for |k| < 2¹⁶.
_PI_HIGH = 3.140625
_PI_LOW = math.pi - _PI_HIGH


def sin_squared(x: jax.Array) -> jax.Array:
    """sin²(x) from multiplies and adds only: reduced by the nearest multiple of π (sin² has period π, so the
    reduced sine's sign does not matter) and the degree-11 Taylor polynomial on [−π/2, π/2]. Snake evaluates
    sin on every sample of every decoder layer, and XLA:CPU's ``sin`` is not vectorised: this form is 5×
    faster there (a fifth of the whole decode). Absolute error ≤ 5e-7 for |x| ≤ 2·10⁴ (float32 ``sin``: 1e-7).
    """
    k = jnp.round(x * (1 / math.pi))
    r = (x - k * _PI_HIGH) - k * _PI_LOW
    r2 = r * r
    poly = 0.0
    for n in (11, 9, 7, 5, 3, 1):  # Horner over r²: Σ (−1)^((n−1)/2) r^(n−1) / n!
        poly = poly * r2 + (-1) ** ((n - 1) // 2) / math.factorial(n)
    return jnp.square(r * poly)


class SnakeBeta(nnx.Module):
    """x + sin²(x·e^α) / (e^β + 1e-9), per channel, log-scale parameters initialised to 0."""

    def __init__(self, channels: int):
        self.alpha = nnx.Param(jnp.zeros((channels,)), axes=("channels",), torch="plain")
        self.beta = nnx.Param(jnp.zeros((channels,)), axes=("channels",), torch="plain")

    def __call__(self, x: jax.Array) -> jax.Array:
        alpha = jnp.exp(self.alpha[...]).astype(x.dtype)
        beta = jnp.exp(self.beta[...]).astype(x.dtype)
        return x + sin_squared(x * alpha) / (beta + 1e-9)


class Sequential(nnx.Module):
    """Applies ``layers`` in order; named ``layers`` like the original's containers."""

    def __init__(self, *modules: nnx.Module):
        self.layers = nnx.List(modules)

    def __call__(self, x: jax.Array) -> jax.Array:
        for module in self.layers:
            x = module(x)
        return x


class ResidualUnit(Sequential):
    """SnakeBeta → conv k7 (dilation d) → SnakeBeta → conv k1, plus the input."""

    def __init__(self, channels: int, dilation: int, *, rngs: nnx.Rngs):
        super().__init__(
            SnakeBeta(channels),
            WNConv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation, rngs=rngs),
            SnakeBeta(channels),
            WNConv1d(channels, channels, 1, rngs=rngs),
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + super().__call__(x)


def _encoder_block(cin: int, cout: int, stride: int, rngs: nnx.Rngs) -> Sequential:
    return Sequential(
        *(ResidualUnit(cin, d, rngs=rngs) for d in (1, 3, 9)),
        SnakeBeta(cin),
        WNConv1d(cin, cout, 2 * stride, stride=stride, padding=math.ceil(stride / 2), rngs=rngs),
    )


def _decoder_block(cin: int, cout: int, stride: int, rngs: nnx.Rngs) -> Sequential:
    return Sequential(
        SnakeBeta(cin),
        WNConv1d(cin, cout, 2 * stride, stride=stride, padding=math.ceil(stride / 2), transpose=True, rngs=rngs),
        *(ResidualUnit(cout, d, rngs=rngs) for d in (1, 3, 9)),
    )


INITIAL_SCALE_BIAS = -5.0


def _conv_frames(conv: WNConv1d, frames: jax.Array) -> jax.Array:
    """Output frames of ``conv`` for ``frames`` input frames (PyTorch's length formulas)."""
    k = conv.weight_v.shape[0]
    if conv.transpose:
        return (frames - 1) * conv.stride - 2 * conv.padding + k
    return (frames + 2 * conv.padding - conv.dilation * (k - 1) - 1) // conv.stride + 1


def _run_masked(module: nnx.Module, x: jax.Array, frames: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``module(x)`` with every convolution reading the frames at and past each row's ``frames`` as zeros, as
    the row alone at its exact length would read its zero padding; returns (output, valid output frames)."""
    if isinstance(module, WNConv1d):
        keep = (jnp.arange(x.shape[1])[None] < frames[:, None])[..., None].astype(x.dtype)
        return module(x * keep), _conv_frames(module, frames)
    if isinstance(module, ResidualUnit):
        y, _ = _run_masked_sequence(module, x, frames)
        return x + y, frames
    if isinstance(module, Sequential):
        return _run_masked_sequence(module, x, frames)
    return module(x), frames  # pointwise (SnakeBeta)


def _run_masked_sequence(sequence: Sequential, x: jax.Array, frames: jax.Array) -> tuple[jax.Array, jax.Array]:
    for module in sequence.layers:
        x, frames = _run_masked(module, x, frames)
    return x, frames


class VAE(nnx.Module):
    """Waveform (B, L) ↔ latent (B, L/hop, latent_dim); channels-last latents."""

    def __init__(self, cfg: VAEConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        c = cfg.channels
        widths = [c * m for m in (1, *cfg.c_mults)]
        self.encoder = Sequential(
            WNConv1d(cfg.io_channels, c, 7, padding=3, rngs=rngs),
            *(_encoder_block(widths[i], widths[i + 1], s, rngs) for i, s in enumerate(cfg.strides)),
            SnakeBeta(widths[-1]),
            WNConv1d(widths[-1], 2 * cfg.latent_dim, 3, padding=1, rngs=rngs),
        )
        # A VAE trained from scratch starts with a narrow posterior, σ = softplus(−5) ≈ 0.007 rather than ≈ 0.7:
        # the decoder then first learns to reconstruct through a nearly deterministic bottleneck and the KL term
        # widens it later, instead of seeing mostly noise and learning average spectra (the demo VAE: train
        # loss 2.77 vs 3.53 after 150 steps). Loaded weights replace this bias.
        head = self.encoder.layers[-1]
        head.bias[...] = jnp.concatenate([jnp.zeros(cfg.latent_dim), jnp.full(cfg.latent_dim, INITIAL_SCALE_BIAS)])
        up = list(reversed(list(enumerate(cfg.strides))))
        self.decoder = Sequential(
            WNConv1d(cfg.latent_dim, widths[-1], 7, padding=3, rngs=rngs),
            *(_decoder_block(widths[i + 1], widths[i], s, rngs) for i, s in up),
            SnakeBeta(c),
            WNConv1d(c, cfg.io_channels, 7, padding=3, use_bias=False, rngs=rngs),
        )

    def encode_moments(self, waveform: jax.Array, lengths: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """Posterior mean and std (B, T, latent); std = softplus(scale) + 1e-4. With ``lengths`` (B,) in
        samples, each row's valid frames are exactly those of the row encoded alone at its length."""
        x = waveform[..., None].astype(jnp.dtype(self.cfg.dtype))
        h = self.encoder(x) if lengths is None else _run_masked(self.encoder, x, lengths)[0]
        h = h.astype(jnp.float32)
        mean, scale = jnp.split(h, 2, axis=-1)
        return mean, jax.nn.softplus(scale) + 1e-4

    def encode(self, waveform: jax.Array, key: jax.Array) -> jax.Array:
        """A posterior sample z = mean + std·ε (the original always samples)."""
        mean, std = self.encode_moments(waveform)
        return mean + std * jax.random.normal(key, mean.shape, mean.dtype)

    def decode(self, latent: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
        """Latent (B, T, latent) → waveform (B, T·hop). With ``lengths`` (B,) in latent frames, each row's
        valid samples are exactly those of the row decoded alone at its length (padding never leaks in)."""
        z = latent.astype(jnp.dtype(self.cfg.dtype))
        out = self.decoder(z) if lengths is None else _run_masked(self.decoder, z, lengths)[0]
        return out[..., 0].astype(jnp.float32)

    def latent_mask(self, waveform_lengths: jax.Array, num_frames: int) -> jax.Array:
        """Valid latent frames of a padded batch: frame < length // hop."""
        return jnp.arange(num_frames)[None, :] < (waveform_lengths // self.cfg.hop_length)[:, None]
