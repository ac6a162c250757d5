"""Speech for the speech-quality metrics: PESQ needs speech-like input (it finds no utterance in a tone)."""

from collections.abc import Callable

import numpy as np
import pytest

from uniflow_jax.demo import speech as demo_speech
from uniflow_jax.frontends.audio import SAMPLE_RATE

RATE = 16000


@pytest.fixture(scope="session")
def speech16k() -> np.ndarray:
    """2.3 s of the demo corpus's formant-synthesised speech, at 16 kHz."""
    import librosa

    words = ["the", "big", "red", "one", "my", "small", "this", "a"]
    audio = demo_speech.NumpySpeech().say(words, 1, np.random.default_rng(0)).audio
    return librosa.resample(np.asarray(audio, np.float64), orig_sr=SAMPLE_RATE, target_sr=RATE)


@pytest.fixture(scope="session")
def noisy(speech16k) -> Callable[[float], np.ndarray]:
    """``noisy(snr_db)``: the speech plus white noise at that whole-signal SNR."""
    noise = np.random.default_rng(1).standard_normal(len(speech16k))

    def at(snr_db: float) -> np.ndarray:
        return speech16k + noise * np.sqrt(np.sum(speech16k**2) / np.sum(noise**2) / 10 ** (snr_db / 10))

    return at
