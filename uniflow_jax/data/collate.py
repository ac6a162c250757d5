"""Collate per-sample inputs of any tasks into one padded batch (numpy), the model's input format.

A sample is a dict with ``task`` (id or short name), ``instruction`` (Li, D) encoded instruction, its
task's content fields, and optionally ``duration`` (per-unit seconds) and ``waveform`` (training target):

    tts  phoneme (L,) int, xvector (S,)             svs  score_phoneme, midi, midi_duration, is_slur (L,), singer
    se/sr audio (samples,) at 24 kHz                 v2a  video (frames, D) per-frame CLIP features,
    t2a/t2m text_ids (L,) T5 token ids with EOS           or video_frames (frames, S, S, 3) CLIP pixels

Instead of the encoded ``instruction``, a sample may carry ``instruction_index`` k (0..9): the batch then
holds ``instruction_id`` = task index · 10 + k, to be looked up in the instruction bank on the device
(the data pipeline does this, so that (L, 1024) instruction arrays never cross the host link).

Every content kind gets its own padded array (zeros and a False mask for samples of other tasks), so a
batch can mix tasks. ``min_lengths`` pads a key's time axis further (length buckets keep shapes static).
With ``cached_dims``, the frozen encoders' outputs read from the latent cache replace raw inputs:
``waveform_mean/_std`` and ``audio_mean/_std`` (frames, latent) VAE posteriors, ``text_features`` (L, D).
Units of fixed duration get their durations here, as the original datasets do: SE/SR 0.02 s per latent
frame, V2A 0.1 s per video frame, T2A/T2M a single dummy unit of 1 s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from uniflow_jax import tasks

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
        frames = len(sample["audio_mean"]) if "audio_mean" in sample else len(sample["audio"]) // hop
        return np.full(frames, task.unit_seconds, np.float32)
    if task.content == "video":
        return np.full(len(sample.get("video", sample.get("video_frames"))), task.unit_seconds, np.float32)
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

    def field(key: str, kind: str, dtype, tail: tuple[int, ...] = ()):
        rows = [s[key] if spec.content == kind else None for s, spec in zip(samples, specs, strict=True)]
        length = max([minimum.get(key, 1)] + [len(r) for r in rows if r is not None])
        return _stack(rows, dtype, length, tail)

    batch: dict[str, np.ndarray] = {"task": np.array([tasks.TASKS.index(t) for t in specs], np.int32)}
    batch["phoneme"], batch["phoneme_mask"] = field("phoneme", "phoneme", np.int32)
    batch["xvector"] = np.stack(
        [
            np.asarray(s["xvector"], np.float32) if t.content == "phoneme" else np.zeros(speaker_dim, np.float32)
            for s, t in zip(samples, specs, strict=True)
        ]
    )
    batch["score_phoneme"], batch["score_mask"] = field("score_phoneme", "score", np.int32)
    batch["midi"], _ = field("midi", "score", np.int32)
    batch["midi_duration"], _ = field("midi_duration", "score", np.float32)
    batch["is_slur"], _ = field("is_slur", "score", np.int32)
    batch["singer"] = np.array(
        [int(s["singer"]) if t.content == "score" else 0 for s, t in zip(samples, specs, strict=True)], np.int32
    )
    if cached_dims is None:
        batch["audio"], audio_mask = field("audio", "audio", np.float32)
        batch["audio_lengths"] = audio_mask.sum(1).astype(np.int32)
    else:
        latent = (cached_dims["latent"],)
        batch["audio_mean"], audio_mask = field("audio_mean", "audio", np.float32, latent)
        batch["audio_std"], _ = field("audio_std", "audio", np.float32, latent)
        batch["audio_lengths"] = audio_mask.sum(1).astype(np.int32) * hop
    if image_size is None:
        batch["video"], batch["video_mask"] = field("video", "video", np.float32, (video_dim,))
    else:
        pixels = (image_size, image_size, 3)
        batch["video_frames"], batch["video_mask"] = field("video_frames", "video", np.float32, pixels)
    if cached_dims is None:
        batch["text_ids"], batch["text_mask"] = field("text_ids", "text", np.int32)
    else:
        batch["text_features"], batch["text_mask"] = field("text_features", "text", np.float32, (cached_dims["text"],))
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
    if all(s.get("waveform_mean") is not None for s in samples):
        # Rows = the valid frames + one frame of the silence after them (kept where the padding has room).
        frames = np.array([s["latent_frames"] for s in samples], np.int32)
        length = max(minimum.get("waveform_mean", 1), int(frames.max()))
        for key in ("waveform_mean", "waveform_std"):
            rows = [s[key][:length] for s in samples]
            batch[key], _ = _stack(rows, np.float32, length, (cached_dims["latent"],))
        batch["waveform_lengths"] = frames * hop
    elif all(s.get("waveform") is not None for s in samples):
        waves = [np.asarray(s["waveform"], np.float32) for s in samples]
        length = max([minimum.get("waveform", hop)] + [len(w) for w in waves])
        batch["waveform"], wave_mask = _stack(waves, np.float32, length)
        batch["waveform_lengths"] = wave_mask.sum(1).astype(np.int32)
    return batch
