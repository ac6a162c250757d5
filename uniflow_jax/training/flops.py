"""Analytic FLOP accounting for the DiT and the VAE decoder, and model-FLOPs utilisation (MFU).

MFU = analytic *model* FLOPs of one train step / step time / peak FLOP/s of the chips that ran it. The count is
analytic (not XLA's) so that it does not change with fusion, rematerialisation or the backend: recomputation under
``remat`` is deliberately not counted (that would be hardware-FLOPs utilisation, HFU).

Only matmul-like work is counted (2·m·n·k per product: every Linear, convolution, QKᵀ and AV); norms,
activations, softmax and RoPE are a few FLOPs per element and are left out, as is customary. The adaLN and
timestep-embedding Linears act on a (B, D) vector, so they are counted once per *sample*, not per token — counting
them per token overstates a DiT's FLOPs by a lot at small widths (see ../shared/docs/JAX_PLAYBOOK.md).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from uniflow_jax.models.dit import DiTConfig
from uniflow_jax.models.vae import VAEConfig


def _linear(tokens: int, d_in: int, d_out: int) -> float:
    """FLOPs of a dense layer applied to ``tokens`` rows: 2·tokens·d_in·d_out."""
    return 2.0 * tokens * d_in * d_out


def _attention_scores(batch: int, q_len: int, kv_len: int, dim: int) -> float:
    """QKᵀ plus AV over all heads: 2 · (2·B·Tq·Tk·D)."""
    return 2.0 * (2.0 * batch * q_len * kv_len * dim)


def _block_flops(cfg: DiTConfig, batch: int, frames: int, context_len: int, *, skip: bool) -> float:
    """One ``DiTBlock`` (models/dit.py), term by term in the order the block computes them."""
    d, bt, bl = cfg.embed_dim, batch * frames, batch * context_len
    flops = 0.0
    if skip:
        flops += _linear(bt, 2 * d, d)  # skip_linear on concat([x, skip])
    flops += _linear(batch, d, 6 * d)  # adaLN: once per sample
    # Self-attention: q, k, v, proj on the frames; scores over frames × frames.
    flops += 4 * _linear(bt, d, d) + _attention_scores(batch, frames, frames, d)
    flops += _linear(bt, cfg.ta_context_dim, d)  # ta_context_projection (time-aligned fusion)
    # Cross-attention: q and proj on the frames, k and v on the context tokens.
    flops += 2 * _linear(bt, d, d) + 2 * _linear(bl, d, d) + _attention_scores(batch, frames, context_len, d)
    flops += _linear(bt, d, 2 * cfg.mlp_hidden) + _linear(bt, cfg.mlp_hidden, d)  # GEGLU
    return flops


def dit_forward_flops(cfg: DiTConfig, batch: int, frames: int, context_len: int) -> float:
    """Matmul FLOPs of one ``DiT.__call__`` over padded shapes (B=batch, T=frames latent frames, L=context_len).

    Padding counts: masked frames and context tokens are computed all the same. The time-aligned stream is taken
    as ``frames`` long (the one-frame-short variant is front-padded to it by the model).
    """
    d, bt, bl = cfg.embed_dim, batch * frames, batch * context_len
    flops = _linear(bt, cfg.latent_dim, d)  # patch_embed (1×1 conv)
    flops += _linear(batch, cfg.time_freq_dim, d) + _linear(batch, d, d)  # time_embed: per sample
    flops += _linear(batch, d, 2 * d)  # time_ada_final: per sample
    flops += _linear(bl, cfg.context_dim, d) + _linear(bl, d, d)  # context_embed
    half = cfg.depth // 2
    flops += (half + 1) * _block_flops(cfg, batch, frames, context_len, skip=False)  # in-blocks + mid block
    flops += half * _block_flops(cfg, batch, frames, context_len, skip=True)  # out-blocks
    flops += _linear(bt, d, cfg.latent_dim)  # final Linear
    flops += _linear(bt, 3 * cfg.latent_dim, cfg.latent_dim)  # final Conv1d, kernel 3
    return flops


def train_step_flops(cfg: DiTConfig, batch: int, frames: int, context_len: int) -> float:
    """Model FLOPs of one train step of the backbone: forward + backward = 3 × forward.

    The backward pass costs two matmuls per forward matmul (gradients w.r.t. activations and weights). Only the
    DiT is counted: the content encoders (T5, FastSpeech2 phoneme/score encoders, CLIP), the adapter and the VAE
    are excluded — they are small next to the backbone, their cost depends on the task mix, and with the latent
    cache the VAE does not run at all. Recomputation under ``cfg.remat`` is not counted (MFU, not HFU).
    """
    return 3.0 * dit_forward_flops(cfg, batch, frames, context_len)


def _count(n: int, offset: int, step: int, end: int) -> int:
    """How many i in [0, n) have 0 <= i·step + offset < end."""
    first = max(0, -(offset // step))
    last = min(n - 1, (end - 1 - offset) // step)
    return max(0, last - first + 1)


def _conv(kernel: int, c_in: int, c_out: int, frames: int, dilation: int = 1) -> float:
    """A 'same' convolution (padding dilation·(kernel−1)/2), counting only taps that fall inside the input."""
    pad = dilation * (kernel - 1) // 2
    pairs = sum(_count(frames, tap * dilation - pad, 1, frames) for tap in range(kernel))
    return 2.0 * pairs * c_in * c_out


def _conv_transpose(kernel: int, stride: int, padding: int, c_in: int, c_out: int, frames: int) -> tuple[float, int]:
    """FLOPs and output length of a transposed convolution, counting its real multiplies: each (input frame, tap)
    pair whose output survives the cropping by ``padding`` — not the zeros that a stride would insert."""
    out = (frames - 1) * stride + kernel - 2 * padding
    pairs = sum(_count(frames, tap - padding, stride, out) for tap in range(kernel))
    return 2.0 * pairs * c_in * c_out, out


def vae_decode_flops(cfg: VAEConfig, batch: int, frames: int) -> float:
    """Convolution FLOPs of one ``VAE.decode`` of (batch, frames) latents, layer by layer as models/vae.py's
    decoder computes them. Like XLA's cost analysis, taps that meet only padding are not counted."""
    widths = [cfg.channels * m for m in (1, *cfg.c_mults)]
    t = frames
    flops = _conv(7, cfg.latent_dim, widths[-1], t)
    for i in reversed(range(len(cfg.strides))):
        stride, c_in, c_out = cfg.strides[i], widths[i + 1], widths[i]
        up, t = _conv_transpose(2 * stride, stride, math.ceil(stride / 2), c_in, c_out, t)
        flops += up + sum(_conv(7, c_out, c_out, t, d) + _conv(1, c_out, c_out, t) for d in (1, 3, 9))
    flops += _conv(7, cfg.channels, cfg.io_channels, t)
    return batch * flops


def measure_matmul_flops(n: int = 2048, seconds: float = 2.0) -> float:
    """Measured FLOP/s of an f32 n×n matmul on the default device: the practical ceiling on CPU, where no
    data-sheet peak applies. Median over at least ``seconds`` of timed runs (at least 5) after one warm-up
    (compile) run: a handful of runs drifts by ±10 % on a shared 2-core machine."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    times: list[float] = []
    while len(times) < 5 or sum(times) < seconds:
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2.0 * n**3 / statistics.median(times)


def xla_flops(program: Any) -> float | None:
    """FLOPs from the ``cost_analysis()`` of a compiled executable or of a lowered (not yet compiled) program
    — a dict, or a list of dicts in older jax (then the first) — or None when the backend does not report
    them. A compiled SPMD-partitioned program counts per device; a lowered one counts the whole program."""
    try:
        cost = program.cost_analysis()
    except Exception:  # some backends raise instead of returning nothing
        return None
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    if not isinstance(cost, Mapping) or "flops" not in cost:
        return None
    flops = float(cost["flops"])
    return flops if flops >= 0 else None


def mfu(flops_per_step: float, step_time_s: float, num_devices: int, peak_flops_per_device: float | None) -> float:
    """Model-FLOPs utilisation in [0, 1]; NaN when the peak is unknown."""
    if peak_flops_per_device is None or step_time_s <= 0:
        return float("nan")
    return flops_per_step / step_time_s / (num_devices * peak_flops_per_device)
