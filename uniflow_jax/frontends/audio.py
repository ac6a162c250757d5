"""Audio in and out: any rate, any channels, wav/flac/ogg/mp3 (libsndfile) → 24 kHz mono float32."""

from __future__ import annotations

import pathlib

import numpy as np
import soundfile as sf

SAMPLE_RATE = 24000


def load_audio(path: str | pathlib.Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono (channel mean) float32 at ``sample_rate``; raises ``ValueError`` naming the file when unreadable."""
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise ValueError(f"{path}: cannot read audio ({error})") from None
    audio = audio.mean(axis=1)
    if rate != sample_rate:
        import librosa  # imported lazily: its first import is slow

        audio = librosa.resample(audio, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
    return np.ascontiguousarray(audio, np.float32)


def write_audio(path: str | pathlib.Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Writes mono audio (format from the suffix: .wav, .flac, ...), creating parent folders."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(audio, np.float32), sample_rate)
