"""The batch format is defined once (data/batch_format.py) and everything that builds or reads batches follows it."""

import pathlib

import numpy as np
import pytest

from uniflow_jax import config_lib, tasks
from uniflow_jax.data import batch_format, cache, collate, pipeline
from uniflow_jax.data.batch_format import FIELDS

PACKAGE = pathlib.Path(batch_format.__file__).parents[1]
AXES = {"latent", "samples", "phoneme", "score", "video", "text", "units", "instruction", None}
DIMS = {"latent": 4, "text": 6, "video": 5, "speaker": 3}
HOP = 8


def test_every_field_is_well_formed():
    for name, f in FIELDS.items():
        assert np.dtype(f.dtype) in (np.int32, np.float32), name
        assert f.kind in (*batch_format.CONTENT_KINDS, None), name
        assert f.axis in AXES, name
        assert f.form in ("raw", "cached", "pixels", "features", "any"), name
        assert f.encodes is None or f.encodes in FIELDS, name
    assert set(batch_format.SCORE_LISTS) <= set(batch_format.content_fields("score", cached=False))


def test_compound_batch_keys_live_only_in_the_batch_module_and_the_model():
    """`git grep '"score_phoneme"'` and its kin: every other module reads the key from batch_format."""
    keys = [name for name in FIELDS if "_" in name and name not in ("is_slur", "midi_duration", "text_ids")]
    owners = {PACKAGE / "data" / "batch_format.py", PACKAGE / "models" / "uniflow.py"}
    found = {
        (path.relative_to(PACKAGE).as_posix(), key)
        for path in PACKAGE.rglob("*.py")
        if path not in owners
        for key in keys
        if f'"{key}"' in path.read_text()
    }
    assert not found, found


def _cached_samples(rng) -> list[dict]:
    return [
        {
            "task": task.short,
            "instruction_index": 0,
            **batch_format.synthetic_sample(task.content, 6, 4, 0.1, DIMS, rng),
        }
        for task in tasks.TASKS
    ]


def test_collate_writes_the_fields_in_their_dtypes_and_the_cache_spec_holds_them():
    samples = _cached_samples(np.random.default_rng(0))
    batch = collate.collate(samples, hop=HOP, speaker_dim=DIMS["speaker"], video_dim=DIMS["video"], cached_dims=DIMS)
    expected = [n for kind in batch_format.CONTENT_KINDS for n in batch_format.content_fields(kind, cached=True)]
    expected += [*batch_format.target_fields(cached=True), "duration"]
    for name in expected:
        assert batch[name].dtype == np.dtype(FIELDS[name].dtype), name
        assert batch[name].shape[0] == len(samples), name
        padded = 2 if FIELDS[name].axis else 1
        assert batch[name].shape[padded:] == batch_format.tail_shape(name, DIMS), name
        if FIELDS[name].mask:
            assert batch[FIELDS[name].mask].shape == batch[name].shape[:2], name
    spec = batch_format.cache_spec(DIMS)
    assert set(expected) <= set(spec)
    for name in expected:
        padded = 1 if FIELDS[name].axis else 0
        assert spec[name][0] == FIELDS[name].dtype and spec[name][1][padded:] == batch_format.tail_shape(name, DIMS)


@pytest.mark.parametrize("cached", [False, True])
def test_a_bucket_sizes_every_padded_field_a_training_batch_holds(cached):
    bucket = pipeline.Bucket(latent=10, phoneme=11, score=12, video=13, text=14)
    sizes = bucket.sizes(HOP)
    padded = [
        name
        for kind in batch_format.CONTENT_KINDS
        for name in batch_format.content_fields(kind, cached=cached, pixels=not cached)
        if FIELDS[name].axis
    ]
    padded += [*batch_format.target_fields(cached=cached), "duration"]
    assert set(padded) <= set(sizes), set(padded) - set(sizes)
    assert sizes[batch_format.target_fields(cached=cached)[0]] == (10 if cached else 10 * HOP)


def test_the_latent_cache_writes_the_batch_format_spec():
    config = config_lib.load_config_file(str(PACKAGE.parent / "configs" / "tiny.py"))
    m = config.model
    dims = {"latent": m.vae.latent_dim, "text": m.t5.d_model, "video": m.video_dim, "speaker": m.phoneme.speaker_dim}
    assert cache.feature_spec(config) == batch_format.cache_spec(dims)
