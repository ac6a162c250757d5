"""Manifest row → training sample: check the audio, read the content, crop as the original does.

A sample is the dict ``data/collate.py`` batches. The crop window is chosen from the file's header and only
that segment is decoded and resampled, so a long file costs its crop, not its length. A row that cannot become
one (missing, unreadable — a folder too —, empty, silent, non-finite, too short or too long audio, a file longer
than ``data.max_file_seconds``; unusable content) yields ``{"skip": reason}`` so that the batcher can count it
per dataset and reason — or raises :class:`BadExample` when the config asks for that
(``data.on_bad_input = "raise"``). Silence and non-finite samples are judged on the segment read.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import soundfile as sf

from uniflow_jax import tasks
from uniflow_jax.data import batch_format, content
from uniflow_jax.data.manifest import ManifestSource
from uniflow_jax.frontends.audio import SAMPLE_RATE

SKIP_REASONS = ("missing", "unreadable", "empty", "silent", "nonfinite", "too_short", "too_long", "bad_content")


class BadExample(ValueError):
    """An unusable row, with the reason (one of :data:`SKIP_REASONS`) and where it came from."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclasses.dataclass(frozen=True)
class LoadOptions:
    """How rows become samples. ``max_lengths`` are the largest bucket's sizes (``latent`` frames and per
    content kind units); longer crop-able audio is cropped to fit, longer phone/score content is skipped."""

    max_lengths: Mapping[str, int]
    crop_seconds: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(tasks.CROP_SECONDS))
    max_seconds: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(tasks.MAX_SECONDS))
    min_seconds: float = 0.3
    max_file_seconds: float = 600.0  # longer files are skipped (too_long): a crop reads only its segment
    silence_threshold: float = 1e-4
    hop: int = 480
    sample_rate: int = SAMPLE_RATE
    on_bad_input: str = "skip"  # or "raise"
    video_input: str = "features"  # "frames": CLIP pixels (the train step encodes them); "auto": as the file is
    image_size: int = 224
    tokenizer: str | None = None  # SentencePiece model for captions

    def __post_init__(self):
        if self.on_bad_input not in ("skip", "raise"):
            raise ValueError(f"data.on_bad_input must be 'skip' or 'raise', not {self.on_bad_input!r}")
        if self.video_input not in ("features", "frames", "auto"):
            raise ValueError(f"data.video_input must be 'features' or 'frames', not {self.video_input!r}")


@dataclasses.dataclass(frozen=True)
class AudioFile:
    """An audio file that passed the checks its header allows; ``length``: its samples at the training rate."""

    path: str
    frames: int  # at the file's own rate
    rate: int
    length: int


def open_checked(path: str, options: LoadOptions) -> AudioFile:
    """Checks what the header tells (exists, readable, not empty, not too short, not longer than
    ``max_file_seconds``) without decoding; raises :class:`BadExample` naming the first failure."""
    if not os.path.exists(path):
        raise BadExample("missing", f"{path}: no such file")
    if not os.path.isfile(path):
        raise BadExample("unreadable", f"{path}: not a file")
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise BadExample("unreadable", f"{path}: cannot read audio ({error})") from None
    if info.frames <= 0:
        raise BadExample("empty", f"{path}: no samples")
    seconds = info.frames / info.samplerate
    if seconds < options.min_seconds:
        raise BadExample("too_short", f"{path}: {seconds:.3f} s < {options.min_seconds} s")
    if seconds > options.max_file_seconds:
        raise BadExample("too_long", f"{path}: {seconds:.1f} s > data.max_file_seconds = {options.max_file_seconds:g}")
    length = -(-info.frames * options.sample_rate // info.samplerate)  # as resampling the whole file gives
    return AudioFile(path, info.frames, info.samplerate, length)


_RESAMPLE_MARGIN_S = 0.05  # decoded on each side of a segment, so the resampler's edges fall outside it


def read_segment(file: AudioFile, start: int, length: int, options: LoadOptions) -> np.ndarray:
    """Samples ``[start, start + length)`` of ``file`` at the training rate, mono: only the frames that cover them
    are decoded (seek + read, then resample the segment; a 2 s crop of a 10-minute file decodes ~2 s). Raises
    :class:`BadExample` when the segment holds NaN/inf or is silent."""
    rate, target = file.rate, options.sample_rate
    length = min(length, file.length - start)
    if rate == target:
        first, stop, offset = start, start + length, 0
    else:  # begin at a frame that falls on a whole output sample, a margin before the segment
        step = rate // math.gcd(rate, target)  # input frames per whole number of output samples
        first = max(0, (start * rate // target - int(_RESAMPLE_MARGIN_S * rate)) // step * step)
        stop = min(file.frames, -(-(start + length) * rate // target) + int(_RESAMPLE_MARGIN_S * rate))
        offset = start - first * target // rate
    try:
        audio, _ = sf.read(file.path, start=first, stop=stop, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise BadExample("unreadable", f"{file.path}: cannot read audio ({error})") from None
    audio = audio.mean(axis=1)
    if not np.all(np.isfinite(audio)):
        raise BadExample("nonfinite", f"{file.path}: NaN or infinite samples")
    if rate != target:
        import librosa  # imported lazily: its first import is slow

        audio = librosa.resample(audio, orig_sr=rate, target_sr=target, res_type="soxr_hq")
    audio = np.ascontiguousarray(audio[offset : offset + length], np.float32)
    if audio.size == 0 or np.max(np.abs(audio)) < options.silence_threshold:
        raise BadExample("silent", f"{file.path}: peak below {options.silence_threshold} in the segment read")
    return audio


class ExampleLoader:
    """The grain random map of one task's datasets: ``(dataset index, row) , rng → sample``."""

    def __init__(self, sources: list[ManifestSource], options: LoadOptions):
        self.sources = sources
        self.options = options
        self._tokenizer = None

    def tokenize(self, text: str) -> np.ndarray:
        if self._tokenizer is None:
            if not self.options.tokenizer:
                raise ValueError("captions need a tokenizer: set data.tokenizer to a SentencePiece model file")
            from uniflow_jax.frontends.text import T5Tokenizer

            self._tokenizer = T5Tokenizer(self.options.tokenizer, max_length=self.options.max_lengths["text"])
        return self._tokenizer.encode(text)

    def __getstate__(self):
        return {**self.__dict__, "_tokenizer": None}

    def __call__(self, element: tuple[int, dict], rng: np.random.Generator) -> dict:
        dataset, row = element
        try:
            return {**self.load(self.sources[dataset], row, rng), "dataset": dataset, "id": row["id"]}
        except (BadExample, content.BadContent) as error:
            bad = error if isinstance(error, BadExample) else BadExample("bad_content", str(error))
            if self.options.on_bad_input == "raise":
                raise BadExample(bad.reason, f"{row['where']} (id {row['id']}): {bad.detail}") from None
            return {"skip": bad.reason, "dataset": dataset, "id": row["id"]}

    def load(self, source: ManifestSource, row: dict, rng: np.random.Generator) -> dict[str, Any]:
        o = self.options
        task, key, value = row["task"], row["id"], row["content"]
        if "problem" in row:  # found in the manifest itself (an id without an audio row, a blank caption)
            raise BadExample(*row["problem"])
        sample: dict[str, Any] = {"task": task, "instruction_index": int(rng.integers(tasks.NUM_INSTRUCTIONS))}
        target = open_checked(row["audio"], o)
        limit = o.max_lengths["latent"] * o.hop
        crop = min(limit, round(o.crop_seconds.get(task, limit / o.sample_rate) * o.sample_rate))
        random_start = tasks.get(task).crop.random_start
        if task in ("se", "sr"):
            given = None if value is None else open_checked(source.content_path(value), o)
            n = target.length if given is None else min(target.length, given.length)  # one window for both
            start = int(rng.integers(0, n - crop + 1)) if random_start and n > crop else 0
            waveform = read_segment(target, start, min(n, crop), o)
            if given is None:  # no input audio: the original band-limits the target on the fly
                source_audio = content.band_limit(waveform, rng, o.sample_rate)
            else:
                source_audio = read_segment(given, start, min(n, crop), o)
            sample["audio"] = self._trim(source_audio)
        elif task in ("t2a", "t2m"):
            start = int(rng.integers(0, target.length - crop + 1)) if random_start and target.length > crop else 0
            waveform = read_segment(target, start, crop, o)
        elif task == "v2a":
            waveform = read_segment(target, 0, crop, o)
            sample.update(
                content.video(
                    value,
                    key,
                    source.content_path,
                    frames={"features": False, "frames": True, "auto": None}[o.video_input],
                    image_size=o.image_size,
                    max_seconds=crop / o.sample_rate,
                )
            )
        elif task in ("tts", "svs"):  # phones and scores cannot be cropped: the whole clip or none
            seconds = target.length / o.sample_rate
            if target.length > limit or seconds > o.max_seconds.get(task, np.inf):
                raise BadExample("too_long", f"{row['audio']}: {seconds:.2f} s is longer than the limit")
            waveform = read_segment(target, 0, target.length, o)
            reader = content.tts if task == "tts" else content.svs
            sample.update(reader(value, key, source.content_path, source.spec.allow_pickle))
        if task in ("t2a", "t2m"):
            sample["text_ids"] = self.tokenize(str(value))
        sample["waveform"] = self._trim(waveform)
        self._check_lengths(sample, row)
        return sample

    def _trim(self, audio: np.ndarray) -> np.ndarray:
        """Whole VAE frames only (the original rounds lengths down to the hop)."""
        return audio[: len(audio) // self.options.hop * self.options.hop]

    def _check_lengths(self, sample: dict, row: dict) -> None:
        m = self.options.max_lengths
        kind = tasks.get(sample["task"]).content
        if kind not in ("phoneme", "score", "video"):
            return
        units = batch_format.content_length(sample, kind)
        if units > m[kind]:
            raise BadExample("too_long", f"{row['where']}: {units} {kind} units > the largest bucket ({m[kind]})")
        if units == 0:
            raise BadExample("bad_content", f"{row['where']}: empty {kind} content")
