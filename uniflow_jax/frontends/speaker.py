"""Reference speech → the TTS speaker x-vector, through a speaker model the user supplies as ONNX.

The original CLI ran a WeSpeaker model on the reference speech; its ONNX export (``wespeaker/bin/export_onnx.py``:
input ``feats`` (B, T, 80), output ``embs`` (B, D)) runs here with onnxruntime (the ``speaker`` extra), so no
PyTorch is needed. The features are WeSpeaker's, computed in numpy: 16 kHz mono audio at 16-bit integer scale,
Kaldi fbank with Kaldi's defaults (25 ms Povey windows every 10 ms, no dither, DC removal, pre-emphasis 0.97,
512-point power spectrum, 80 triangular mel bands over 20 Hz-8 kHz, log), then the mean over time subtracted
(CMN). The embedding is used as the model returns it.
"""

from __future__ import annotations

import functools
import pathlib

import numpy as np

from uniflow_jax.frontends import audio

SAMPLE_RATE = 16000
NUM_MEL_BINS = 80
_FRAME, _HOP, _FFT = 400, 160, 512  # 25 ms, 10 ms at 16 kHz; the frame padded to a power of two
_LOW_HZ, _PREEMPHASIS = 20.0, 0.97


def _mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, np.float64) / 700.0)


@functools.cache
def _mel_banks() -> np.ndarray:
    """Kaldi's triangular filters, equally spaced on its mel scale: (FFT/2 + 1, 80), the Nyquist bin unused."""
    low, high = _mel(_LOW_HZ), _mel(SAMPLE_RATE / 2)
    edges = low + (high - low) / (NUM_MEL_BINS + 1) * np.arange(NUM_MEL_BINS + 2)
    mel = _mel(np.arange(_FFT // 2) * SAMPLE_RATE / _FFT)[:, None]
    left, center, right = edges[:-2], edges[1:-1], edges[2:]
    banks = np.maximum(0.0, np.minimum((mel - left) / (center - left), (right - mel) / (right - center)))
    return np.pad(banks, ((0, 1), (0, 0)))


def fbank(wave: np.ndarray) -> np.ndarray:
    """16 kHz mono float audio (±1) → mean-normalised log-mel features (frames, 80), float32, as WeSpeaker's
    ``compute_fbank`` (module docstring)."""
    wave = np.asarray(wave, np.float64) * 32768.0  # torchaudio.load(normalize=False): 16-bit integer scale
    if len(wave) < _FRAME:
        raise ValueError(f"reference speech of {len(wave) / SAMPLE_RATE:.3f} s: at least 25 ms is needed")
    count = 1 + (len(wave) - _FRAME) // _HOP
    frames = wave[np.arange(_FRAME) + _HOP * np.arange(count)[:, None]]
    frames = frames - frames.mean(axis=1, keepdims=True)
    frames = frames - _PREEMPHASIS * np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    frames = frames * np.hanning(_FRAME) ** 0.85  # Kaldi's "povey" window
    power = np.abs(np.fft.rfft(frames, n=_FFT)) ** 2
    features = np.log(np.maximum(power @ _mel_banks(), np.finfo(np.float32).eps))
    return (features - features.mean(axis=0)).astype(np.float32)


class SpeakerModel:
    """An ONNX speaker model: features (1, T, 80) → one embedding."""

    def __init__(self, path: str | pathlib.Path):
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError("--speaker_model needs onnxruntime: pip install -e '.[speaker]'") from error
        if not pathlib.Path(path).is_file():
            raise FileNotFoundError(f"no ONNX speaker model at {path}")
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inputs = self.session.get_inputs()
        shape = inputs[0].shape if len(inputs) == 1 else None
        if shape is None or len(shape) != 3 or (isinstance(shape[-1], int) and shape[-1] != NUM_MEL_BINS):
            found = ", ".join(f"{i.name} {i.shape}" for i in inputs)
            raise ValueError(f"{path}: expected one input of shape (B, T, {NUM_MEL_BINS}) (fbank), found {found}")
        self.input = inputs[0].name

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        """16 kHz mono audio → the embedding (D,) float32."""
        (embedding, *_) = self.session.run(None, {self.input: fbank(wave)[None]})
        return np.asarray(embedding, np.float32).reshape(-1)


@functools.lru_cache(maxsize=4)
def load(path: str | pathlib.Path) -> SpeakerModel:
    """The speaker model at ``path``, loaded once per process."""
    return SpeakerModel(path)


def embed(speech: str | pathlib.Path, model: str | pathlib.Path) -> np.ndarray:
    """A reference speech file (any rate, any channels) → its speaker embedding (D,) by the ONNX ``model``."""
    return load(str(model))(audio.load_audio(speech, SAMPLE_RATE))
