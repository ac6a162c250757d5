"""Symbol tables of the original: ARPAbet phones (TTS), M4Singer phones and singers (SVS), note names."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import numpy as np

from uniflow_jax import resources

SVS_ID_OFFSET = 3  # DiffSinger's TokenTextEncoder reserves ids 0..2
_NOTE = re.compile(r"^([A-Ga-g])([#b]?)(-?\d)$")
_SEMITONE = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


@functools.cache
def _table(name: str) -> tuple[str, ...]:
    return tuple(resources.load_json(name))


def _ids(symbols: Sequence[str], table: tuple[str, ...], offset: int, what: str, oov: str | None = None) -> np.ndarray:
    """Ids of ``symbols``; an unknown one raises, or becomes ``oov`` when given."""
    if oov is not None:
        symbols = [s if s in table else oov for s in symbols]
    unknown = sorted({s for s in symbols if s not in table})
    if unknown:
        raise ValueError(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(table)})")
    return np.array([table.index(s) + offset for s in symbols], np.int32)


def tts_phones() -> tuple[str, ...]:
    """The ARPAbet phone set, in id order."""
    return _table("tts_phone_set.json")


def tts_phone_ids(phones: str | Sequence[str], oov: str | None = None) -> np.ndarray:
    """ARPAbet phones with stress (``HH AH0 L OW1``) → ids of the 92-symbol MFA set. A phone outside the set
    raises (a typo in explicit phones), or becomes ``oov`` (the original CLI maps G2P output to ``spn``)."""
    symbols = phones.split() if isinstance(phones, str) else phones
    return _ids(symbols, _table("tts_phone_set.json"), 0, "ARPAbet phone", oov)


def svs_phone_ids(phones: str | Sequence[str]) -> np.ndarray:
    """M4Singer pinyin phones → ids (table index + 3)."""
    symbols = phones.split() if isinstance(phones, str) else phones
    return _ids(symbols, _table("svs_phone_set.json"), SVS_ID_OFFSET, "M4Singer phone")


def singer_id(name: str) -> int:
    return int(_ids([name], _table("svs_spk_set.json"), 0, "singer")[0])


def note_to_midi(note: str) -> int:
    """``C4`` → 60, ``G#3`` → 56, ``Bb2`` → 46; ``rest`` → 0. An enharmonic pair (``F#4/Gb4``, as M4Singer
    scores write notes) counts as its first name, as in the original."""
    note = note.split("/")[0]
    if note.lower() == "rest":
        return 0
    match = _NOTE.match(note)
    if not match:
        raise ValueError(f"not a note name: {note!r} (use e.g. C4, G#3, Bb2 or rest)")
    letter, accidental, octave = match.groups()
    return 12 * (int(octave) + 1) + _SEMITONE[letter.upper()] + {"#": 1, "b": -1, "": 0}[accidental]
