"""The demo corpus: every manifest and file of every task is valid, builds are reproducible, the CLI is quick."""

import hashlib
import json
import os
import pathlib
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import soundfile as sf

from uniflow_jax.demo import corpus as demo_corpus
from uniflow_jax.demo import specs as demo_specs
from uniflow_jax.demo import speech as demo_speech
from uniflow_jax.demo import synth as demo_synth
from uniflow_jax.demo import video as demo_video
from uniflow_jax.frontends.audio import SAMPLE_RATE, load_audio
from uniflow_jax.frontends.symbols import singer_id, svs_phone_ids
from uniflow_jax.frontends.video import read_frames

REPO = pathlib.Path(__file__).resolve().parents[2]
HOP_SECONDS = demo_synth.HOP / SAMPLE_RATE
NUM_TRAIN, NUM_VAL = 3, 2
needs_espeak = pytest.mark.skipif(not demo_speech.espeak_available(), reason="espeak-ng is not installed")


@pytest.fixture(scope="module")
def numpy_corpus(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("numpy_corpus")
    demo_corpus.build(root, seed=1, num_train=NUM_TRAIN, num_val=NUM_VAL, speech_engine="numpy")
    return root


def _rows(path: str) -> list[dict]:
    rows = [json.loads(line) for line in pathlib.Path(path).read_text().splitlines()]
    assert all(isinstance(row, dict) and row.get("audio_id") for row in rows), path
    return rows


def _audio(path: pathlib.Path) -> np.ndarray:
    info = sf.info(str(path))
    assert (info.samplerate, info.channels) == (SAMPLE_RATE, 1), path
    audio = load_audio(path)
    assert len(audio) % demo_synth.HOP == 0 and len(audio) >= SAMPLE_RATE // 2, (path, len(audio))
    assert 0.5 < np.abs(audio).max() <= 1.0 and np.sqrt(np.mean(audio**2)) > 1e-3, path
    return audio


def _check_task(task: str, folder: pathlib.Path, content: list[dict], targets: dict[str, np.ndarray]) -> None:
    """The task's content: files, HDF5 keys, score lists, videos, captions."""
    if task == "tts":
        with h5py.File(folder / "phonemes.h5", "r") as f:
            for row in content:
                key = row["audio_id"]
                assert row["audio"] == "phonemes.h5"
                phones, durations, xvector = (f[f"{group}/{key}"][()] for group in demo_corpus.TTS_GROUPS)
                assert phones.dtype == np.int32 and ((phones >= 0) & (phones < 92)).all()
                assert durations.dtype == np.float32 and (durations > 0).all() and len(durations) == len(phones)
                assert abs(durations.sum() - len(targets[key]) / SAMPLE_RATE) <= HOP_SECONDS
                assert xvector.shape == (256,) and np.isclose(np.linalg.norm(xvector), 1.0, atol=1e-5)
    elif task == "svs":
        scores = json.loads((folder / "score.json").read_text())
        for row in content:
            score = scores[row["audio_id"]]
            ids = svs_phone_ids(score["phoneme"])
            lists = [score[name] for name in ("phoneme_duration", "midi", "midi_duration", "is_slur")]
            assert all(len(values) == len(ids) for values in lists), score
            assert abs(sum(score["phoneme_duration"]) - len(targets[row["audio_id"]]) / SAMPLE_RATE) <= HOP_SECONDS
            assert set(score["is_slur"]) <= {0, 1} and all(m == 0 or 36 <= m <= 84 for m in score["midi"])
            singer_id(score["spk"])
    elif task in ("se", "sr"):
        for row in content:
            source = _audio(folder / row[{"se": "noisy_speech", "sr": "low_sr_audio"}[task]])
            assert len(source) == len(targets[row["audio_id"]])
    elif task == "v2a":
        for row in content:
            frames = read_frames(folder / row["video"])
            seconds = len(targets[row["audio_id"]]) / SAMPLE_RATE
            assert frames.shape == (round(seconds * 10), demo_video.VIDEO_SIZE, demo_video.VIDEO_SIZE, 3)
            for event in row["events"]:  # a coloured square shows at each sound's onset
                assert frames[round(event["onset"] * 10)].max() > 100
    else:
        assert all(isinstance(row["caption"], str) and len(row["caption"].split()) >= 2 for row in content)


def _check_corpus(root: pathlib.Path, engine: str) -> None:
    summary = json.loads((root / "corpus.json").read_text())
    assert summary["speech_engine"] == engine and summary["counts"] == {"train": NUM_TRAIN, "val": NUM_VAL}
    ids = {}
    for split in demo_corpus.SPLITS:
        specs = demo_specs.dataset_specs(str(root), split)
        assert sorted(spec["task"] for spec in specs) == sorted(t.short for t in demo_corpus.tasks.TASKS)
        for spec in specs:
            content, audio_rows = _rows(spec["content"]), _rows(spec["audio"])
            assert len(content) == len(audio_rows) == summary["counts"][split]
            assert [r["audio_id"] for r in content] == [r["audio_id"] for r in audio_rows]
            folder = pathlib.Path(spec["audio"]).parent
            targets = {row["audio_id"]: _audio(folder / row["audio"]) for row in audio_rows}
            _check_task(spec["task"], folder, content, targets)
            ids.setdefault(split, set()).update(targets)
    assert not ids["train"] & ids["val"]


def test_numpy_corpus(numpy_corpus):
    _check_corpus(numpy_corpus, "numpy")


@needs_espeak
def test_espeak_corpus(tmp_path):
    summary = demo_corpus.build(tmp_path, num_train=NUM_TRAIN, num_val=NUM_VAL, speech_engine="espeak")
    assert summary["tts_durations"].startswith("exact")
    _check_corpus(tmp_path, "espeak")


def _hashes(root: pathlib.Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.mark.parametrize("engine", ["numpy", pytest.param("espeak", marks=needs_espeak)])
def test_same_arguments_same_bytes(engine, numpy_corpus, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for root in (first, second):
        demo_corpus.build(root, seed=1, num_train=NUM_TRAIN, num_val=NUM_VAL, speech_engine=engine)
    assert _hashes(first) == _hashes(second)
    if engine == "numpy":
        assert _hashes(first) == _hashes(numpy_corpus)
        demo_corpus.build(
            first, seed=2, num_train=NUM_TRAIN, num_val=NUM_VAL, speech_engine=engine
        )  # replaces the corpus
        assert _hashes(first).keys() == _hashes(second).keys() and _hashes(first) != _hashes(second)


def test_refuses_a_folder_that_holds_something_else(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        demo_corpus.build(tmp_path, num_train=1, num_val=1, speech_engine="numpy")


@pytest.mark.slow
def test_cli_default_corpus_is_small(tmp_path):
    out = tmp_path / "corpus"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "uniflow_jax.demo.corpus", "--out", str(out)], check=True, env=env, cwd=REPO)
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    summary = json.loads((out / "corpus.json").read_text())
    print(f"default corpus: {seconds:.1f} s, {size / 2**20:.1f} MiB, {summary['counts']}")
    assert summary["counts"] == {"train": 64, "val": 16}
    assert size < 200 * 2**20


def test_pipeline_benchmark_command_reads_the_corpus(numpy_corpus, tmp_path):
    """``python -m uniflow_jax.data.throughput --config configs/tiny.py`` (README), shortened: figures for on-the-fly
    reading; the config comes from the command line, never from the package's location."""
    out = tmp_path / "bench.json"
    command = ["--config", "configs/tiny.py", "--corpus", numpy_corpus, "--batches", 1, "--batch_size", 2,
               "--workers", 0, "--nocached", "--json", out]  # fmt: skip
    subprocess.run([sys.executable, "-m", "uniflow_jax.data.throughput", *map(str, command)], check=True, cwd=REPO)
    figures = json.loads(out.read_text())["on_the_fly_workers_0"]
    assert figures["batches_per_s"] > 0 and figures["audio_seconds_per_s"] > 0
