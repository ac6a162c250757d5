"""Where the training loop's figures go: a JSON-lines file, TensorBoard event files, and a console line.

``metrics.jsonl`` is the record that scripts and tests read (one self-contained JSON object per logging step,
flushed at once, so a killed run keeps every line it logged); TensorBoard (written with tensorboardX, no
TensorFlow needed) is for looking at curves, audio and spectrograms. Only the primary process writes: the others
build a disabled writer whose methods do nothing, so the loop needs no ``if process_index == 0`` around each call.
"""

from __future__ import annotations

import json
import math
import numbers
import pathlib
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import IO, Any

import numpy as np

# A small viridis: 9 anchors (RGB, 0..1 positions) interpolated linearly — enough for a spectrogram, and it keeps
# matplotlib out of the dependencies.
_VIRIDIS = np.array(
    [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ],
    dtype=np.float64,
)


def colormap(values: np.ndarray) -> np.ndarray:
    """Maps values in [0, 1] (clipped) to viridis RGB, uint8, shape ``values.shape + (3,)``."""
    v = np.clip(np.nan_to_num(np.asarray(values, np.float64)), 0.0, 1.0)
    anchors = np.linspace(0.0, 1.0, len(_VIRIDIS))
    rgb = np.stack([np.interp(v, anchors, _VIRIDIS[:, c]) for c in range(3)], axis=-1)
    return np.round(rgb).astype(np.uint8)


def log_mel_image(
    wave: np.ndarray, sample_rate: int, *, n_mels: int = 80, n_fft: int = 1024, hop_length: int = 256
) -> np.ndarray:
    """A log-mel spectrogram as an image: uint8 (n_mels, frames, 3), low frequencies at the bottom.

    Power in dB relative to the loudest bin, clipped at −80 dB and mapped to [0, 1] before colouring, so every
    image uses the full colour range whatever the level of the audio.
    """
    import librosa  # imported here: the writer itself is usable without paying librosa's import time

    y = np.asarray(wave, np.float32)
    if y.ndim == 2:  # (T, C) → mono
        y = y.mean(axis=-1)
    y = y.reshape(-1)
    n_fft = min(n_fft, max(16, len(y)))
    mel = librosa.feature.melspectrogram(
        y=y, sr=sample_rate, n_fft=n_fft, hop_length=min(hop_length, n_fft), n_mels=n_mels
    )
    db = librosa.power_to_db(mel, ref=np.max(mel) if np.max(mel) > 0 else 1.0, top_db=80.0)
    return colormap((db + 80.0) / 80.0)[::-1]


def _json_number(value: Any) -> int | float | None:
    """A JSON-safe number: ints stay ints, non-finite floats become null (strict JSON has no NaN/Infinity)."""
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


class MetricWriter:
    """Writes scalars to ``<workdir>/metrics.jsonl`` and TensorBoard (``<workdir>/tensorboard/``), and audio,
    spectrogram images and text to TensorBoard. With ``enabled=False`` (non-primary processes) it touches nothing.
    """

    def __init__(self, workdir: str | pathlib.Path, *, enabled: bool = True):
        self.workdir = pathlib.Path(workdir)
        self.enabled = enabled
        self._jsonl: IO[str] | None = None
        self._tb: Any = None
        if enabled:
            from tensorboardX import SummaryWriter

            self.workdir.mkdir(parents=True, exist_ok=True)
            # Append: a resumed run continues the same file (steps may repeat after a restore; readers keep the
            # last line per step).
            self._jsonl = open(self.workdir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
            self._tb = SummaryWriter(logdir=str(self.workdir / "tensorboard"))

    @property
    def jsonl_path(self) -> pathlib.Path:
        return self.workdir / "metrics.jsonl"

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """One JSON line ``{"step": step, **values}`` (non-finite → null) and one TB scalar per value.

        Non-finite values are left out of TensorBoard (an absent per-task loss is NaN by convention; TB would
        draw it as a spike or a gap anyway); the JSON line keeps the key with null.
        """
        if not self.enabled:
            return
        step = int(step)
        record = {"step": step, **{str(k): _json_number(v) for k, v in values.items()}}
        assert self._jsonl is not None
        self._jsonl.write(json.dumps(record, allow_nan=False) + "\n")
        self._jsonl.flush()
        for key, value in values.items():
            value = float(value)
            if math.isfinite(value):
                self._tb.add_scalar(str(key), value, step)

    def audio(self, step: int, tag: str, wave: np.ndarray, sample_rate: int) -> None:
        """A clip in TB's audio tab: ``wave`` (T,) or (T, C≤2), float in [−1, 1] (clipped)."""
        if not self.enabled:
            return
        wave = np.clip(np.nan_to_num(np.asarray(wave, np.float32)), -1.0, 1.0)
        self._tb.add_audio(tag, wave, int(step), sample_rate=int(sample_rate))

    def spectrogram(self, step: int, tag: str, wave: np.ndarray, sample_rate: int) -> None:
        """The clip's 80-band log-mel spectrogram as a TB image (see :func:`log_mel_image`)."""
        if not self.enabled:
            return
        self._tb.add_image(tag, log_mel_image(wave, sample_rate), int(step), dataformats="HWC")

    def text(self, step: int, tag: str, text: str) -> None:
        """Free text in TB's text tab (e.g. the prompt of a sampled clip, the run's config)."""
        if not self.enabled:
            return
        self._tb.add_text(tag, text, int(step))

    def flush(self) -> None:
        if not self.enabled:
            return
        if self._jsonl is not None:
            self._jsonl.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        """Flushes and closes both sinks; idempotent."""
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        self.enabled = False

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _format_value(key: str, value: float) -> str:
    """One ``name value`` item of the console line; a few keys have their own units."""
    if key == "steps_per_s":
        return f"{value:.1f} steps/s"
    if key == "mfu":
        return f"MFU {100 * value:.1f}%"
    if key == "lr":
        return f"lr {value:.1e}"
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return f"{key} {int(value)}"
    value = float(value)
    if key == "loss" or key.startswith("loss/"):
        return f"{key} {value:.4f}"
    if value != 0 and math.isfinite(value) and not 1e-3 <= abs(value) < 1e5:
        return f"{key} {value:.2e}"
    return f"{key} {value:.4g}"


def format_console(
    step: int,
    values: Mapping[str, float],
    keys_first: Sequence[str] = ("loss", "lr", "grad_norm", "steps_per_s"),
) -> str:
    """A compact one-line summary: ``step 120 | loss 0.8123 | lr 5.0e-05 | grad_norm 1.23 | 4.1 steps/s | …
    | MFU 41.2%``.

    ``keys_first`` come first in that order (shown even when NaN, so a diverged loss is visible), then the other
    keys alphabetically with NaN entries skipped (a per-task loss is NaN when the batch had no example of that
    task), and ``mfu`` (a fraction) last as a percentage.
    """
    parts = [f"step {int(step)}"]
    for key in keys_first:
        if key in values:
            parts.append(_format_value(key, values[key]))
    rest = sorted(k for k in values if k not in keys_first and k != "mfu")
    for key in rest:
        if math.isnan(float(values[key])):
            continue
        parts.append(_format_value(key, values[key]))
    if "mfu" in values and "mfu" not in keys_first and not math.isnan(float(values["mfu"])):
        parts.append(_format_value("mfu", values["mfu"]))
    return " | ".join(parts)
