"""Collate per-sample inputs of any tasks into one padded batch (numpy), the model's input format.

A sample is a dict with ``task`` (id or short name), ``instruction`` (Li, D) encoded instruction, its task's
content fields, and optionally ``duration`` (per-unit seconds) and the training target; the fields, their
dtypes and padded axes are those of ``data/batch_format.py``.

Instead of the encoded ``instruction``, a sample may carry ``instruction_index`` k (0..9): the batch then
holds ``instruction_id`` = task index · 10 + k, to be looked up in the instruction bank on the device
(the data pipeline does this, so that (L, 1024) instruction arrays never cross the host link).

Every content kind gets its own padded array (zeros and a False mask for samples of other tasks), so a
batch can mix tasks. ``min_lengths`` pads a key's time axis further (length buckets keep shapes static).
With ``cached_dims``, the frozen encoders' outputs read from the latent cache replace the raw inputs; with
``image_size``, V2A video comes as CLIP pixels instead of per-frame features.
Units of fixed duration get their durations here, as the original datasets do: SE/SR 0.02 s per latent
frame, V2A 0.1 s per video frame, T2A/T2M a single dummy unit of 1 s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from uniflow_jax import config_lib, tasks
from uniflow_jax.data import batch_format

Sample = Mapping[str, Any]


def _stack(rows: Sequence[np.ndarray | None], dtype, length: int, tail: tuple[int, ...] = ()):
    out = np.zeros((len(rows), length, *tail), dtype)
    mask = np.zeros((len(rows), length), bool)
    for i, row in enumerate(rows):
        if row is not None:
            row = np.asarray(row, dtype)
            if len(row) > length:
                raise ValueError(f"sample {i}: length {len(row)} exceeds the padded length {length}")
            out[i, : len(row)], mask[i, : len(row)] = row, True
    return out, mask


def unit_durations(task: tasks.Task, sample: Sample, hop: int) -> np.ndarray | None:
    """Per-unit seconds: given ones, else the task's fixed unit duration, else None (needs data)."""
    if sample.get("duration") is not None:
        return np.asarray(sample["duration"], np.float32)
    if task.content == "audio":
        cached = batch_format.encoded("audio")[0]
        frames = len(sample[cached]) if cached in sample else len(sample["audio"]) // hop
        return np.full(frames, task.unit_seconds, np.float32)
    if task.content == "video":
        return np.full(batch_format.content_length(sample, "video"), task.unit_seconds, np.float32)
    if task.content == "text":
        return np.ones(1, np.float32)
    return None


def collate(
    samples: Sequence[Sample],
    *,
    hop: int,
    speaker_dim: int,
    video_dim: int,
    min_lengths: Mapping[str, int] | None = None,
    image_size: int | None = None,
    cached_dims: Mapping[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """Pads ``samples`` into one batch dict (see the module docstring for the fields)."""
    specs = [tasks.get(s["task"]) for s in samples]
    minimum = {"audio": hop, **(min_lengths or {})}

    cached = cached_dims is not None
    dims = {"speaker": speaker_dim, "video": video_dim, **(cached_dims or {})}
    if image_size is not None:
        dims["pixels"] = (image_size, image_size, 3)
    batch: dict[str, np.ndarray] = {"task": np.array([tasks.TASKS.index(t) for t in specs], np.int32)}
    for kind in batch_format.CONTENT_KINDS:
        for name in batch_format.content_fields(kind, cached=cached, pixels=image_size is not None):
            f, tail = batch_format.FIELDS[name], batch_format.tail_shape(name, dims)
            rows = [s[name] if spec.content == kind else None for s, spec in zip(samples, specs, strict=True)]
            if f.axis is None:  # one value or vector per sample
                batch[name] = np.stack([np.zeros(tail, f.dtype) if r is None else np.asarray(r, f.dtype) for r in rows])
                continue
            length = max([minimum.get(name, 1)] + [len(r) for r in rows if r is not None])
            batch[name], mask = _stack(rows, f.dtype, length, tail)
            if f.mask:
                batch[f.mask] = mask
            if f.lengths:  # in waveform samples
                batch[f.lengths] = (mask.sum(1) * (hop if f.axis == "latent" else 1)).astype(np.int32)
    if all("instruction" in s for s in samples):
        instructions = [np.asarray(s["instruction"], np.float32) for s in samples]
        length = max([minimum.get("instruction", 1)] + [len(i) for i in instructions])
        batch["instruction"], batch["instruction_mask"] = _stack(
            instructions, np.float32, length, instructions[0].shape[1:]
        )
    else:
        batch["instruction_id"] = np.array(
            [tasks.instruction_id(t.id, s["instruction_index"]) for s, t in zip(samples, specs, strict=True)], np.int32
        )

    durations = [unit_durations(t, s, hop) for s, t in zip(samples, specs, strict=True)]
    if all(d is not None for d in durations):
        length = max([minimum.get("duration", 1)] + [len(d) for d in durations])
        batch["duration"], batch["duration_mask"] = _stack(durations, np.float32, length)
    mean_std = batch_format.target_fields(cached=True)
    if all(s.get(mean_std[0]) is not None for s in samples):
        # Rows = the valid frames + one frame of the silence after them (kept where the padding has room).
        frames = np.array([s["latent_frames"] for s in samples], np.int32)
        length = max(minimum.get(mean_std[0], 1), int(frames.max()))
        for key in mean_std:
            rows = [s[key][:length] for s in samples]
            batch[key], _ = _stack(rows, np.float32, length, batch_format.tail_shape(key, dims))
        batch["waveform_lengths"] = frames * hop
    elif all(s.get("waveform") is not None for s in samples):
        waves = [np.asarray(s["waveform"], np.float32) for s in samples]
        length = max([minimum.get("waveform", hop)] + [len(w) for w in waves])
        batch["waveform"], wave_mask = _stack(waves, np.float32, length)
        batch["waveform_lengths"] = wave_mask.sum(1).astype(np.int32)
    return batch


def synthetic_batch(
    config: ml_collections.ConfigDict,
    batch: int,
    frames: int,
    context: int,
    min_lengths: Mapping[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """A training batch as large runs read it from the latent cache (benchmarks, ahead-of-time compilation):
    the seven tasks in turn, ``frames`` latent frames of target each, content of ``context`` units (SE/SR:
    their input's ``frames``; V2A: its video frames), each kind at most its ``min_lengths`` (a bucket's sizes)
    and padded to it."""
    cfg = config_lib.uniflow_config(config)
    rng = np.random.default_rng(0)
    dims = {"latent": cfg.vae.latent_dim, "text": cfg.t5.d_model, "video": cfg.video_dim,
            "speaker": cfg.phoneme.speaker_dim}  # fmt: skip
    seconds = frames / cfg.vae.latent_rate
    samples = []
    for i in range(batch):
        task = tasks.TASKS[i % len(tasks.TASKS)]
        units = round(seconds / task.unit_seconds) if task.content == "video" else context
        units = min(units, (min_lengths or {}).get(task.content, units))
        content = batch_format.synthetic_sample(task.content, frames, units, seconds / units, dims, rng)
        samples.append({"task": task.id, "instruction_index": 0, **content})
    return collate(samples, hop=cfg.vae.hop_length, speaker_dim=cfg.phoneme.speaker_dim, video_dim=cfg.video_dim,
                   min_lengths=min_lengths, cached_dims=dims)  # fmt: skip
