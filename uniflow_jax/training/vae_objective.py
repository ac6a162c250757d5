"""The objective for training the Oobleck waveform VAE from scratch: time-domain L1 + multi-resolution STFT +
(optionally) multi-scale log-mel + KL.

The reconstruction terms follow auraloss / stable-audio-tools: per STFT resolution, spectral convergence
‖|S|−|Ŝ|‖_F / ‖|S|‖_F plus the mean absolute log-magnitude difference, on a periodic Hann window with centred
(reflect-padded) frames, magnitudes sqrt(max(re² + im², 1e-8)), averaged over resolutions. The STFT is written
here in ``jnp`` (strided gather of frames, window, ``jnp.fft.rfft``) so the loss jits with static shapes.

The KL term is the closed form KL(N(μ, σ²) ‖ N(0, 1)) = ½(μ² + σ² − 2 log σ − 1), averaged over valid latent
frames and channels. (stable-audio-tools' VAE bottleneck sums (μ² + σ² − log σ² − 1) over channels instead, i.e.
2·latent_dim times this value; only the effective ``kl_weight`` differs.)

Adversarial and feature-matching terms (the multi-scale STFT discriminator of stable-audio-tools) are **not
implemented**: they are optional refinements for perceptual sharpness, they need a second model and optimiser
in the train step, and the demo's small VAE trains adequately on L1 + MR-STFT + KL alone.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from uniflow_jax.models.vae import VAE

DEFAULT_FFT_SIZES: tuple[int, ...] = (2048, 1024, 512, 256, 128, 64)
_MAG_EPS = 1e-8  # floor of the power spectrum, as auraloss: |S| = sqrt(max(re² + im², eps))
# Floor of spectral convergence's denominator, per STFT bin (about −50 dB below the bins of speech at −20 dBFS): a
# silent target (a V2A crop between events) would otherwise divide by ~0 and swamp the loss of its batch.
_SC_FLOOR = 1e-2


def _hann(n: int) -> jax.Array:
    """Periodic Hann window (``torch.hann_window(n)``)."""
    return 0.5 - 0.5 * jnp.cos(2.0 * jnp.pi * jnp.arange(n, dtype=jnp.float32) / n)


def _stft_magnitude(x: jax.Array, n_fft: int, hop: int) -> jax.Array:
    """|STFT| of (B, N) → (B, frames, n_fft // 2 + 1), centred frames (frame t centred on sample t·hop)."""
    n = x.shape[-1]
    pad = n_fft // 2
    # Reflect padding as torch.stft(center=True); a signal too short to reflect is zero-padded instead.
    x = jnp.pad(x, ((0, 0), (pad, pad)), mode="reflect" if n > pad else "constant")
    num_frames = 1 + n // hop
    index = jnp.arange(num_frames)[:, None] * hop + jnp.arange(n_fft)[None, :]
    frames = x[:, index] * _hann(n_fft)
    spec = jnp.fft.rfft(frames, axis=-1)
    power = jnp.square(spec.real) + jnp.square(spec.imag)
    return jnp.sqrt(jnp.maximum(power, _MAG_EPS))


def _frobenius(x: jax.Array) -> jax.Array:
    """‖x‖_F with a zero (not NaN) gradient at x = 0, e.g. for a perfect reconstruction."""
    sq = jnp.sum(jnp.square(x))
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def _frame_mean(diff: jax.Array, mask: jax.Array | None, hop: int, n: int) -> jax.Array:
    """Mean of per-frame, per-bin ``diff`` (B, frames, bins) over the frames whose centre is a valid sample."""
    if mask is None:
        return jnp.mean(diff)
    frame_mask = jnp.pad(mask, ((0, 0), (0, hop)))[:, ::hop][:, : 1 + n // hop]
    return jnp.sum(diff * frame_mask[..., None]) / jnp.maximum(jnp.sum(frame_mask) * diff.shape[-1], 1.0)


def _zero_padding(
    pred: jax.Array, target: jax.Array, mask: jax.Array | None
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Both waveforms in float32 with their padding zeroed, so the STFT frames that straddle the end see silence."""
    pred, target = pred.astype(jnp.float32), target.astype(jnp.float32)
    if mask is None:
        return pred, target, None
    mask = mask.astype(jnp.float32)
    return pred * mask, target * mask, mask


def multi_resolution_stft_loss(
    pred: jax.Array,
    target: jax.Array,
    mask: jax.Array | None = None,
    *,
    fft_sizes: tuple[int, ...] = DEFAULT_FFT_SIZES,
    hop_ratio: float = 0.25,
) -> jax.Array:
    """Mean over resolutions of spectral convergence + mean |log|S| − log|Ŝ||; waveforms (B, N).

    Spectral convergence's denominator ‖|S|‖_F is floored at ``_SC_FLOOR``·sqrt(#bins) (silent targets).

    ``mask`` (B, N), true on valid samples, zeroes both signals before the STFT; frames whose centre lies in the
    padding are then left out of the log-magnitude mean (they would only dilute it) — spectral convergence is
    unaffected by them, their magnitudes being equal.
    """
    pred, target, mask = _zero_padding(pred, target, mask)
    n = pred.shape[-1]
    total = jnp.zeros((), jnp.float32)
    for n_fft in fft_sizes:
        hop = max(1, int(n_fft * hop_ratio))
        pred_mag, target_mag = _stft_magnitude(pred, n_fft, hop), _stft_magnitude(target, n_fft, hop)
        floor = _SC_FLOOR * jnp.sqrt(jnp.float32(target_mag.size))
        sc = _frobenius(target_mag - pred_mag) / jnp.maximum(_frobenius(target_mag), floor)
        log_mag = _frame_mean(jnp.abs(jnp.log(target_mag) - jnp.log(pred_mag)), mask, hop, n)
        total = total + sc + log_mag
    return total / len(fft_sizes)


MEL_SCALES: tuple[tuple[int, int], ...] = ((512, 40), (1024, 80), (2048, 160))  # (n_fft, mel bands), hop n_fft/4
_MEL_EPS = 1e-8  # added to the mel power: the floor of the demo's log-mel distance (metrics.audio.LOG_MEL_EPS)


@functools.cache
def _mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels).T.astype(np.float32)  # (bins, mels)


def multi_scale_mel_loss(
    pred: jax.Array,
    target: jax.Array,
    sample_rate: int,
    mask: jax.Array | None = None,
    *,
    scales: tuple[tuple[int, int], ...] = MEL_SCALES,
) -> jax.Array:
    """Mean over scales of mean |log10(mel power + eps) − log10(mel power' + eps)| (Slaney mel filters, as
    librosa): the log-mel distance the demo's codec is judged by, at three resolutions. The mel scale spends its
    bands where harmonics and formants are resolved, which the linear bins of the STFT loss under-weight (DAC and
    HiFi-GAN train their decoders on such a loss). ``mask`` as ``multi_resolution_stft_loss``."""
    pred, target, mask = _zero_padding(pred, target, mask)
    n = pred.shape[-1]
    total = jnp.zeros((), jnp.float32)
    for n_fft, n_mels in scales:
        hop = n_fft // 4
        filters = jnp.asarray(_mel_filters(sample_rate, n_fft, n_mels))
        mel = lambda x: jnp.square(_stft_magnitude(x, n_fft, hop)) @ filters  # noqa: E731, B023
        diff = jnp.abs(jnp.log10(mel(target) + _MEL_EPS) - jnp.log10(mel(pred) + _MEL_EPS))
        total = total + _frame_mean(diff, mask, hop, n)
    return total / len(scales)


def masked_l1(pred: jax.Array, target: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean |pred − target| over the valid samples of (B, N) waveforms (all of them without ``mask``)."""
    diff = jnp.abs(pred.astype(jnp.float32) - target.astype(jnp.float32))
    if mask is None:
        return jnp.mean(diff)
    mask = mask.astype(jnp.float32)
    return jnp.sum(diff * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def kl_divergence(mean: jax.Array, std: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """KL(N(mean, std²) ‖ N(0, 1)), averaged over valid latent frames and channels; mean, std (B, T, C), mask (B, T)."""
    kl = 0.5 * (jnp.square(mean) + jnp.square(std) - 2.0 * jnp.log(std) - 1.0)
    if mask is None:
        return jnp.mean(kl)
    mask = mask.astype(kl.dtype)[..., None]
    return jnp.sum(kl * mask) / jnp.maximum(jnp.sum(mask) * kl.shape[-1], 1.0)


def vae_loss(
    vae: VAE,
    wave: jax.Array,
    lengths: jax.Array,
    key: jax.Array,
    *,
    kl_weight: float = 1e-4,
    stft_weight: float = 1.0,
    l1_weight: float = 1.0,
    mel_weight: float = 0.0,
    fft_sizes: tuple[int, ...] = DEFAULT_FFT_SIZES,
    hop_ratio: float = 0.25,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Encode → sample z = μ + σ·ε → decode; l1_weight·L1 + stft_weight·MR-STFT + mel_weight·log-mel +
    kl_weight·KL.

    ``wave`` (B, N), N a multiple of the VAE's hop; ``lengths`` (B,) valid samples. The L1 and STFT terms see only
    the valid samples, the KL only latent frames < length // hop. Returns the total and {"vae/l1", "vae/stft",
    "vae/kl"} (unweighted terms).
    """
    hop = vae.cfg.hop_length
    if wave.shape[-1] % hop:
        raise ValueError(f"waveform length {wave.shape[-1]} is not a multiple of the VAE hop {hop}")
    wave = wave.astype(jnp.float32)
    mask = jnp.arange(wave.shape[-1])[None, :] < lengths[:, None]
    wave = jnp.where(mask, wave, 0.0)
    mean, std = vae.encode_moments(wave)
    z = mean + std * jax.random.normal(key, mean.shape, mean.dtype)
    recon = vae.decode(z)
    l1 = masked_l1(recon, wave, mask)
    stft = multi_resolution_stft_loss(recon, wave, mask, fft_sizes=fft_sizes, hop_ratio=hop_ratio)
    kl = kl_divergence(mean, std, vae.latent_mask(lengths, mean.shape[1]))
    total = l1_weight * l1 + stft_weight * stft + kl_weight * kl
    terms = {"vae/l1": l1, "vae/stft": stft, "vae/kl": kl}
    if mel_weight:
        terms["vae/mel"] = multi_scale_mel_loss(recon, wave, vae.cfg.sample_rate, mask)
        total = total + mel_weight * terms["vae/mel"]
    return total, terms
