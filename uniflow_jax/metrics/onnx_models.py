"""User-supplied ONNX models behind the model-based metrics (speaker similarity, FD/KL/IS, CLAP score).

The evaluation ships no weights: a model is exported by its owner and run with onnxruntime on the CPU. The
conventions, checked on load with errors that say what differs:

* an audio model has one float input shaped (batch, samples), fed one clip (batch 1) of mono audio at the
  rate the caller gives; the samples axis must be dynamic or equal to the clip's length;
* its outputs are read by name; an output shaped (1, dims) is one row, (1, frames, dims) or (frames, dims)
  is one row per frame (as VGGish-style embedders give);
* a text model (CLAP's text tower) takes ``input_ids`` and optionally ``attention_mask`` /
  ``token_type_ids`` (integers, batch 1) from a Hugging Face ``tokenizer.json``, and its first output is
  the text embedding.
"""

from __future__ import annotations

import pathlib

import numpy as np

from uniflow_jax.metrics.optional import require

TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _session(path: str | pathlib.Path):
    ort = require("onnxruntime")
    if not pathlib.Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such ONNX model file")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def input_ranks(path: str | pathlib.Path) -> list[int]:
    """The number of axes of each input: tells a waveform model (batch, samples) from a features model."""
    return [len(i.shape) for i in _session(path).get_inputs()]


def _rows(value: np.ndarray) -> np.ndarray:
    value = np.asarray(value, np.float64)
    return value.reshape(1, -1) if value.ndim <= 1 else value.reshape(-1, value.shape[-1])


class OnnxAudioModel:
    """Waveform → named outputs (rows × dims) of an ONNX audio model at ``sample_rate``."""

    def __init__(self, path: str | pathlib.Path, sample_rate: int):
        self.path, self.sample_rate = str(path), int(sample_rate)
        self._session = _session(path)
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 2 or inputs[0].type not in ("tensor(float)", "tensor(double)"):
            found = [(i.name, i.shape, i.type) for i in inputs]
            raise ValueError(f"{path}: expected one float input shaped (batch, samples), found {found}")
        self._input = inputs[0]
        self.output_names = [o.name for o in self._session.get_outputs()]

    def check_outputs(self, names: list[str], flag: str) -> None:
        """Raises naming the model's outputs and the ``flag`` that selects them when one is missing."""
        missing = [name for name in names if name not in self.output_names]
        if missing:
            raise ValueError(
                f"{self.path}: no output named {', '.join(missing)}; its outputs are {self.output_names} "
                f"(choose with {flag})"
            )

    def __call__(self, audio: np.ndarray, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """The outputs ``names`` (all by default) for one clip, each as rows × dims float64."""
        length = self._input.shape[1]
        if isinstance(length, int) and length != len(audio):
            raise ValueError(
                f"{self.path} takes exactly {length} samples per clip, got {len(audio)}: export it with a dynamic "
                "samples axis"
            )
        dtype = np.float32 if self._input.type == "tensor(float)" else np.float64
        names = names or self.output_names
        values = self._session.run(names, {self._input.name: np.asarray(audio, dtype)[None, :]})
        return {name: _rows(value) for name, value in zip(names, values, strict=True)}

    def embedding(self, audio: np.ndarray, name: str | None = None) -> np.ndarray:
        """One vector per clip: output ``name`` (default the first), averaged over its rows."""
        name = name or self.output_names[0]
        return self(audio, [name])[name].mean(axis=0)


class OnnxTextModel:
    """Text → embedding vector through a Hugging Face ``tokenizer.json`` and an ONNX text encoder."""

    def __init__(self, path: str | pathlib.Path, tokenizer: str | pathlib.Path):
        self.path = str(path)
        self._session = _session(path)
        self._tokenizer = require("tokenizers").Tokenizer.from_file(str(tokenizer))
        self._inputs = {i.name: i.type for i in self._session.get_inputs()}
        unknown = sorted(set(self._inputs) - set(TEXT_INPUTS))
        if "input_ids" not in self._inputs or unknown:
            raise ValueError(
                f"{path}: expected inputs among {TEXT_INPUTS} incl. input_ids, found {sorted(self._inputs)}"
            )

    def __call__(self, text: str) -> np.ndarray:
        encoding = self._tokenizer.encode(text)
        columns = {
            "input_ids": encoding.ids,
            "attention_mask": encoding.attention_mask,
            "token_type_ids": encoding.type_ids,
        }
        feed = {
            name: np.asarray([columns[name]], np.int32 if kind == "tensor(int32)" else np.int64)
            for name, kind in self._inputs.items()
        }
        return _rows(self._session.run(None, feed)[0]).mean(axis=0)
