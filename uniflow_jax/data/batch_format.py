"""The batch format: every field a sample or a padded batch holds, its dtype, and the bucket axis that pads it.

Collate, the length buckets, the latent cache's feature spec, the cached reader and the objectives read their
keys from :data:`FIELDS`; only the model (``models/uniflow.py``) names its inputs itself.

A field is carried by the samples of one content kind (``tasks.Task.content``; ``None``: every task's target
and unit durations) and comes in one **form**: ``raw`` (what the loader reads: audio samples, T5 token ids),
``cached`` (the frozen encoders' outputs read back from the latent cache), ``pixels``/``features`` (V2A video as
CLIP input pixels or per-frame CLIP features; the cache stores features), or ``any`` (phones and scores: the
same before and after the encoders). Padded fields have an **axis**, the bucket dimension that sets their
padded length: ``latent`` frames, ``samples`` (latent frames × the VAE hop), content ``phoneme``/``score``/
``video``/``text`` units, ``units`` (per-unit durations) or ``instruction`` tokens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Field:
    dtype: str
    kind: str | None  # the content kind of the tasks whose samples carry it; None: every task
    axis: str | None  # the bucket axis its first dimension is padded to; None: one value/vector per sample
    form: str = "any"  # "raw" | "cached" | "pixels" | "features" | "any" (see the module docstring)
    tail: str | None = None  # its trailing dimension, named as in the ``dims`` of :func:`cache_spec`
    mask: str | None = None  # the padding mask collate writes beside it
    lengths: str | None = None  # the per-sample length (in samples) collate writes beside it
    encodes: str | None = None  # for a cached field: the raw field the frozen encoders computed it from
    upstream: str | None = None  # its name in the original's per-sample content dicts (parity)


FIELDS: dict[str, Field] = {
    "phoneme": Field("int32", "phoneme", "phoneme", mask="phoneme_mask", upstream="phoneme"),
    "xvector": Field("float32", "phoneme", None, tail="speaker", upstream="spk"),
    "score_phoneme": Field("int32", "score", "score", mask="score_mask", upstream="phoneme"),
    "midi": Field("int32", "score", "score", upstream="midi"),
    "midi_duration": Field("float32", "score", "score", upstream="midi_duration"),
    "is_slur": Field("int32", "score", "score", upstream="is_slur"),
    "singer": Field("int32", "score", None, upstream="spk"),
    "audio": Field("float32", "audio", "samples", "raw", lengths="audio_lengths", upstream="array"),
    "audio_mean": Field("float32", "audio", "latent", "cached", "latent", lengths="audio_lengths", encodes="audio"),
    "audio_std": Field("float32", "audio", "latent", "cached", "latent", encodes="audio"),
    "video": Field(
        "float32", "video", "video", "features", "video", "video_mask", encodes="video_frames", upstream="array"
    ),
    "video_frames": Field("float32", "video", "video", "pixels", "pixels", mask="video_mask"),
    "text_ids": Field("int32", "text", "text", "raw", mask="text_mask", upstream="token_ids"),
    "text_features": Field("float32", "text", "text", "cached", "text", mask="text_mask", encodes="text_ids"),
    "duration": Field("float32", None, "units", mask="duration_mask"),
    "instruction": Field("float32", None, "instruction", "raw", "instruction", mask="instruction_mask"),
    # The target. Cached rows: the clip's frames and one frame of the silence after it (see data/cache.py).
    "waveform": Field("float32", None, "samples", "raw", lengths="waveform_lengths"),
    "waveform_mean": Field("float32", None, "latent", "cached", "latent", encodes="waveform"),
    "waveform_std": Field("float32", None, "latent", "cached", "latent", encodes="waveform"),
}
CONTENT_KINDS = ("phoneme", "score", "audio", "video", "text")
SCORE_LISTS = ("score_phoneme", "midi", "midi_duration", "is_slur")  # an SVS score's per-phone lists (DiffSinger's)
VIDEO_PIXELS = "video_frames"  # the V2A input that CLIP still has to encode (in the train step or the cache)


def forms(*, cached: bool, pixels: bool = False) -> frozenset[str]:
    """The forms a batch holds: before or after the frozen encoders; V2A as pixels or CLIP features."""
    return frozenset({"any", "cached" if cached else "raw", "pixels" if pixels else "features"})


def content_fields(kind: str, *, cached: bool, pixels: bool = False) -> tuple[str, ...]:
    """The fields of a ``kind`` task's content in the given forms (every content kind is always padded)."""
    chosen = forms(cached=cached, pixels=pixels)
    return tuple(name for name, f in FIELDS.items() if f.kind == kind and f.form in chosen)


def target_fields(*, cached: bool) -> tuple[str, ...]:
    """The training target: the waveform, or its cached VAE posterior (mean, std)."""
    return encoded("waveform") if cached else ("waveform",)


def encoded(raw: str) -> tuple[str, ...]:
    """The cached fields the frozen encoders compute from the raw field ``raw`` (in ``FIELDS`` order)."""
    return tuple(name for name, f in FIELDS.items() if f.encodes == raw)


def content_length(sample: Mapping[str, Any], kind: str) -> int:
    """How many content units of ``kind`` (padded on that axis) a sample holds; 0 when it holds none."""
    for name, f in FIELDS.items():
        if f.kind == kind and f.axis == kind and sample.get(name) is not None:
            return len(sample[name])
    return 0


def tail_shape(name: str, dims: Mapping[str, int | tuple[int, ...]]) -> tuple[int, ...]:
    """A field's trailing shape; ``dims`` sizes the named trailing dimensions."""
    tail = FIELDS[name].tail
    if tail is None:
        return ()
    return tuple(dims[tail]) if isinstance(dims[tail], tuple) else (int(dims[tail]),)


def min_lengths(sizes: Mapping[str, int]) -> dict[str, int]:
    """``collate``'s ``min_lengths``: every field padded on one of the given axes, at that axis's size."""
    return {name: sizes[f.axis] for name, f in FIELDS.items() if f.axis in sizes}


def cache_spec(dims: Mapping[str, int]) -> dict[str, tuple[str, tuple[int | None, ...]]]:
    """The latent cache's per-record fields (dtype, shape; None = any length): everything a training batch
    reads after the frozen encoders, plus the record's id, dataset and task. ``dims`` sizes the trailing
    dimensions (latent, text, video, speaker)."""
    spec: dict[str, tuple[str, tuple[int | None, ...]]] = {
        "id": ("string", ()),
        "dataset": ("int32", ()),
        "task": ("int32", ()),
    }
    for name, f in FIELDS.items():
        if f.form in forms(cached=True):
            spec[name] = (f.dtype, ((None,) if f.axis else ()) + tail_shape(name, dims))
    return spec


def synthetic_sample(kind: str, frames: int, units: int, seconds_per_unit: float, dims: Mapping[str, int],
                     rng: np.random.Generator) -> dict[str, Any]:  # fmt: skip
    """A random cached-form training sample of a ``kind`` task (benchmarks): ``frames`` latent frames of target
    (and of SE/SR input), ``units`` content units of ``seconds_per_unit`` each; index fields in small valid ranges."""
    sample: dict[str, Any] = {"latent_frames": frames}
    for name in target_fields(cached=True) + content_fields(kind, cached=True):
        f = FIELDS[name]
        length = frames + 1 if name in target_fields(cached=True) else frames if f.axis == "latent" else units
        shape = ((length,) if f.axis else ()) + tail_shape(name, dims)
        if f.dtype == "int32":
            sample[name] = rng.integers(0, 2 if name in ("is_slur", "singer") else 60, shape).astype(np.int32)
        elif name.endswith("_std"):
            sample[name] = np.full(shape, 0.1, np.float32)
        elif name == "midi_duration":
            sample[name] = np.full(shape, seconds_per_unit, np.float32)
        else:
            sample[name] = rng.standard_normal(shape).astype(np.float32)
    if kind in ("phoneme", "score"):  # durations come with the data; other kinds' units have fixed durations
        sample["duration"] = np.full(units, seconds_per_unit, np.float32)
    return sample
