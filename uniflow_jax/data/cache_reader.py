"""Reading the latent cache (written by ``python -m uniflow_jax.data.cache``) into pipeline samples.

A cache record holds the frozen encoders' outputs for one manifest row; :class:`CachedLoader` makes the
same per-epoch draws as :class:`~uniflow_jax.data.loader.ExampleLoader` on them (instruction choice,
task crops — here at the latent level, 50 frames per second, the same window for SE/SR input and target;
a crop's edge frames differ slightly from encoding the cropped audio, as the encoder sees past the edges).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from uniflow_jax import tasks
from uniflow_jax.data import batch_format, records
from uniflow_jax.data.loader import LoadOptions
from uniflow_jax.frontends.video import FRAME_RATE

META_FILE = "uniflow_cache.json"


@dataclasses.dataclass(frozen=True)
class CachedLoader:
    """Cache record, rng → sample: the per-epoch draws of :class:`ExampleLoader` on cached features."""

    options: LoadOptions

    def __call__(self, record: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        task = tasks.TASKS[int(record["task"])].short
        sample: dict[str, Any] = {"task": task, "instruction_index": int(rng.integers(tasks.NUM_INSTRUCTIONS))}
        sample.update(id=str(record["id"]), dataset=int(record["dataset"]))
        target = batch_format.target_fields(cached=True)
        frames = len(record[target[0]]) - 1  # the last row is the silence after the clip
        limit = min(self.options.max_lengths["latent"], frames)
        rate = self.options.sample_rate / self.options.hop  # latent frames per second
        crop = min(limit, round(self.options.crop_seconds.get(task, limit / rate) * rate))
        spec = tasks.get(task)
        start = int(rng.integers(0, frames - crop + 1)) if spec.crop.random_start and frames > crop else 0
        sample["latent_frames"] = crop
        for key in target:
            sample[key] = record[key][start : start + crop + 1]  # + the frame after the window
        for name in batch_format.content_fields(spec.content, cached=True):
            if spec.content == "audio":  # SE/SR: the same window as the target's
                sample[name] = record[name][start : start + crop]
            elif spec.content == "video":
                sample[name] = record[name][: int(crop * FRAME_RATE / rate)]
            else:
                sample[name] = record[name]
        if spec.unit_seconds is None:  # per-unit durations come with the data (TTS, SVS)
            sample["duration"] = record["duration"]
        return sample


def open_cache(cache: str, split: str) -> tuple[dict[str, records.RecordSource], list[str]]:
    """The per-task record sources of ``split`` and the names of the datasets they came from."""
    meta = json.loads((pathlib.Path(cache) / META_FILE).read_text())
    if split not in meta["datasets"]:
        raise ValueError(f"the cache at {cache} has no split {split!r} (it has {', '.join(meta['datasets'])})")
    import tensorflow_datasets as tfds

    written = tfds.builder_from_directory(cache).info.splits
    sources = {
        task.short: records.RecordSource(cache, f"{split}_{task.short}")
        for task in tasks.TASKS
        if f"{split}_{task.short}" in written
    }
    return sources, meta["datasets"][split]
