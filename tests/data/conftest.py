"""A small corpus in the original manifest formats (HDF5 for TTS and V2A, JSON score for SVS) and a test
config pointing at it, plus a dataset of broken audio files for the bad-input checks."""

import json
import pathlib
import pickle

import h5py
import numpy as np
import pytest
import soundfile as sf

from uniflow_jax import config_lib
from uniflow_jax.frontends import text

SR = 24000
ROWS = 12  # per dataset
VIDEO_DIM = 32


def tone(rng: np.random.Generator, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * rng.uniform(100, 1000) * t) + 0.05 * rng.standard_normal(t.size)).astype(
        np.float32
    )


def write_jsonl(path: pathlib.Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def make_dataset(root: pathlib.Path, task: str, rng: np.random.Generator, rows: int = ROWS) -> dict:
    """One dataset of ``task`` in its original format; returns the config entry plus what was written."""
    folder = root / task
    (folder / "wavs").mkdir(parents=True)
    ids = [f"{task}_{i:03d}" for i in range(rows)]
    seconds = rng.uniform(0.5, 1.5, rows)
    for key, s in zip(ids, seconds, strict=True):
        sf.write(folder / "wavs" / f"{key}.wav", tone(rng, s), SR)
    write_jsonl(folder / "audio.jsonl", [{"audio_id": k, "audio": f"wavs/{k}.wav"} for k in ids])
    entry = {"task": task, "audio": str(folder / "audio.jsonl"), "content": str(folder / "content.jsonl")}
    written: dict = {}
    if task in ("t2a", "t2m"):
        rows_ = [{"audio_id": k, "caption": f"a sound number {i} with {task}"} for i, k in enumerate(ids)]
    elif task == "tts":  # the original HDF5 layout, content column literally "audio"
        with h5py.File(folder / "phonemes.h5", "w") as f:
            for key, s in zip(ids, seconds, strict=True):
                n = int(rng.integers(3, 12))
                written[key] = (rng.integers(0, 92, n).astype(np.int32), np.full(n, s / n, np.float32))
                f[f"phoneme/{key}"], f[f"phoneme_duration/{key}"] = written[key]
                f[f"xvector/{key}"] = rng.standard_normal(256).astype(np.float32)
        rows_ = [{"audio_id": k, "audio": "phonemes.h5"} for k in ids]
    elif task == "svs":
        scores = {}
        for key, s in zip(ids, seconds, strict=True):
            n = int(rng.integers(2, 8))
            scores[key] = dict(
                phoneme=" ".join(["sh", "ao"] * (n // 2) + ["a"] * (n % 2)),
                phoneme_duration=[s / n] * n,
                midi=[60 + i for i in range(n)],
                midi_duration=[s / n] * n,
                is_slur=[0] * n,
                spk="Alto-2",
                text="x",
            )
        (folder / "score.json").write_text(json.dumps(scores))
        with open(folder / "score.pkl", "wb") as f:
            pickle.dump(scores, f)
        written = scores
        rows_ = [{"audio_id": k, "midi": "score.json"} for k in ids]
    elif task in ("se", "sr"):
        (folder / "inputs").mkdir()
        for key in ids:
            clean, _ = sf.read(folder / "wavs" / f"{key}.wav", dtype="float32")
            sf.write(folder / "inputs" / f"{key}.wav", clean + 0.1 * rng.standard_normal(clean.size), SR)
        col = "noisy_speech" if task == "se" else "low_sr_audio"
        rows_ = [{"audio_id": k, col: f"inputs/{k}.wav"} for k in ids]
    elif task == "v2a":  # the original HDF5: arrays Video_id, Video (N, frames, D)
        video = rng.standard_normal((rows, 20, VIDEO_DIM)).astype(np.float32)
        with h5py.File(folder / "video.h5", "w") as f:
            f["Video_id"] = np.array([k.encode() for k in ids])
            f["Video"] = video
        written = dict(zip(ids, video, strict=True))
        rows_ = [{"audio_id": k, "video": "video.h5"} for k in ids]
    write_jsonl(folder / "content.jsonl", rows_)
    return {"entry": entry, "ids": ids, "written": written, "folder": folder}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    data = {task: make_dataset(root, task, rng) for task in ("tts", "svs", "se", "sr", "v2a", "t2a", "t2m")}
    captions = [f"a sound number {i} with {t}" for t in ("t2a", "t2m") for i in range(ROWS)]
    data["tokenizer"] = str(text.train_tokenizer(captions * 20, root / "spiece", 200))
    data["root"] = root
    return data


def make_config(corpus: dict, tasks=("tts", "svs", "se", "sr", "v2a", "t2a", "t2m"), **data):
    config = config_lib.load_config_file(str(pathlib.Path(__file__).parents[2] / "configs" / "tiny.py"))
    config.data.train = [corpus[t]["entry"] for t in tasks]
    config.data.tokenizer = corpus["tokenizer"]
    config.data.buckets = [
        dict(latent=50, phoneme=16, score=16, video=10, text=16),
        dict(latent=100, phoneme=32, score=32, video=20, text=32),
    ]
    config.data.crop_seconds = dict(se=1.0, sr=1.0, t2m=1.0, v2a=2.0)
    config.data.read_threads = 2
    config.data.update(data)
    return config


@pytest.fixture(scope="session")
def bad_corpus(tmp_path_factory) -> dict:
    """A T2A dataset with one good row and one row per bad-audio reason."""
    folder = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(1)
    sf.write(folder / "good.wav", tone(rng, 1.0), SR)
    (folder / "unreadable.wav").write_bytes(b"RIFF this is not audio")
    sf.write(folder / "empty.wav", np.zeros(0, np.float32), SR)
    sf.write(folder / "silent.wav", np.zeros(SR, np.float32), SR)
    nan = tone(rng, 1.0)
    nan[100] = np.nan
    sf.write(folder / "nonfinite.wav", nan, SR, subtype="FLOAT")
    sf.write(folder / "too_short.wav", tone(rng, 0.1), SR)
    sf.write(folder / "too_long.wav", tone(rng, 1.0), SR)
    names = ["good", "missing", "unreadable", "empty", "silent", "nonfinite", "too_short"]
    audio = [{"audio_id": n, "audio": f"{n}.wav"} for n in names]
    content = [{"audio_id": n, "caption": f"sound {n}"} for n in names]
    # An SVS row whose score is longer than the largest bucket: skipped as too long.
    svs = [
        {
            "audio_id": "too_long",
            "midi": {
                "phoneme": " ".join(["a"] * 40),
                "phoneme_duration": [0.025] * 40,
                "midi": [60] * 40,
                "midi_duration": [0.025] * 40,
                "is_slur": [0] * 40,
                "spk": "Alto-2",
            },
        }
    ]
    return {
        "t2a": {
            "task": "t2a",
            "content": write_jsonl(folder / "content.jsonl", content),
            "audio": write_jsonl(folder / "audio.jsonl", audio),
            "name": "bad_t2a",
        },
        "svs": {
            "task": "svs",
            "content": write_jsonl(folder / "svs_content.jsonl", svs),
            "audio": write_jsonl(folder / "svs_audio.jsonl", [{"audio_id": "too_long", "audio": "too_long.wav"}]),
            "name": "bad_svs",
        },
        "folder": folder,
    }
