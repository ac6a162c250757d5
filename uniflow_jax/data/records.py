"""Cached per-example arrays as a TFDS dataset in the ArrayRecord format, read back by random access for grain.

Offline preprocessing (VAE latents, T5/CLIP features, phone ids, durations, ids) runs once; training then
reads examples in any order from many threads. ArrayRecord gives cheap random access, and writing a real
TFDS dataset (``dataset_info.json``, ``features.json``, shards ``<name>-<split>.array_record-0000X-of-0000N``)
keeps the cache readable by standard tools: ``tfds.builder_from_directory(dir).as_data_source(split)``, and
``tfds.data_source(name, data_dir=...)`` when ``dir`` is ``<data_dir>/<name>/<version>``. TFDS serializes,
parses and writes metadata with numpy and protobuf alone, so TensorFlow is not needed (checked with
tensorflow-datasets 4.9.10). Numeric features use TFDS's raw-bytes encoding: exact for every dtype (the
default ``tf.train.Example`` lists would round float64 to float32 and widen ints) and fast to decode.

A feature spec maps each name to ``(dtype, shape)``, ``None`` marking a variable dimension:
``{"latent": ("float32", (None, 128)), "task": ("int32", ()), "audio_id": ("string", ())}``; at most one
dimension may vary (see ``_normalize``). Strings are scalars (Python ``str``); numeric dtypes are numpy's
bool, (u)int8-64 and float16-64.
"""

from __future__ import annotations

import itertools
import os
import pathlib
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sized

import numpy as np
import tensorflow_datasets as tfds
from array_record.python.array_record_module import ArrayRecordWriter
from tensorflow_datasets.core import naming
from tensorflow_datasets.core import splits as splits_lib
from tensorflow_datasets.core.dataset_info import DatasetIdentity

FeatureSpec = Mapping[str, tuple[str, tuple[int | None, ...]]]
Value = np.ndarray | np.generic | int | float | str

_FORMAT = "array_record"
_DEFAULT_VERSION = "1.0.0"


def _normalize(features: FeatureSpec) -> dict[str, tuple[str, tuple[int | None, ...]]]:
    """Canonical spec (dtype names, tuple shapes), so specs given with np.float32 or lists compare equal."""
    spec = {}
    for key, (dtype, shape) in features.items():
        shape = tuple(shape)
        # One variable dim, recovered by reshape(-1, ...) (a zero fixed dim would leave it undetermined): TFDS
        # 4.9.10 stores more with a shape that its numpy decoder cuts to the byte length
        # (``tensor_feature._get_value_and_shape``), so empty or tiny arrays fail to decode.
        if shape.count(None) > 1 or 0 in shape:
            raise ValueError(f"feature {key!r}: shape {shape} needs at most one None and no zero dims")
        if dtype != "string":
            dtype = np.dtype(dtype).name
            if np.dtype(dtype).kind not in "biuf":
                raise ValueError(f"feature {key!r}: unsupported dtype {dtype} (bool, ints, floats or 'string')")
        elif shape:
            raise ValueError(f"feature {key!r}: strings are scalars, got shape {shape}")
        spec[key] = (dtype, shape)
    return spec


def _tfds_features(spec: FeatureSpec) -> tfds.features.FeaturesDict:
    bytes_encoding = tfds.features.Encoding.BYTES
    return tfds.features.FeaturesDict(
        {
            key: tfds.features.Text()
            if dtype == "string"
            else tfds.features.Tensor(shape=shape, dtype=np.dtype(dtype), encoding=bytes_encoding)
            for key, (dtype, shape) in spec.items()
        }
    )


def _spec_of(features: tfds.features.FeaturesDict) -> dict[str, tuple[str, tuple[int | None, ...]]]:
    return {
        key: ("string", ()) if isinstance(f, tfds.features.Text) else (f.np_dtype.name, tuple(f.shape))
        for key, f in features.items()
    }


def _checked(index: int, example: Mapping[str, Value], spec: FeatureSpec) -> dict[str, np.ndarray | str]:
    """The example as arrays of exactly the spec's dtypes and shapes; a mismatch names example and feature."""
    if missing := spec.keys() - example.keys():
        raise ValueError(f"example {index}: missing features {sorted(missing)}")
    if extra := example.keys() - spec.keys():
        raise ValueError(f"example {index}: features {sorted(extra)} are not in the spec")
    out: dict[str, np.ndarray | str] = {}
    for key, (dtype, shape) in spec.items():
        value, where = example[key], f"example {index}, feature {key!r}"
        if dtype == "string":
            if not isinstance(value, str):
                raise ValueError(f"{where}: expected str, got {type(value).__name__}")
            out[key] = value
            continue
        if isinstance(value, np.ndarray | np.generic):
            # numpy values must already carry the dtype: a silent cast (float64 → float32) would hide bugs.
            if value.dtype != dtype:
                raise ValueError(f"{where}: dtype {value.dtype}, expected {dtype}")
            array = np.asarray(value)
        elif isinstance(value, bool | int | float) and np.can_cast(type(value), dtype, "same_kind"):
            try:
                array = np.asarray(value, dtype)
            except OverflowError as e:
                raise ValueError(f"{where}: {e}") from None
        else:
            raise ValueError(f"{where}: {type(value).__name__} value does not fit dtype {dtype}")
        if array.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, array.shape, strict=True)):
            raise ValueError(f"{where}: shape {array.shape}, expected {shape} (None: any length)")
        out[key] = array
    return out


def _identity(out: pathlib.Path, name: str | None) -> tuple[str, str]:
    """(name, version): TFDS's ``<data_dir>/<name>/<version>`` layout when ``out`` ends in a version."""
    if tfds.core.Version.is_valid(out.name):
        default, version = out.parent.name, out.name
    else:
        default, version = out.name, _DEFAULT_VERSION
    name = name or default
    if not naming.is_valid_dataset_name(name):
        raise ValueError(f"dataset name {name!r} is not a valid TFDS name (snake_case); pass name=")
    return name, version


def _write_info(out: pathlib.Path, staging: pathlib.Path, info: tfds.core.DatasetInfo) -> None:
    """Metadata via rename, ``dataset_info.json`` (the list of splits) last: readers never see a partial one."""
    meta = pathlib.Path(tempfile.mkdtemp(dir=staging))
    info.write_to_directory(meta)
    files = sorted(meta.iterdir(), key=lambda p: p.name == "dataset_info.json")
    for path in files:
        os.replace(path, out / path.name)


def _write_shards(records: Iterable[bytes], staging: pathlib.Path, shard_sizes: Iterable[int]) -> list[int]:
    """Records into ``staging/shard-0, shard-1, ...`` of the given sizes (the last may be short); their lengths."""
    records, lengths = iter(records), []
    for size in shard_sizes:
        shard = itertools.islice(records, size)
        first = next(shard, None)
        if first is None:
            break
        writer = ArrayRecordWriter(os.fspath(staging / f"shard-{len(lengths)}"), "group_size:1")
        try:
            writer.write(first)
            lengths.append(1)
            for record in shard:
                writer.write(record)
                lengths[-1] += 1
        finally:
            writer.close()
    if next(records, None) is not None:
        raise ValueError(f"more examples than their len() ({sum(lengths)})")
    return lengths


def write_split(
    examples: Iterable[Mapping[str, Value]],
    out_dir: str | os.PathLike,
    *,
    split: str,
    features: FeatureSpec,
    name: str | None = None,
    num_shards: int | None = None,
    examples_per_shard: int = 1024,
) -> int:
    """Write (or replace) one split of the dataset in ``out_dir``, in input order; returns its example count.

    Shards hold ``examples_per_shard`` consecutive examples, or, with ``num_shards``, the examples of a
    sized collection split into that many near-equal consecutive runs. Other splits in ``out_dir`` must have
    the same spec and are kept. ``name`` defaults to the directory's (see ``_identity``).

    Shards are written under temporary names first; only then is an old version of the split unlisted from
    ``dataset_info.json`` and deleted, the new shards renamed into place and the split listed. An invalid
    example leaves the directory as it was; an interrupted run leaves no split that looks complete (at worst
    the split is missing). One writer per directory at a time.
    """
    if not re.fullmatch(r"\w+", split):
        raise ValueError(f"split name {split!r}: use letters, digits and underscores")
    if min(num_shards or 1, examples_per_shard) < 1:
        raise ValueError(f"num_shards={num_shards}, examples_per_shard={examples_per_shard}: must be positive")
    spec = _normalize(features)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for leftover in out.glob(f".{split}-*"):  # staging directory of an interrupted run
        shutil.rmtree(leftover)
    kept: list[splits_lib.SplitInfo] = []
    if (out / "dataset_info.json").exists():
        existing = tfds.builder_from_directory(os.fspath(out)).info
        if name not in (None, existing.name):
            raise ValueError(f"{out} holds dataset {existing.name!r}, not {name!r}")
        if _spec_of(existing.features) != spec:
            raise ValueError(f"features {spec} differ from those of {out}: {_spec_of(existing.features)}")
        name = existing.name
        kept = [s for s in existing.splits.values() if s.name != split]
    name, version = _identity(out, name)
    tfds_features = _tfds_features(spec)
    info = tfds.core.DatasetInfo(
        builder=DatasetIdentity(
            name=name, version=tfds.core.Version(version), data_dir=os.fspath(out), module_name=__name__
        ),
        features=tfds_features,
    )
    info.set_file_format(_FORMAT)
    if num_shards is None:
        shard_sizes = itertools.repeat(examples_per_shard)
    elif isinstance(examples, Sized):
        count = max(1, min(num_shards, len(examples)))
        shard_sizes = [(k + 1) * len(examples) // count - k * len(examples) // count for k in range(count)]
    else:
        raise TypeError("num_shards needs a sized collection of examples; use examples_per_shard")

    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{split}-", dir=out))
    try:
        records = (tfds_features.serialize_example(_checked(i, example, spec)) for i, example in enumerate(examples))
        shard_lengths = _write_shards(records, staging, shard_sizes)
        if not shard_lengths:
            raise ValueError(f"split {split!r}: no examples")

        # Swap: unlist the old version of the split before deleting its shards (and strays of an interrupted
        # run), move the new shards in, then list it.
        info.set_splits(splits_lib.SplitDict(kept))
        _write_info(out, staging, info)
        for stale in out.glob(f"{name}-{split}.{_FORMAT}-*"):
            stale.unlink()
        template = naming.ShardedFileTemplate(data_dir=out, dataset_name=name, split=split, filetype_suffix=_FORMAT)
        num_bytes = 0
        for k in range(len(shard_lengths)):
            shard = staging / f"shard-{k}"
            num_bytes += shard.stat().st_size
            os.replace(shard, template.sharded_filepath(shard_index=k, num_shards=len(shard_lengths)))
        new = splits_lib.SplitInfo(
            name=split, shard_lengths=shard_lengths, num_bytes=num_bytes, filename_template=template
        )
        info.set_splits(splits_lib.SplitDict([*kept, new]))
        _write_info(out, staging, info)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sum(shard_lengths)


class RecordSource:
    """One split as a grain random-access source: ``source[i]`` is a dict of numpy arrays and ``str``.

    Thread-safe (ArrayRecord readers are, decoding keeps no state) and picklable by directory and split, so
    grain's reader threads and spawned worker processes each reopen it. Arrays come back bit-exact with their
    written dtype and shape, as read-only views of the record bytes (copy before writing in place).
    """

    def __init__(self, out_dir: str | os.PathLike, split: str):
        self._out_dir, self._split = os.fspath(out_dir), split
        builder = tfds.builder_from_directory(self._out_dir)
        self._source = builder.as_data_source(split)
        self.features = _spec_of(builder.info.features)
        self._strings = [key for key, (dtype, _) in self.features.items() if dtype == "string"]

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict[str, np.ndarray | str]:
        example = self._source[index]
        for key in self._strings:
            example[key] = example[key].decode()
        return example

    def __getstate__(self) -> dict[str, str]:
        return {"out_dir": self._out_dir, "split": self._split}

    def __setstate__(self, state: dict[str, str]) -> None:
        self.__init__(**state)

    def __repr__(self) -> str:
        return f"RecordSource({self._out_dir!r}, split={self._split!r}, len={len(self)})"
