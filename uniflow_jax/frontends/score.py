"""SVS music scores as the original CLI takes them (DiffSinger's word-level ``SVSInputConverter``).

A score is one string, ``lyrics<sep>notes<sep>durations`` (``<sep>`` literally, as ``inference_cli.py`` splits it):

* lyrics: Chinese characters, turned into toneless pinyin by ``pypinyin.lazy_pinyin``; ``AP`` (a breath) and
  ``SP`` (a silence) written in the lyrics stand for themselves. A pinyin syllable that the table lacks, like a
  punctuation mark, is dropped, as in the original;
* notes: per word (syllable), its note(s), words separated by ``|``: ``C4``, ``G#3``, ``F#4/Gb4``, ``rest``;
* durations: per word, one duration in seconds per note, grouped by ``|`` the same way.

Each word's phones come from the pinyin table (``m4singer_pinyin2ph.txt``, ``| pinyin | ph1 ph2 |`` lines) and
all take the word's first note. A word with several notes is a slur: its last phone is repeated for each further
note, flagged ``is_slur=1``. Example (3 words, the last one slurred over two notes)::

    AP你好<sep>rest | C4 | D4 E4<sep>0.2 | 0.4 | 0.3 0.3
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Mapping, Sequence

SEPARATOR = "<sep>"
BREATH_AND_SILENCE = {"AP": ["<AP>"], "SP": ["<SP>"]}


@dataclasses.dataclass(frozen=True)
class PhoneScore:
    """One entry per phone: the phone, its note name, the note's duration (s) and its slur flag."""

    phones: list[str]
    notes: list[str]
    durations: list[float]
    slurs: list[int]


@functools.cache
def read_pinyin_table(path: str | pathlib.Path) -> dict[str, list[str]]:
    """``m4singer_pinyin2ph.txt`` → {toneless pinyin: phones}, with ``AP``/``SP`` added as the original does.
    Each line is split on ``|`` (outer bars optional); piece 1 is the syllable, piece 2 its space-separated
    phones, further pieces are ignored; blank lines are skipped."""
    table = dict(BREATH_AND_SILENCE)
    for number, line in enumerate(pathlib.Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        pieces = [piece.strip() for piece in line.split("|") if piece.strip()]
        if not pieces:
            continue
        if len(pieces) < 2:
            raise ValueError(f"{path}:{number}: expected '| pinyin | phones |', got {line!r}")
        table[pieces[0]] = pieces[1].split()
    return table


def split_music_score(score: str) -> tuple[str, list[str], list[str]]:
    """``lyrics<sep>notes<sep>durations`` → (lyrics, note groups, duration groups), one group per word."""
    parts = score.split(SEPARATOR)
    if len(parts) != 3:
        raise ValueError(f"a music score is 'lyrics{SEPARATOR}notes{SEPARATOR}durations', got {len(parts)} part(s)")
    lyrics, notes, durations = parts
    return lyrics, _groups(notes), _groups(durations)


def _groups(words: str) -> list[str]:
    return [group.strip() for group in words.split("|") if group.strip()]


def total_seconds(score: str) -> float:
    """The sum of a score's note durations (0 when they do not parse): a cheap length for batching."""
    try:
        return sum(float(x) for group in split_music_score(score)[2] for x in group.split())
    except ValueError:
        return 0.0


def parse_music_score(score: str, pinyin_table: Mapping[str, Sequence[str]]) -> PhoneScore:
    """A word-level music score (module docstring) → one note, duration and slur flag per phone."""
    try:
        from pypinyin import lazy_pinyin
    except ImportError as error:
        raise ImportError("--music_score needs pypinyin: pip install -e '.[text]'") from error
    lyrics, note_groups, duration_groups = split_music_score(score)
    syllables = [syllable.strip() for syllable in lazy_pinyin(lyrics, strict=False)]
    words = [pinyin_table[s] for s in syllables if s in pinyin_table]
    if not len(words) == len(note_groups) == len(duration_groups):
        dropped = [s for s in syllables if s not in pinyin_table]
        raise ValueError(
            f"music score: {len(words)} lyric word(s) but {len(note_groups)} note group(s) and "
            f"{len(duration_groups)} duration group(s); separate each word's notes and durations by '|'"
            + (f" (not in the pinyin table, so dropped: {' '.join(dropped)})" if dropped else "")
        )
    if not words:
        raise ValueError("music score: no lyrics")
    rows: list[tuple[str, str, float, int]] = []  # (phone, note, seconds, slur)
    for k, (phones, notes, durations) in enumerate(zip(words, note_groups, duration_groups, strict=True), 1):
        notes, seconds = notes.split(), _seconds(durations, k)
        if len(notes) != len(seconds):
            raise ValueError(f"music score word {k}: {len(notes)} note(s) but {len(seconds)} duration(s)")
        rows += [(phone, notes[0], seconds[0], 0) for phone in phones]  # every phone takes the word's first note
        rows += [(phones[-1], n, s, 1) for n, s in zip(notes[1:], seconds[1:], strict=True)]  # a slur: held
    return PhoneScore(*(list(column) for column in zip(*rows, strict=True)))


def _seconds(durations: str, word: int) -> list[float]:
    try:
        return [float(x) for x in durations.split()]
    except ValueError:
        raise ValueError(f"music score word {word}: durations must be seconds, got {durations!r}") from None
