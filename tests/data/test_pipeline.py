"""The grain pipeline: original formats for every task, mixing, buckets, resume, host shards, bad input."""

import collections
import itertools
import json

import jax
import numpy as np
import pytest
import soundfile as sf
from conftest import ROWS, make_config

from uniflow_jax import parallel, tasks
from uniflow_jax.data import content, pipeline
from uniflow_jax.data.loader import SKIP_REASONS, BadExample, ExampleLoader
from uniflow_jax.data.manifest import DatasetSpec, ManifestError, ManifestSource

ALL = ("tts", "svs", "se", "sr", "v2a", "t2a", "t2m")


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def assert_batches_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_every_task_loads_in_its_original_format(corpus):
    config = make_config(corpus)
    sources = pipeline.open_datasets(config.data.train)
    loader = ExampleLoader(sources, pipeline.load_options(config))
    rng = np.random.default_rng(0)
    for i, source in enumerate(sources):
        task, data = source.spec.task, corpus[source.spec.task]
        assert len(source) == ROWS
        for row_index in (0, ROWS - 1):
            row = source[row_index]
            sample = loader((i, row), rng)
            assert "skip" not in sample, sample
            assert sample["task"] == task and sample["id"] == data["ids"][row_index]
            assert len(sample["waveform"]) % 480 == 0 and len(sample["waveform"]) > 0
            if task == "tts":
                phoneme, duration = data["written"][row["id"]]
                np.testing.assert_array_equal(sample["phoneme"], phoneme)
                np.testing.assert_allclose(sample["duration"], duration)
                assert sample["xvector"].shape == (256,)
            elif task == "svs":
                score = data["written"][row["id"]]
                np.testing.assert_array_equal(sample["midi"], score["midi"])
                assert len(sample["score_phoneme"]) == len(score["midi"]) and sample["singer"] >= 0
            elif task == "v2a":
                np.testing.assert_array_equal(sample["video"], data["written"][row["id"]])
            elif task in ("se", "sr"):
                assert sample["audio"].shape == sample["waveform"].shape
                assert len(sample["waveform"]) <= 24000  # the test config's 1 s crop
            else:
                assert sample["text_ids"][-1] == 1  # EOS
            assert 0 <= sample["instruction_index"] < 10


def test_batches_have_bucket_shapes_and_bounded_programs(corpus):
    config = make_config(corpus)
    it = iter(pipeline.train_dataset(config, 8))
    shapes = set()
    for batch in take(it, 12):
        assert batch["waveform"].shape[1] in (50 * 480, 100 * 480)
        frames = batch["waveform"].shape[1] // 480
        assert batch["audio"].shape[1] == batch["waveform"].shape[1]
        assert batch["phoneme"].shape[1] == {50: 16, 100: 32}[frames]
        assert batch["instruction_id"].shape == (8,)
        np.testing.assert_array_equal(batch["instruction_id"] // 10, batch["task"])
        assert batch["duration"].shape[1] >= frames
        assert np.all(batch["waveform_lengths"] > 0) and np.all(batch["waveform_lengths"] % 480 == 0)
        shapes.add(tuple((k, v.shape) for k, v in sorted(batch.items()) if k not in pipeline.HOST_KEYS))
    assert len(shapes) <= len(config.data.buckets)


def test_mixture_matches_task_weights(corpus):
    config = make_config(corpus, crop_seconds=dict(se=0.5, sr=0.5, t2m=0.5, v2a=0.5))
    it = iter(pipeline.train_dataset(config, 50))
    counts = collections.Counter()
    for batch in take(it, 100):
        counts.update(batch["task"].tolist())
    weights = pipeline.TASK_WEIGHT_PRESETS["time_align_balanced"]
    total = sum(weights.values())
    assert sum(counts.values()) == 5000
    for task, weight in weights.items():
        assert abs(counts[tasks.index(task)] / 5000 - weight / total) < 0.02, (task, counts)


def test_custom_weights_and_unknown_preset(corpus):
    config = make_config(corpus, tasks=("t2a", "tts"), task_weights="t2a:3, tts:1")
    batch = next(iter(pipeline.train_dataset(config, 40)))
    assert (batch["task"] == tasks.index("t2a")).sum() == 30
    with pytest.raises(ValueError, match="unknown task weights 'balanced'"):
        pipeline.task_weights("balanced", ["tts"])
    with pytest.raises(ValueError, match="tasks svs have data but no positive weight"):
        pipeline.task_weights({"tts": 1}, ["tts", "svs"])


def test_deterministic_and_resumable(corpus):
    config = make_config(corpus)
    dataset = pipeline.train_dataset(config, 4)
    it = iter(dataset)
    take(it, 3)
    state = it.get_state()
    expected = take(it, 4)
    resumed = iter(pipeline.train_dataset(config, 4))
    resumed.set_state(state)
    for a, b in zip(expected, take(resumed, 4), strict=True):
        assert_batches_equal(a, b)
    fresh = take(iter(dataset), 7)[3:]
    for a, b in zip(expected, fresh, strict=True):
        assert_batches_equal(a, b)
    config.seed = 7
    other = take(iter(pipeline.train_dataset(config, 4)), 7)[3:]
    assert any(not np.array_equal(a["id"], b["id"]) for a, b in zip(expected, other, strict=True))


def test_worker_processes_resume_exactly(corpus):
    from absl import flags

    flags.FLAGS.mark_as_parsed()  # grain's spawned workers read absl flags
    config = make_config(corpus, tasks=("t2a", "tts", "se"), worker_count=2)
    it = iter(pipeline.train_dataset(config, 4))
    take(it, 2)
    state = it.get_state()
    expected = take(it, 3)
    resumed = iter(pipeline.train_dataset(config, 4))
    resumed.set_state(state)
    for a, b in zip(expected, take(resumed, 3), strict=True):
        assert_batches_equal(a, b)


def test_hosts_keep_complementary_rows_of_the_same_global_batches(corpus):
    config = make_config(corpus)
    whole = take(iter(pipeline.train_dataset(config, 8)), 3)
    halves = [take(iter(pipeline.train_dataset(config, 8, rows=rows)), 3) for rows in ([0, 1, 2, 3], [4, 5, 6, 7])]
    for full, first, second in zip(whole, *halves, strict=True):
        assert list(first["id"]) + list(second["id"]) == list(full["id"])
        # Every host pads to the bucket of the whole global batch, so the shapes agree.
        assert first["waveform"].shape[1:] == second["waveform"].shape[1:] == full["waveform"].shape[1:]
        np.testing.assert_array_equal(first["skips"], full["skips"])


def test_host_rows_follow_the_batch_sharding():
    mesh = parallel.make_mesh((2, 2, 2))
    assert list(pipeline.host_rows(mesh, 16)) == list(range(16))  # one process holds every row


def test_global_batch_is_sharded_over_the_mesh(corpus):
    config = make_config(corpus)
    batch = next(iter(pipeline.train_dataset(config, 8)))
    mesh = parallel.make_mesh((2, 2, 2))
    arrays = pipeline.to_global(batch, mesh)
    assert set(arrays) == set(batch) - set(pipeline.HOST_KEYS)
    for key, array in arrays.items():
        assert array.sharding.spec[0] == ("fsdp", "data"), key
        np.testing.assert_array_equal(np.asarray(array), batch[key])
    assert len(arrays["waveform"].addressable_shards) == jax.device_count()


def test_bad_audio_is_skipped_and_counted(bad_corpus, corpus):
    config = make_config(corpus, tasks=("t2a",))
    config.data.train = [bad_corpus["t2a"], bad_corpus["svs"]]
    config.data.task_weights = "uniform"
    sources = pipeline.open_datasets(config.data.train)
    it = iter(pipeline.train_dataset(config, 2, sources=sources))
    batch = take(it, 3)[-1]
    assert set(batch["id"]) == {"good"}
    # Six good rows = six passes over the T2A rows (reshuffled each pass): every bad row counted once per
    # pass, except those after the last good row; the over-long score is counted at every draw.
    counts = dict(zip(SKIP_REASONS, batch["skips"][0].tolist(), strict=True))
    for reason in ("missing", "unreadable", "empty", "silent", "nonfinite", "too_short"):
        assert counts.pop(reason) in (5, 6), reason
    assert set(counts.values()) == {0}
    assert batch["skips"][1].tolist() == [0] * 6 + [batch["skips"][1, 6], 0] and batch["skips"][1, 6] > 5
    summary = pipeline.skip_summary(batch["skips"], [s.spec.label for s in sources])
    assert "bad_t2a: " in summary and "nonfinite" in summary and "bad_svs: " in summary

    config.data.on_bad_input = "raise"
    it = iter(pipeline.train_dataset(config, 2, sources=sources[:1]))
    reasons = "missing|unreadable|empty|silent|nonfinite|too_short"
    with pytest.raises(BadExample, match=rf"^({reasons}): .*content.jsonl:\d+ "):
        take(it, 3)


def test_malformed_manifests_fail_with_file_and_line(tmp_path, corpus):
    audio = tmp_path / "audio.jsonl"
    audio.write_text('{"audio_id": "a", "audio": "a.wav"}\n{"audio_id": "b", "audio": "b.wav"}\n')
    cases = {
        '{"audio_id": "a", "caption": "x"}\n{"audio_id": "b" "caption": "y"}\n': r"content.jsonl:2: not valid JSON",
        '{"audio_id": "a"}\n': r"content.jsonl:1: missing field\(s\) caption",
        "[1, 2]\n": r"content.jsonl:1: expected a JSON object",
        '\n{"audio_id": "c", "caption": "x"}\n': r"content.jsonl:2: id 'c' has no row in .*audio.jsonl",
    }
    for text, message in cases.items():
        (tmp_path / "content.jsonl").write_text(text)
        spec = DatasetSpec(task="t2a", content=str(tmp_path / "content.jsonl"), audio=str(audio))
        with pytest.raises(ManifestError, match=message):
            ManifestSource(spec)
    with pytest.raises(ManifestError, match="no such manifest file"):
        ManifestSource(DatasetSpec(task="t2a", content=str(tmp_path / "nope.jsonl"), audio=str(audio)))
    with pytest.raises(ManifestError, match="unknown field"):
        DatasetSpec.from_config({"task": "t2a", "content": "c", "audio": "a", "captions": "x"})
    with pytest.raises(KeyError, match="unknown task"):
        DatasetSpec(task="asr", content="c", audio="a")


def test_alternative_content_formats(tmp_path, corpus):
    folder = corpus["svs"]["folder"]
    key = corpus["svs"]["ids"][0]
    via_json = content.svs("score.json", key, lambda p: str(folder / p))
    with pytest.raises(content.BadContent, match="allow_pickle=True"):
        content.svs("score.pkl", key, lambda p: str(folder / p))
    via_pickle = content.svs("score.pkl", key, lambda p: str(folder / p), allow_pickle=True)
    for name in via_json:
        np.testing.assert_array_equal(via_json[name], via_pickle[name])
    np.save(tmp_path / "x.npy", np.ones(256, np.float32))
    inline = {"phoneme": "HH AH0 L OW1", "phoneme_duration": [0.1] * 4, "xvector": "x.npy"}
    sample = content.tts(inline, "k", lambda p: str(tmp_path / p))
    assert sample["phoneme"].shape == (4,) and sample["xvector"].sum() == 256
    np.savez(tmp_path / "t.npz", **{"phoneme/k": [1, 2], "phoneme_duration/k": [0.1, 0.2], "xvector/k": np.zeros(4)})
    assert content.tts("t.npz", "k", lambda p: str(tmp_path / p))["phoneme"].tolist() == [1, 2]
    with pytest.raises(content.BadContent, match="unknown ARPAbet phone: XX"):
        content.tts({**inline, "phoneme": "XX AH0 L OW1"}, "k", lambda p: str(tmp_path / p))
    np.save(tmp_path / "v.npy", np.ones((30, 8), np.float32))
    video = content.video("v.npy", "k", lambda p: str(tmp_path / p), frames=False, image_size=32, max_seconds=2.0)
    assert video["video"].shape == (20, 8)


def test_band_limiting_removes_the_high_band():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(24000).astype(np.float32)
    for seed in range(8):
        low = content.band_limit(noise, np.random.default_rng(seed), 24000)
        spectrum = np.abs(np.fft.rfft(low)) ** 2
        freqs = np.fft.rfftfreq(len(low), 1 / 24000)
        assert low.shape == noise.shape and low.dtype == np.float32
        assert spectrum[freqs > 6000].sum() < 1e-2 * spectrum[freqs < 2000].sum(), seed


def test_sr_without_content_is_band_limited_on_the_fly(corpus):
    entry = {k: v for k, v in corpus["sr"]["entry"].items() if k != "content"}
    config = make_config(corpus, tasks=("sr",))
    config.data.train = [entry]
    batch = next(iter(pipeline.train_dataset(config, 4)))
    assert not np.allclose(batch["audio"], batch["waveform"])
    assert list(itertools.chain(batch["task"])) == [tasks.index("sr")] * 4


def _t2a_dataset(folder, names_and_files: dict, extra_content: tuple = ()) -> dict:
    audio = [{"audio_id": n, "audio": f} for n, f in names_and_files.items()]
    content_rows = [{"audio_id": n, "caption": f"sound {n}"} for n in names_and_files] + list(extra_content)
    for name, rows in (("audio", audio), ("content", content_rows)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"task": "t2a", "content": str(folder / "content.jsonl"), "audio": str(folder / "audio.jsonl"),
            "name": folder.name}  # fmt: skip


def test_skips_are_counted_per_reason_as_distinct_rows_and_as_reads(tmp_path, corpus):
    """Every kind of bad file, including a folder given as audio (unreadable, not missing), NaN in a file that
    needs resampling, and a file longer than data.max_file_seconds, and the row-level manifest problems (an id
    without an audio row, a blank caption): each is skipped and counted as one distinct row however often the
    reader meets it again, or, with data.on_bad_input = "raise", the manifest problems refuse the dataset."""
    rng = np.random.default_rng(2)
    sf.write(tmp_path / "good.wav", 0.3 * np.sin(np.arange(24000) * 0.05).astype(np.float32), 24000)
    nan = (0.3 * np.sin(np.arange(16000) * 0.05)).astype(np.float32)
    nan[500] = np.nan
    sf.write(tmp_path / "nan16k.wav", nan, 16000, subtype="FLOAT")
    sf.write(tmp_path / "long.wav", rng.uniform(-0.3, 0.3, 24000 * 4).astype(np.float32), 24000)
    (tmp_path / "a_folder.wav").mkdir()
    files = {"good": "good.wav", "folder": "a_folder.wav", "nan": "nan16k.wav", "long": "long.wav",
             "missing": "nowhere.wav"}  # fmt: skip
    extra = ({"audio_id": "no_audio_row", "caption": "a sound"}, {"audio_id": "good", "caption": "  "})
    config = make_config(corpus, tasks=("t2a",), max_file_seconds=3.0)
    config.data.train = [_t2a_dataset(tmp_path, files, extra)]
    batch = take(iter(pipeline.train_dataset(config, 2)), 4)[-1]
    reads = dict(zip(SKIP_REASONS, batch["skips"][0].tolist(), strict=True))
    rows = dict(zip(SKIP_REASONS, batch["skipped_rows"][0].tolist(), strict=True))
    expected = {"unreadable": 1, "nonfinite": 1, "too_long": 1, "missing": 2, "bad_content": 1}
    assert rows == {**dict.fromkeys(SKIP_REASONS, 0), **expected}
    assert all(reads[r] >= 3 for r in expected)  # met again on every pass
    logged = pipeline.skip_scalars(batch["skips"], batch["skipped_rows"])
    assert logged["skipped_rows"] == 6 and logged["skipped_rows/unreadable"] == 1
    assert logged["skip_reads/missing"] == reads["missing"] and "skipped_rows/silent" not in logged
    config.data.on_bad_input = "raise"
    with pytest.raises(ManifestError, match=r"(?s)2 bad manifest line.*no_audio_row' has no row.*blank caption"):
        pipeline.train_dataset(config, 2)


def test_a_crop_of_a_long_file_decodes_only_its_segment(tmp_path, corpus, monkeypatch):
    """A 3-minute 44.1 kHz stereo FLAC in a T2A manifest: the loader decodes about one crop's worth of frames
    (the frames read are counted), and the segment equals the same window of the whole file resampled."""
    import soundfile

    from uniflow_jax.data import loader
    from uniflow_jax.frontends.audio import load_audio

    seconds, rate = 180, 44100
    t = np.arange(seconds * rate) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.25 * t)) / 1.5).astype(np.float32)
    sf.write(tmp_path / "long.flac", np.stack([tone, 0.5 * tone], axis=1), rate)
    options = pipeline.load_options(make_config(corpus, tasks=("t2a",)))
    read = []
    real_read = soundfile.read
    spy = lambda *a, **k: read.append(k.get("stop", 0) - k.get("start", 0)) or real_read(*a, **k)  # noqa: E731
    monkeypatch.setattr(loader.sf, "read", spy)
    file = loader.open_checked(str(tmp_path / "long.flac"), options)
    start, length = 24000 * 61 + 7, 24000 * 2
    segment = loader.read_segment(file, start, length, options)
    assert len(segment) == length and read == [read[0]] and read[0] < 2.2 * rate  # 2 s + margins, not 180 s
    monkeypatch.undo()
    whole = load_audio(tmp_path / "long.flac")
    np.testing.assert_allclose(segment, whole[start : start + length], atol=1e-4)
