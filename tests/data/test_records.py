"""ArrayRecord cache: exact round trips, grain and TFDS readers, atomic split replacement, spec errors."""

import json
import pickle

import grain
import numpy as np
import pytest
import tensorflow_datasets as tfds

from uniflow_jax.data import records

SPEC = {
    "latent": ("float32", (None, 8)),
    "clip": ("float32", (None, 4)),
    "phone": ("int32", (None,)),
    "duration": ("float32", (None,)),
    "task": ("int32", ()),
    "weight": ("float64", ()),
    "mask": ("bool", (None,)),
    "audio_id": ("string", ()),
    "dataset": ("string", ()),
}


def make_examples(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        length = i * 7 % 6  # includes empty arrays
        out.append(
            {
                "latent": rng.standard_normal((length, 8)).astype(np.float32),
                "clip": rng.standard_normal((i % 3, 4)).astype(np.float32),
                "phone": rng.integers(-(2**31), 2**31 - 1, length + 1, dtype=np.int32),
                "duration": np.float32([np.nan, np.inf, -0.0, 1e-45])[: i % 5],
                "task": i if i % 2 else np.int32(-i),  # Python ints are accepted for numeric features
                "weight": np.pi * i,
                "mask": rng.random(length) < 0.5,
                "audio_id": f"clip_{i}_ü",
                "dataset": "audiocaps",
            }
        )
    return out


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, str):
            assert type(got[key]) is str and got[key] == value, key
        else:
            value = np.asarray(value, SPEC[key][0])
            assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
            assert got[key].tobytes() == value.tobytes(), key


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A TFDS-layout directory (<data_dir>/<name>/<version>) with a 4-shard train and a 2-shard valid split."""
    out = tmp_path_factory.mktemp("cache") / "toy_ds" / "1.0.0"
    train, valid = make_examples(10), make_examples(5, seed=1)
    assert records.write_split(iter(train), out, split="train", features=SPEC, examples_per_shard=3) == 10
    assert records.write_split(valid, out, split="valid", features=SPEC, num_shards=2) == 5
    return out, train, valid


def test_round_trip_random_order(dataset):
    out, train, valid = dataset
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "dataset_info.json",
        "features.json",
        *(f"toy_ds-train.array_record-0000{k}-of-00004" for k in range(4)),
        *(f"toy_ds-valid.array_record-0000{k}-of-00002" for k in range(2)),
    ]
    src = records.RecordSource(out, "train")
    assert len(src) == 10 and src.features == SPEC
    for i in np.random.default_rng(0).permutation(10):
        assert_same(src[int(i)], train[i])
    valid_src = records.RecordSource(out, "valid")
    assert [valid_src[i]["audio_id"] for i in range(len(valid_src))] == [e["audio_id"] for e in valid]


def test_pickled_source_and_grain_threads(dataset):
    out, train, _ = dataset
    src = pickle.loads(pickle.dumps(records.RecordSource(out, "train")))
    assert_same(src[7], train[7])
    ds = grain.MapDataset.source(src).to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=4))
    got = list(ds)
    assert len(got) == 10
    for g, want in zip(got, train, strict=True):
        assert_same(g, want)


def test_tfds_readers(dataset):
    out, train, valid = dataset
    src = tfds.builder_from_directory(out).as_data_source("train")
    assert len(src) == 10 and src[3]["audio_id"] == train[3]["audio_id"].encode()
    by_name = tfds.data_source("toy_ds", data_dir=out.parents[1], split="valid")
    np.testing.assert_array_equal(by_name[4]["latent"], valid[4]["latent"])


def test_num_shards_and_replacing_a_split(tmp_path):
    examples = make_examples(10)
    records.write_split(examples, tmp_path / "my_cache", split="train", features=SPEC, num_shards=3)
    info = json.loads((tmp_path / "my_cache" / "dataset_info.json").read_text())
    assert info["name"] == "my_cache" and info["splits"][0]["shardLengths"] == ["3", "3", "4"]
    # Rewriting a split replaces it: fewer shards, no stale files.
    records.write_split(examples[:2], tmp_path / "my_cache", split="train", features=SPEC)
    assert sorted(p.name for p in (tmp_path / "my_cache").glob("*.array_record-*")) == [
        "my_cache-train.array_record-00000-of-00001"
    ]
    assert_same(records.RecordSource(tmp_path / "my_cache", "train")[1], examples[1])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"latent": np.zeros((2, 8), np.float64)}, "example 3, feature 'latent': dtype float64, expected float32"),
        ({"latent": np.zeros((2, 7), np.float32)}, r"example 3, feature 'latent': shape \(2, 7\), expected"),
        ({"task": 1.5}, "example 3, feature 'task': float value does not fit dtype int32"),
        ({"task": 2**40}, "example 3, feature 'task': Python integer 1099511627776 out of bounds"),
        ({"audio_id": b"x"}, "example 3, feature 'audio_id': expected str, got bytes"),
        ({"extra": 1}, r"example 3: features \['extra'\] are not in the spec"),
    ],
)
def test_spec_violation_leaves_the_dataset_untouched(tmp_path, change, message):
    good = make_examples(5)
    records.write_split(good, tmp_path, split="train", features=SPEC, name="toy")
    before = sorted(p.name for p in tmp_path.iterdir())
    bad = [*good[:3], {**good[3], **change}]
    (tmp_path / ".train-interrupted").mkdir()  # an interrupted run's staging directory is cleared
    with pytest.raises(ValueError, match=message):
        records.write_split(bad, tmp_path, split="train", features=SPEC, examples_per_shard=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no new shards, no staging directory
    assert len(records.RecordSource(tmp_path, "train")) == 5


def test_spec_and_dataset_mismatches(tmp_path):
    with pytest.raises(ValueError, match="strings are scalars"):
        records.write_split([], tmp_path, split="train", features={"ids": ("string", (None,))}, name="toy")
    with pytest.raises(ValueError, match="at most one None"):
        records.write_split([], tmp_path, split="train", features={"x": ("uint8", (None, None))}, name="toy")
    records.write_split(make_examples(1), tmp_path, split="train", features=SPEC, name="toy")
    with pytest.raises(ValueError, match="differ from those of"):
        records.write_split([{"task": 1}], tmp_path, split="test", features={"task": ("int32", ())})
    with pytest.raises(ValueError, match="holds dataset 'toy', not 'other'"):
        records.write_split(make_examples(1), tmp_path, split="test", features=SPEC, name="other")
