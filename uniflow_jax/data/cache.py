"""The latent cache: frozen-encoder outputs computed once, read back by the same pipeline.

    python -m uniflow_jax.data.cache --config configs/<name>.py --out DIR [--splits train,val]

On a pod, decoding audio and running the VAE, T5 and CLIP for every step would starve the accelerators;
so this command loads every manifest row once (the usual checks and skips), encodes it with the frozen
encoders of ``config.model.frozen_weights`` and writes a TFDS dataset in the ArrayRecord format
(``data/records.py``): one split ``{split}_{task}`` per task, VAE posteriors (mean, std) of the target and
of SE/SR inputs, T5 caption features, CLIP frame features, and the phone/score fields as they are.
Setting ``config.data.cache = DIR`` makes the pipeline read it; the random parts (posterior sample,
crops, instruction choice) are still drawn per epoch, crops at the latent level.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging
from flax import nnx
from ml_collections import config_flags
from tqdm import tqdm

from uniflow_jax import parallel, tasks
from uniflow_jax.data import batch_format, cache_reader, pipeline, records
from uniflow_jax.data.loader import SKIP_REASONS, ExampleLoader

PAD_FRAMES = 16  # > the VAE encoder's reach past a clip's end (6 latent frames for the Oobleck encoder)


def feature_spec(config: ml_collections.ConfigDict) -> dict[str, tuple[str, tuple[int | None, ...]]]:
    """One spec for every task's split; fields a task does not use are stored empty."""
    m = config.model
    dims = {"latent": m.vae.latent_dim, "text": m.t5.d_model, "video": m.video_dim, "speaker": m.phoneme.speaker_dim}
    return batch_format.cache_spec(dims)


class FrozenFeatures:
    """Jitted frozen encoders; inputs are padded to bucket sizes so that few programs are compiled."""

    def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
        from uniflow_jax.weights import frozen

        self.buckets = pipeline.buckets_from_config(config.data.buckets)
        self.hop = int(np.prod(config.model.vae.strides))
        graphdef, state = frozen.frozen_encoders(config, mesh)
        self._moments = jax.jit(lambda s, w: nnx.merge(graphdef, s).vae.encode_moments(w))
        self._text = jax.jit(lambda s, ids, mask: nnx.merge(graphdef, s).t5(ids, mask))
        self._state = state
        self._clip = None
        self._config, self._mesh = config, mesh

    def _pad(self, array: np.ndarray, length: int) -> np.ndarray:
        return np.pad(array, [(0, length - len(array))] + [(0, 0)] * (array.ndim - 1))[None]

    def moments(self, audio: np.ndarray, tail: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Posterior of a clip followed by silence, plus ``tail`` frames of that silence: the encoder's
        biases make a clip's last frames depend on whether zeros follow (as in a padded batch), and the
        DiT's final convolution reads one padded target frame — so targets keep ``tail=1``."""
        frames = len(audio) // self.hop
        fitting = [b.latent for b in self.buckets if b.latent >= frames + PAD_FRAMES]
        padded = (min(fitting) if fitting else frames + PAD_FRAMES) * self.hop
        mean, std = self._moments(self._state, jnp.asarray(self._pad(audio, padded)))
        return np.asarray(mean[0, : frames + tail]), np.asarray(std[0, : frames + tail])

    def text(self, ids: np.ndarray) -> np.ndarray:
        width = min(b.text for b in self.buckets if b.text >= len(ids))
        mask = np.arange(width)[None] < len(ids)
        return np.asarray(self._text(self._state, jnp.asarray(self._pad(ids, width)), jnp.asarray(mask))[0, : len(ids)])

    def video(self, pixels: np.ndarray) -> np.ndarray:
        if self._clip is None:
            from uniflow_jax.weights import frozen

            graphdef, state = frozen.clip_encoder(self._config, self._mesh)
            self._clip = (jax.jit(lambda s, x: nnx.merge(graphdef, s)(x)[0]), state)
        width = min(b.video for b in self.buckets if b.video >= len(pixels))
        return np.asarray(self._clip[0](self._clip[1], jnp.asarray(self._pad(pixels, width)[0]))[: len(pixels)])


def encode(sample: Mapping[str, Any], features: FrozenFeatures, spec: Mapping) -> dict[str, Any]:
    """A loaded sample → one cache record (every spec field present; unused ones empty)."""
    record: dict[str, Any] = {}
    for name, (dtype, shape) in spec.items():
        if dtype != "string":
            record[name] = np.zeros(tuple(0 if n is None else n for n in shape), dtype)
    record.update(id=str(sample["id"]), dataset=int(sample["dataset"]), task=tasks.index(sample["task"]), singer=0)
    encoders = {
        "waveform": lambda audio: features.moments(audio, tail=1),  # + the frame after the clip
        "audio": features.moments,
        "text_ids": lambda ids: (features.text(ids),),
        batch_format.VIDEO_PIXELS: lambda pixels: (features.video(pixels),),
    }
    for raw, encoder in encoders.items():
        if raw in sample:
            record.update(zip(batch_format.encoded(raw), encoder(sample[raw]), strict=True))
    for name, field in batch_format.FIELDS.items():  # stored as loaded: phones, scores, durations, video features
        if name in spec and field.form in ("any", "features") and name in sample:
            record[name] = np.asarray(sample[name], field.dtype)
    return record


def _encoded(samples, features: FrozenFeatures, spec: Mapping, skips: np.ndarray) -> Iterator[dict]:
    """Cache records of the usable samples; skipped rows are counted into ``skips`` (dataset, reason)."""
    for sample in samples:
        if "skip" in sample:
            skips[sample["dataset"], SKIP_REASONS.index(sample["skip"])] += 1
        else:
            yield encode(sample, features, spec)


def build(config: ml_collections.ConfigDict, out: str | pathlib.Path, splits: Sequence[str]) -> dict:
    """Writes the cache of ``splits``; returns {split: {"examples": {task: n}, "skips": {dataset: {...}}}}."""
    out = pathlib.Path(out)
    mesh = parallel.make_mesh(config.mesh.shape)
    features = FrozenFeatures(config, mesh)
    spec = feature_spec(config)
    # Full length up to the largest bucket: the task crops are drawn per epoch when reading.
    options = dataclasses.replace(pipeline.load_options(config), crop_seconds={}, on_bad_input="skip")
    options = dataclasses.replace(options, video_input="auto")
    summary: dict[str, Any] = {}
    datasets: dict[str, list[str]] = {}
    for split in splits:
        sources = pipeline.open_datasets(config.data[split], "skip")
        datasets[split] = [s.spec.label for s in sources]
        loader = ExampleLoader(sources, options)
        skips = np.zeros((len(sources), len(SKIP_REASONS)), np.int64)
        counts = {}
        for task in tasks.TASKS:
            mine = [i for i, s in enumerate(sources) if s.spec.task == task.short]
            if not mine:
                continue
            rows = grain.MapDataset.concatenate([pipeline.tagged_rows(sources[i], i) for i in mine])
            samples = rows.random_map(loader, seed=config.seed).to_iter_dataset(grain.ReadOptions(num_threads=4))

            desc = f"{split}/{task.short}"
            counts[task.short] = records.write_split(
                _encoded(tqdm(samples, total=len(rows), desc=desc), features, spec, skips),
                out,
                split=f"{split}_{task.short}",
                features=spec,
            )
        summary[split] = {"examples": counts, "skips": pipeline.skip_summary(skips, datasets[split])}
    meta = {"datasets": datasets, "hop": features.hop, "latent_dim": config.model.vae.latent_dim}
    (out / cache_reader.META_FILE).write_text(json.dumps(meta, indent=2))
    return summary


def _define_flags() -> None:
    """Flags of the command (defined only when run, so importing this module defines none)."""
    config_flags.DEFINE_config_file("config", None, "Experiment config (a get_config() file).")
    flags.DEFINE_string("out", None, "Output folder of the cache (a TFDS dataset).")
    flags.DEFINE_list("splits", ["train", "val"], "Dataset lists of config.data to cache.")
    flags.mark_flags_as_required(["config", "out"])


def main(argv: list[str]) -> None:
    del argv
    config, out = flags.FLAGS.config, flags.FLAGS.out
    summary = build(config, out, [s for s in flags.FLAGS.splits if config.data[s]])
    for split, report in summary.items():
        logging.info("%s: %s examples per task", split, report["examples"])
        print(f"{split}: {report['examples']}\n{report['skips']}")
    print(f"cache written to {out}; set config.data.cache={out} to train from it")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
