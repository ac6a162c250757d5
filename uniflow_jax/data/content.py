"""Per-task content readers: the original's HDF5/pickle layouts and their plain JSON/npz/npy alternatives.

Each reader takes the manifest's content value (an inline object or a path), the row's id and a path
resolver, and returns the content fields of a sample (see ``data/collate.py``). Problems raise
:class:`BadContent`, which the example loader counts or re-raises. Open HDF5 files and parsed JSON maps
are cached per process, behind a lock (h5py is not safe to enter from several threads at once).
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import pickle
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from uniflow_jax.data import batch_format
from uniflow_jax.frontends import symbols
from uniflow_jax.frontends import video as video_io

Resolve = Callable[[str], str]
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")
_H5_LOCK = threading.Lock()
_H5_FILES: dict[tuple[int, str], Any] = {}


class BadContent(ValueError):
    """A content value that cannot be turned into model inputs."""


def _h5(path: str):
    import h5py

    key = (os.getpid(), path)
    handle = _H5_FILES.get(key)
    if handle is None:
        if not os.path.isfile(path):
            raise BadContent(f"{path}: no such file")
        handle = _H5_FILES.setdefault(key, h5py.File(path, "r"))
    return handle


def _h5_read(path: str, name: str) -> np.ndarray:
    with _H5_LOCK:
        f = _h5(path)
        if name not in f:
            raise BadContent(f"{path}: no dataset {name!r}")
        return np.asarray(f[name])


@functools.lru_cache(maxsize=64)
def _json_map(path: str) -> dict:
    if not os.path.isfile(path):
        raise BadContent(f"{path}: no such file")
    return json.loads(pathlib.Path(path).read_text())


@functools.lru_cache(maxsize=16)
def _pickle_map(path: str) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f)  # only reached with allow_pickle=True: the user vouches for the file


def _entry(value: Any, key: str, resolve: Resolve, allow_pickle: bool) -> dict:
    """An inline object, or ``key``'s object in a ``.json`` (or, when allowed, ``.pkl``) id map."""
    if isinstance(value, dict):
        return value
    path = resolve(str(value))
    suffix = pathlib.Path(path).suffix.lower()
    if suffix == ".json":
        table = _json_map(path)
    elif suffix in (".pkl", ".pickle"):
        if not allow_pickle:
            raise BadContent(f"{path}: pickle files are read only with allow_pickle=True in the dataset's config")
        table = _pickle_map(path)
    else:
        raise BadContent(f"{path}: expected an inline object, a .json id map or a .pkl file")
    if key not in table:
        raise BadContent(f"{path}: no entry for id {key!r}")
    return table[key]


def _floats(value: Any, what: str) -> np.ndarray:
    array = np.asarray(value, np.float32).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise BadContent(f"{what} has non-finite values")
    return array


def tts(value: Any, key: str, resolve: Resolve, allow_pickle: bool = False) -> dict:
    """Phone ids (92-phone ARPAbet set), per-phone seconds and the 256-d speaker x-vector."""
    if isinstance(value, str) and pathlib.Path(value).suffix.lower() in (".h5", ".hdf5", ".npz"):
        path = resolve(value)
        if path.endswith(".npz"):
            if not os.path.isfile(path):
                raise BadContent(f"{path}: no such file")
            with np.load(path, allow_pickle=False) as f:
                names = [f"{field}/{key}" for field in ("phoneme", "phoneme_duration", "xvector")]
                if missing := [n for n in names if n not in f]:
                    raise BadContent(f"{path}: no array(s) {', '.join(missing)}")
                phoneme, duration, xvector = (f[n] for n in names)
        else:
            phoneme, duration, xvector = (
                _h5_read(path, f"{field}/{key}") for field in ("phoneme", "phoneme_duration", "xvector")
            )
    else:
        entry = _entry(value, key, resolve, allow_pickle)
        try:
            phoneme, duration, xvector = entry["phoneme"], entry["phoneme_duration"], entry["xvector"]
        except KeyError as error:
            raise BadContent(f"TTS content of {key!r} lacks {error}") from None
        if isinstance(xvector, str):
            xvector = np.load(resolve(xvector), allow_pickle=False)
    if isinstance(phoneme, str) or (len(phoneme) and isinstance(phoneme[0], str)):
        phoneme = _symbols(symbols.tts_phone_ids, phoneme)
    phoneme = np.asarray(phoneme, np.int32).reshape(-1)
    duration = _floats(duration, "phoneme_duration")
    if len(phoneme) != len(duration) or not len(phoneme):
        raise BadContent(f"{key}: {len(phoneme)} phones but {len(duration)} durations")
    return {"phoneme": phoneme, "duration": duration, "xvector": _floats(xvector, "xvector")}


def _symbols(encode: Callable, phones: Any) -> np.ndarray:
    try:
        return encode(phones)
    except ValueError as error:
        raise BadContent(str(error)) from None


def svs(value: Any, key: str, resolve: Resolve, allow_pickle: bool = False) -> dict:
    """The score as the original's per-phone lists (DiffSinger layout) and the singer's index."""
    entry = _entry(value, key, resolve, allow_pickle)
    try:
        phones = _symbols(symbols.svs_phone_ids, entry["phoneme"])
        lists = (
            phones,
            np.asarray(entry["midi"], np.int32).reshape(-1),
            _floats(entry["midi_duration"], "midi_duration"),
            np.asarray(entry["is_slur"], np.int32).reshape(-1),
        )
        fields = dict(zip(batch_format.SCORE_LISTS, lists, strict=True))
        fields["duration"] = _floats(entry["phoneme_duration"], "phoneme_duration")
        singer = _symbols(lambda name: symbols.singer_id(name), entry["spk"])
    except KeyError as error:
        raise BadContent(f"SVS content of {key!r} lacks {error}") from None
    lengths = {name: len(v) for name, v in fields.items()}
    if len(set(lengths.values())) != 1 or not len(phones):
        raise BadContent(f"{key}: per-phone lists of different lengths {lengths}")
    return {**fields, "singer": singer}


@functools.lru_cache(maxsize=16)
def _h5_video_rows(path: str) -> dict[str, int]:
    with _H5_LOCK:
        ids = np.asarray(_h5(path)["Video_id"])
    return {(v.decode() if isinstance(v, bytes) else str(v)): i for i, v in enumerate(ids)}


def video(value: Any, key: str, resolve: Resolve, *, frames: bool | None, image_size: int, max_seconds: float) -> dict:
    """Per-frame features (10 fps) from ``.npy`` / the original's HDF5, or CLIP pixels from a video file.
    ``frames``: which of the two the caller needs (None: whichever the file holds)."""
    path = resolve(str(value))
    suffix = pathlib.Path(path).suffix.lower()
    if not os.path.isfile(path):
        raise BadContent(f"{path}: no such file")
    if suffix in VIDEO_SUFFIXES:
        if frames is False:
            raise BadContent(
                f"{path}: a video file needs data.video_input='frames' (CLIP in the train step) or the latent cache"
            )
        try:
            pixels = video_io.clip_preprocess(video_io.read_frames(path, max_seconds=max_seconds), image_size)
        except (ValueError, OSError) as error:
            raise BadContent(f"{path}: {error}") from None
        return {batch_format.VIDEO_PIXELS: pixels}
    if frames is True:
        raise BadContent(f"{path}: data.video_input='frames' needs video files, not features")
    if suffix == ".npy":
        features = np.load(path, allow_pickle=False)
    elif suffix in (".h5", ".hdf5"):
        row = _h5_video_rows(path).get(key)
        if row is None:
            raise BadContent(f"{path}: id {key!r} not in Video_id")
        with _H5_LOCK:
            features = np.asarray(_h5(path)["Video"][row])
    else:
        raise BadContent(f"{path}: expected .npy features, the original's .h5 or a video file")
    features = np.asarray(features, np.float32)
    if features.ndim != 2 or not np.all(np.isfinite(features)):
        raise BadContent(f"{path}: video features must be finite (frames, dim), got shape {features.shape}")
    return {"video": features[: round(max_seconds * video_io.FRAME_RATE)]}


def band_limit(audio: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """The original's SR input: a random low-pass (Chebyshev, elliptic, Butterworth or boxcar FIR), cutoff
    U(2, 4) kHz, order 2..10, applied forwards and backwards (zero phase), same length and rate."""
    from scipy import signal

    kind = ("cheby", "ellip", "butter", "boxcar")[rng.integers(4)]
    cutoff = rng.uniform(2000.0, 4000.0) / (sample_rate / 2)
    order = int(rng.integers(2, 11))
    if kind == "boxcar":
        taps = signal.firwin(64 * order + 1, cutoff, window="boxcar")
        out = signal.filtfilt(taps, [1.0], audio)
    else:
        design = {
            "cheby": lambda: signal.cheby1(order, 0.05, cutoff, output="sos"),
            "ellip": lambda: signal.ellip(order, 0.05, 60, cutoff, output="sos"),
            "butter": lambda: signal.butter(order, cutoff, output="sos"),
        }[kind]
        out = signal.sosfiltfilt(design(), audio)
    return np.ascontiguousarray(out, np.float32)
