"""Word error rate of synthesised speech through a pluggable speech recogniser.

The default recogniser is CMU PocketSphinx, whose wheel ships a US-English acoustic model, language model
and dictionary, so WER runs offline with nothing to download; any pocketsphinx model can replace its files
(``PocketSphinx(hmm=..., lm=..., dictionary=...)``), and any other recogniser plugs in as ``module:factory`` (see
:func:`load_plugin`). PocketSphinx is far weaker than the NeMo / Whisper models of published TTS WERs: its
numbers compare systems with each other, not with papers.
"""

from __future__ import annotations

import importlib
import re
import unicodedata
from typing import Protocol

import numpy as np

from uniflow_jax.metrics.optional import require

SETTINGS = {
    "wer": (
        "word error rate of the recogniser's transcript of the generated audio against the reference text, both "
        "normalised (lowercase; '1,000' -> '1000'; numbers as words by num2words; apostrophes dropped, other "
        "punctuation as spaces; spaces collapsed); per item, and over the corpus as total word errors / total "
        "reference words (jiwer)"
    ),
}


class Recogniser(Protocol):
    """Speech to text: mono float audio at ``sample_rate`` → a transcript."""

    sample_rate: int

    def __call__(self, audio: np.ndarray) -> str: ...


class PocketSphinx:
    """CMU PocketSphinx at 16 kHz. ``hmm`` (acoustic model folder), ``lm`` (language model) and
    ``dictionary`` (pronunciations) replace the files of the US-English model in the pocketsphinx wheel."""

    sample_rate = 16000

    def __init__(self, hmm: str | None = None, lm: str | None = None, dictionary: str | None = None):
        pocketsphinx = require("pocketsphinx")
        paths = {key: value for key, value in (("hmm", hmm), ("lm", lm), ("dict", dictionary)) if value}
        self._decoder = pocketsphinx.Decoder(loglevel="FATAL", **paths)

    def __call__(self, audio: np.ndarray) -> str:
        pcm = (np.clip(np.asarray(audio, np.float64), -1.0, 1.0) * 32767).astype(np.int16)
        self._decoder.start_utt()
        self._decoder.process_raw(pcm.tobytes(), full_utt=True)
        self._decoder.end_utt()
        hypothesis = self._decoder.hyp()
        return hypothesis.hypstr if hypothesis is not None else ""


def load_plugin(spec: str) -> Recogniser:
    """The recogniser returned by ``factory()`` for ``spec = "package.module:factory"``: any object with a
    ``sample_rate`` and ``__call__(audio) -> str`` (e.g. a wrapper around Whisper or NeMo)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"ASR plugin {spec!r}: expected 'package.module:factory'")
    recogniser = getattr(importlib.import_module(module_name), attribute)()
    if not callable(recogniser) or not isinstance(getattr(recogniser, "sample_rate", None), int):
        raise TypeError(f"ASR plugin {spec!r}: the factory must return a callable with an int sample_rate")
    return recogniser


_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def normalise(text: str) -> str:
    """Lowercase words without punctuation, numbers spelt out: the form both sides of a WER are compared in."""
    num2words = require("num2words").num2words
    text = _NUMBER.sub(lambda m: f" {num2words(float(m[0]) if '.' in m[0] else int(m[0]))} ", _THOUSANDS.sub("", text))
    text = "".join("" if c in "'’" else " " if unicodedata.category(c).startswith("P") else c for c in text.lower())
    return " ".join(text.split())


def word_error_rates(references: list[str], hypotheses: list[str]) -> tuple[list[float], float]:
    """Per-item WERs and the corpus WER (total errors / total reference words) of normalised texts."""
    jiwer = require("jiwer")
    references, hypotheses = [normalise(t) for t in references], [normalise(t) for t in hypotheses]
    empty = [i for i, text in enumerate(references) if not text]
    if empty:
        raise ValueError(f"reference transcripts {empty} have no words after normalisation")
    per_item = [jiwer.process_words(r, h).wer for r, h in zip(references, hypotheses, strict=True)]
    return [float(x) for x in per_item], float(jiwer.process_words(references, hypotheses).wer)
