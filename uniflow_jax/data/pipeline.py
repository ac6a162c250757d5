"""The training input pipeline (grain Dataset API), from manifests to global ``jax.Array`` batches.

Per task: the task's datasets concatenated → shuffle (reshuffled every epoch) → repeat → load/crop in
parallel threads. Then the tasks are **mixed** by named weights (the original's ``TaskIteratingSampler``
balance: each task is drawn in proportion to its weight whatever its size), and the **bucket batcher**
takes the next *global* batch of samples, counts and drops skipped rows, picks the smallest bucket that
holds them all (one fixed shape per bucket: the number of compiled programs is bounded by the number of
buckets) and pads only the rows this host feeds to its devices (:func:`host_rows`).

Every host walks the same global sample stream, so the batches — and the losses — do not depend on the
number of processes, and all hosts agree on each batch's bucket without talking to each other. The price is
that each host loads (not pads or transfers) the whole global batch; with the latent cache that is cheap.
Optional worker processes prefetch whole batches. Every stage is deterministic given the seed and the
iterator's state is small, exactly restorable, and the same on every host.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grain
import jax
import ml_collections
import numpy as np

from uniflow_jax import parallel, tasks
from uniflow_jax.data import batch_format, cache_reader
from uniflow_jax.data.collate import collate
from uniflow_jax.data.loader import SKIP_REASONS, ExampleLoader, LoadOptions
from uniflow_jax.data.manifest import DatasetSpec, ManifestSource

# The original's task-sampling presets (configs/data/task_sampling/); tasks not in a config are dropped.
TASK_WEIGHT_PRESETS: dict[str, dict[str, float]] = {
    "time_align_balanced": dict(tts=1, svs=1, se=1, sr=1, v2a=1, t2a=2, t2m=3),
    "upsampling": dict(tts=3, svs=1, se=2, sr=1, v2a=5, t2a=2, t2m=4),
    "uniform": {task.short: 1 for task in tasks.TASKS},
}
HOST_KEYS = ("skips", "skipped_rows", "id", "dataset")  # batch entries that stay on the host (not model inputs)


@dataclasses.dataclass(frozen=True, order=True)
class Bucket:
    """One static batch shape: latent frames (50 per second) and content units per kind."""

    latent: int
    phoneme: int
    score: int
    video: int
    text: int

    def sizes(self, hop: int) -> dict[str, int]:
        """Minimum padded lengths of ``collate``'s fields for this bucket."""
        units = max(self.latent, self.phoneme, self.score, self.video, 1)
        axes = {kind: getattr(self, kind) for kind in ("latent", "phoneme", "score", "video", "text")}
        return batch_format.min_lengths({**axes, "samples": self.latent * hop, "units": units})

    def fits(self, sample: Mapping[str, Any], hop: int) -> bool:
        latent = sample["latent_frames"] if "latent_frames" in sample else len(sample["waveform"]) // hop
        lengths = {kind: batch_format.content_length(sample, kind) for kind in ("phoneme", "score", "video", "text")}
        return latent <= self.latent and all(n <= getattr(self, kind) for kind, n in lengths.items())


def buckets_from_config(entries: Sequence[Mapping[str, int]]) -> tuple[Bucket, ...]:
    buckets = tuple(sorted(Bucket(**dict(entry)) for entry in entries))
    if not buckets:
        raise ValueError("data.buckets is empty: give at least one bucket")
    return buckets


def task_weights(weights: str | Mapping[str, float], present: Sequence[str]) -> dict[str, float]:
    """Named weights for the tasks that have data: a preset name, ``"t2a:3,tts:1"`` or a mapping."""
    if isinstance(weights, str) and ":" in weights:
        try:
            weights = {name.strip(): float(w) for name, w in (item.split(":") for item in weights.split(","))}
        except ValueError:
            raise ValueError(f"data.task_weights {weights!r}: write a preset name or task:weight,...") from None
    if isinstance(weights, str):
        if weights not in TASK_WEIGHT_PRESETS:
            raise ValueError(f"unknown task weights {weights!r}; presets: {', '.join(TASK_WEIGHT_PRESETS)}")
        weights = TASK_WEIGHT_PRESETS[weights]
    weights = {tasks.get(name).short: float(w) for name, w in dict(weights).items()}
    missing = [t for t in present if weights.get(t, 0) <= 0]
    if missing:
        raise ValueError(f"tasks {', '.join(missing)} have data but no positive weight in data.task_weights")
    return {t: weights[t] for t in present}


def load_options(config: ml_collections.ConfigDict) -> LoadOptions:
    d = config.data
    largest = max(buckets_from_config(d.buckets))
    return LoadOptions(
        max_lengths=dataclasses.asdict(largest),
        crop_seconds=dict(d.crop_seconds),
        max_seconds=dict(d.max_seconds),
        min_seconds=d.min_seconds,
        max_file_seconds=d.get("max_file_seconds", LoadOptions.max_file_seconds),
        on_bad_input=d.on_bad_input,
        video_input=d.video_input,
        image_size=config.model.clip.image_size,
        tokenizer=d.tokenizer or None,
        hop=int(np.prod(config.model.vae.strides)),
        sample_rate=config.model.sample_rate,
    )


def open_datasets(entries: Sequence[Mapping[str, Any]], on_bad_input: str = "skip") -> list[ManifestSource]:
    """Reads and checks every manifest of a dataset list (raises ``ManifestError`` listing the problems)."""
    return [ManifestSource(DatasetSpec.from_config(entry), on_bad_input) for entry in entries]


class _Tag:
    """Pairs a row with its dataset's index (a class, not a lambda: worker processes unpickle it)."""

    def __init__(self, index: int):
        self.index = index

    def __call__(self, row: dict) -> tuple[int, dict]:
        return self.index, row


def tagged_rows(source: ManifestSource, index: int) -> grain.MapDataset:
    """The rows of one dataset as ``(dataset index, row)``, the input of :class:`ExampleLoader`."""
    return grain.MapDataset.source(source).map(_Tag(index))


@dataclasses.dataclass(frozen=True)
class BatchSpec:
    """What the batcher needs to pad a list of samples into one bucket-shaped batch."""

    batch_size: int
    buckets: tuple[Bucket, ...]
    hop: int
    speaker_dim: int
    video_dim: int
    num_datasets: int
    image_size: int | None = None
    cached_dims: Mapping[str, int] | None = None
    rows: tuple[int, ...] | None = None  # the rows of each global batch this host keeps (None: all)

    def bucket_for(self, samples: Sequence[Mapping[str, Any]]) -> Bucket:
        for bucket in self.buckets:
            if all(bucket.fits(s, self.hop) for s in samples):
                return bucket
        raise ValueError("a sample exceeds the largest bucket (the loader should have cropped or skipped it)")

    def collate(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        bucket = self.bucket_for(samples)
        batch = collate(
            samples,
            hop=self.hop,
            speaker_dim=self.speaker_dim,
            video_dim=self.video_dim,
            min_lengths=bucket.sizes(self.hop),
            image_size=self.image_size,
            cached_dims=self.cached_dims,
        )
        batch["dataset"] = np.array([s["dataset"] for s in samples], np.int32)
        batch["id"] = np.array([s["id"] for s in samples])
        return batch


class BucketBatchDataset(grain.IterDataset):
    """Samples (or skip markers) → padded bucket batches with running skip counts, (datasets, reasons) int64,
    cumulative since the start of training and restored with the state: ``skips`` counts every read of a bad row
    (a row is read again each epoch), ``skipped_rows`` the distinct rows."""

    def __init__(self, parent: grain.IterDataset, spec: BatchSpec):
        super().__init__(parent)
        self.spec = spec

    def __iter__(self) -> _BucketBatchIterator:
        return _BucketBatchIterator(self._parent.__iter__(), self.spec)


class _BucketBatchIterator(grain.DatasetIterator):
    def __init__(self, parent: grain.DatasetIterator, spec: BatchSpec):
        super().__init__(parent)
        self.spec = spec
        self.skips = np.zeros((spec.num_datasets, len(SKIP_REASONS)), np.int64)
        self.skipped: set[tuple[int, int, str]] = set()  # (dataset, reason, row id) of every distinct bad row
        self.skipped_rows = np.zeros_like(self.skips)  # their counts, kept as rows are added

    def __next__(self) -> dict[str, np.ndarray]:
        samples = []
        while len(samples) < self.spec.batch_size:
            sample = next(self._parent)
            if "skip" in sample:
                reason = SKIP_REASONS.index(sample["skip"])
                self.skips[sample["dataset"], reason] += 1
                row = (int(sample["dataset"]), reason, str(sample["id"]))
                if row not in self.skipped:
                    self.skipped.add(row)
                    self.skipped_rows[row[0], reason] += 1
            else:
                samples.append(sample)
        if self.spec.rows is not None:
            samples = [samples[i] for i in self.spec.rows]
        batch = self.spec.collate(samples)
        batch["skips"] = self.skips.copy()
        batch["skipped_rows"] = self.skipped_rows.copy()
        return batch

    def get_state(self) -> dict:
        skipped = [list(entry) for entry in sorted(self.skipped)]
        return {"parent": self._parent.get_state(), "skips": self.skips.tolist(), "skipped": skipped}

    def set_state(self, state: dict) -> None:
        self._parent.set_state(state["parent"])
        self.skips = np.asarray(state["skips"], np.int64).reshape(self.skips.shape)
        self.skipped = {(int(d), int(r), str(i)) for d, r, i in state.get("skipped", [])}
        self.skipped_rows = np.zeros_like(self.skips)
        for dataset, reason, _ in self.skipped:
            self.skipped_rows[dataset, reason] += 1


@dataclasses.dataclass
class SplitInputs:
    """What one split reads: per task, its rows (manifest rows or cache records) and the loader that turns
    a row into a sample; the datasets' labels (skip counts are per dataset); cached feature sizes."""

    rows: dict[str, grain.MapDataset]
    loader: Callable[[Any, np.random.Generator], dict]
    labels: list[str]
    cached_dims: dict[str, int] | None = None


def open_inputs(
    config: ml_collections.ConfigDict, split: str = "train", sources: Sequence[ManifestSource] | None = None
) -> SplitInputs:
    """The manifests of ``config.data[split]`` — or, with ``config.data.cache``, the cache's records."""
    options = load_options(config)
    if config.data.cache:
        record_sources, labels = cache_reader.open_cache(config.data.cache, split)
        rows = {task: grain.MapDataset.source(source) for task, source in record_sources.items()}
        dims = {"latent": config.model.vae.latent_dim, "text": config.model.t5.d_model}
        return SplitInputs(rows, cache_reader.CachedLoader(options), labels, dims)
    sources = open_datasets(config.data[split], config.data.on_bad_input) if sources is None else sources
    by_task: dict[str, list[int]] = {}
    for i, source in enumerate(sources):
        by_task.setdefault(source.spec.task, []).append(i)
    rows = {
        task: grain.MapDataset.concatenate([tagged_rows(sources[i], i) for i in mine]) for task, mine in by_task.items()
    }
    return SplitInputs(rows, ExampleLoader(list(sources), options), [s.spec.label for s in sources])


def sample_stream(config: ml_collections.ConfigDict, inputs: SplitInputs) -> grain.IterDataset:
    """The endless, task-mixed stream of samples (and skip markers), before batching; the same on every host."""
    d = config.data
    present = [t.short for t in tasks.TASKS if t.short in inputs.rows]
    weights = task_weights(d.task_weights, present)
    read = grain.ReadOptions(num_threads=d.read_threads, prefetch_buffer_size=d.read_buffer_size)
    streams = {}
    for task in present:
        task_seed = config.seed * 1009 + tasks.index(task)
        rows = inputs.rows[task].shuffle(seed=task_seed).repeat()
        streams[task] = rows.random_map(inputs.loader, seed=task_seed + 1).to_iter_dataset(read)
    return grain.IterDataset.mix(streams, weights)


def train_dataset(
    config: ml_collections.ConfigDict,
    batch_size: int,
    *,
    split: str = "train",
    rows: Sequence[int] | None = None,
    sources: Sequence[ManifestSource] | None = None,
) -> grain.IterDataset:
    """The endless, mixed, bucketed batch stream: global batches of ``batch_size`` samples, of which this
    host pads and returns ``rows`` (default: all; see :func:`host_rows`)."""
    d = config.data
    options = load_options(config)
    inputs = open_inputs(config, split, sources)
    mixed = sample_stream(config, inputs)
    spec = BatchSpec(
        batch_size=batch_size,
        buckets=buckets_from_config(d.buckets),
        hop=options.hop,
        speaker_dim=config.model.phoneme.speaker_dim,
        video_dim=config.model.video_dim,
        num_datasets=len(inputs.labels),
        image_size=options.image_size if options.video_input == "frames" and not inputs.cached_dims else None,
        cached_dims=inputs.cached_dims,
        rows=None if rows is None else tuple(int(i) for i in rows),
    )
    batches = BucketBatchDataset(mixed, spec)
    if d.worker_count > 0:
        batches = batches.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=d.worker_count, per_worker_buffer_size=d.worker_buffer_size)
        )
    return batches


def host_rows(mesh: jax.sharding.Mesh, batch_size: int, rules=None) -> np.ndarray:
    """The rows of a global batch that this process's devices hold under the mesh's batch sharding."""
    sharding = parallel.batch_sharding(mesh, 1, rules)
    rows = set()
    for index in sharding.addressable_devices_indices_map((batch_size,)).values():
        rows.update(range(batch_size)[index[0]])
    return np.array(sorted(rows), np.int64)


def to_global(
    batch: Mapping[str, np.ndarray], mesh: jax.sharding.Mesh, batch_size: int | None = None, rules=None
) -> dict[str, jax.Array]:
    """This host's rows of a global batch of ``batch_size`` (default: the host's batch is the whole batch;
    the rows are those :func:`host_rows` names) → global arrays sharded over the mesh's batch axes."""
    out = {}
    for key, value in batch.items():
        if key in HOST_KEYS:
            continue
        value = np.asarray(value)
        size = len(value) if batch_size is None else batch_size
        local_rows = host_rows(mesh, size, rules)
        if len(local_rows) != len(value):
            raise ValueError(f"{key}: this host holds {len(value)} rows, its devices need {len(local_rows)}")
        sharding = parallel.batch_sharding(mesh, value.ndim, rules)
        global_shape = (size, *value.shape[1:])
        shards = [
            jax.device_put(value[np.searchsorted(local_rows, np.arange(size)[index[0]])], device)
            for device, index in sharding.addressable_devices_indices_map(global_shape).items()
        ]
        out[key] = jax.make_array_from_single_device_arrays(global_shape, sharding, shards)
    return out


def skip_scalars(skips: np.ndarray, skipped_rows: np.ndarray) -> dict[str, int]:
    """Skip counts for the logs (console, metrics.jsonl, TensorBoard): the distinct rows skipped, in all and per
    reason, and the reads of them per reason (a bad row is read again every epoch); reasons never met are left
    out."""
    rows, reads = np.asarray(skipped_rows).sum(axis=0), np.asarray(skips).sum(axis=0)
    out = {"skipped_rows": int(rows.sum())}
    for reason, n_rows, n_reads in zip(SKIP_REASONS, rows, reads, strict=True):
        if n_reads:
            out[f"skipped_rows/{reason}"], out[f"skip_reads/{reason}"] = int(n_rows), int(n_reads)
    return out


def skip_summary(skips: np.ndarray, labels: Sequence[str]) -> str:
    """Readable per-dataset, per-reason counts of skipped rows."""
    lines = []
    for label, counts in zip(labels, np.asarray(skips), strict=True):
        if counts.sum():
            reasons = ", ".join(f"{reason} {n}" for reason, n in zip(SKIP_REASONS, counts, strict=True) if n)
            lines.append(f"  {label}: {int(counts.sum())} skipped ({reasons})")
    return "skipped rows:\n" + "\n".join(lines) if lines else "skipped rows: none"
