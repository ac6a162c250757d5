"""Speech for the demo corpus (TTS, and the clean speech of SE and SR): sentences over a small lexicon, spoken by
espeak-ng through libespeak-ng when installed, else by the numpy formant synthesiser; both give exact phone
durations."""

from __future__ import annotations

import ctypes
import functools
import multiprocessing
import shutil
import zlib
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from scipy import signal

from uniflow_jax.demo.synth import FRICATIVES, VOWELS, normalise, pad_to_hop, render
from uniflow_jax.frontends.audio import SAMPLE_RATE

XVECTOR_DIM = 256

# ---------------------------------------------------------------------------------------------- words

# Sentences are "det [adj] noun verb det noun [end]" over this lexicon (CMUdict pronunciations, which the
# numpy synthesiser speaks; espeak-ng reads the text with its own rules).
_LEXICON = {
    "det": {"the": "DH AH0", "a": "AH0", "my": "M AY1", "one": "W AH1 N", "this": "DH IH1 S"},
    "adj": {
        "red": "R EH1 D",
        "big": "B IH1 G",
        "small": "S M AO1 L",
        "old": "OW1 L D",
        "green": "G R IY1 N",
        "blue": "B L UW1",
        "happy": "HH AE1 P IY0",
        "quiet": "K W AY1 AH0 T",
        "little": "L IH1 T AH0 L",
        "bright": "B R AY1 T",
        "cold": "K OW1 L D",
        "young": "Y AH1 NG",
    },
    "noun": {
        "dog": "D AO1 G",
        "cat": "K AE1 T",
        "boat": "B OW1 T",
        "house": "HH AW1 S",
        "tree": "T R IY1",
        "bird": "B ER1 D",
        "girl": "G ER1 L",
        "man": "M AE1 N",
        "child": "CH AY1 L D",
        "river": "R IH1 V ER0",
        "garden": "G AA1 R D AH0 N",
        "window": "W IH1 N D OW0",
        "letter": "L EH1 T ER0",
        "apple": "AE1 P AH0 L",
        "table": "T EY1 B AH0 L",
        "song": "S AO1 NG",
        "road": "R OW1 D",
        "fish": "F IH1 SH",
        "book": "B UH1 K",
        "moon": "M UW1 N",
        "voice": "V OY1 S",
    },
    "verb": {
        "sees": "S IY1 Z",
        "finds": "F AY1 N D Z",
        "likes": "L AY1 K S",
        "wants": "W AA1 N T S",
        "takes": "T EY1 K S",
        "opens": "OW1 P AH0 N Z",
        "paints": "P EY1 N T S",
        "hears": "HH IY1 R Z",
        "brings": "B R IH1 NG Z",
        "follows": "F AA1 L OW0 Z",
        "watches": "W AA1 CH AH0 Z",
    },
    "end": {
        "today": "T AH0 D EY1",
        "again": "AH0 G EH1 N",
        "slowly": "S L OW1 L IY0",
        "quickly": "K W IH1 K L IY0",
        "there": "DH EH1 R",
    },
}
_PRONUNCIATION = {word: phones for words in _LEXICON.values() for word, phones in words.items()}


def sentence(rng: np.random.Generator) -> list[str]:
    def pick(slot: str) -> list[str]:
        return [str(rng.choice(list(_LEXICON[slot])))]

    adj = pick("adj") if rng.random() < 0.5 else []
    end = pick("end") if rng.random() < 0.5 else []
    return pick("det") + adj + pick("noun") + pick("verb") + pick("det") + pick("noun") + end


# ---------------------------------------------------------------------------------------------- speech

_VOWEL_BASES = frozenset(VOWELS)


class _Utterance:
    """Speech at 24 kHz (a whole number of hops) with its ARPAbet phones and their lengths in samples."""

    def __init__(self, audio: np.ndarray, phones: list[str], samples: list[int], speaker: str, text: str):
        pad = len(pad_to_hop(audio)) - len(audio)
        if pad:  # the padding is silence: it lengthens a final ``sil`` or becomes one
            if phones[-1] == "sil":
                samples = [*samples[:-1], samples[-1] + pad]
            else:
                phones, samples = [*phones, "sil"], [*samples, pad]
        self.audio = normalise(np.pad(audio, (0, pad)))[0]
        self.phones, self.samples, self.speaker, self.text = phones, samples, speaker, text


class Speech:
    """A speech engine (a context manager for its resources): words and a speaker index → an utterance."""

    name: str  # "espeak" | "numpy"
    description: str
    durations: str  # how the phone durations were found
    speakers: tuple[str, ...]

    def say(self, words: list[str], speaker: int, rng: np.random.Generator) -> _Utterance:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        pass


class NumpySpeech(Speech):
    """The fallback engine: the formant synthesiser speaks the lexicon's ARPAbet, so durations are exact."""

    name = "numpy"
    description = "the numpy formant synthesiser of uniflow_jax.demo.corpus"
    durations = "exact (set by the numpy formant synthesiser)"
    # (name, f0 Hz, formant scale, speaking-rate factor)
    SPEAKERS = (
        ("numpy:low-male", 95.0, 0.92, 1.05),
        ("numpy:male", 120.0, 1.0, 1.0),
        ("numpy:fast-male", 110.0, 0.97, 0.85),
        ("numpy:female", 200.0, 1.15, 1.0),
        ("numpy:high-female", 240.0, 1.2, 0.95),
        ("numpy:child", 280.0, 1.3, 1.1),
    )
    speakers = tuple(s[0] for s in SPEAKERS)

    def say(self, words: list[str], speaker: int, rng: np.random.Generator) -> _Utterance:
        name, f0_base, scale, rate = self.SPEAKERS[speaker]
        phones = ["sil", *" ".join(_PRONUNCIATION[w] for w in words).split(), "sil"]
        samples = []
        for phone in phones:
            base = phone.rstrip("012")
            if phone == "sil":
                low, high = 0.1, 0.25
            elif base in VOWELS:
                low, high = (0.05, 0.08) if phone.endswith("0") else (0.11, 0.17)
            elif base in FRICATIVES:
                low, high = 0.07, 0.11
            else:
                low, high = 0.05, 0.08
            samples.append(int(rng.uniform(low, high) * rate * SAMPLE_RATE))
        bounds = np.cumsum([0, *samples])
        t = np.arange(bounds[-1]) / SAMPLE_RATE
        f0 = f0_base * (1.1 - 0.2 * t / t[-1]) * (1 + 0.03 * np.sin(2 * np.pi * 1.3 * t + rng.uniform(0, 2 * np.pi)))
        plan = list(zip(phones, bounds[:-1], bounds[1:], strict=True))
        audio = render(plan, f0, scale, rng)
        return _Utterance(audio, phones, samples, name, " ".join(words))


# espeak-ng's English phoneme mnemonics (as in ``espeak-ng -x``) → ARPAbet. Vowels take the stress digit
# of espeak's mark (' → 1, , → 2, none → 0); a mnemonic mapped to two phones (r-coloured and syllabic
# vowels) has its duration split evenly; "" joins the previous phone (the palatal glide of "the old").
_ESPEAK_ARPABET = {
    **{"@": "AH", "@2": "AH", "@5": "AH", "@L": "AH L", "@U": "OW", "3": "ER", "3:": "ER", "V": "AH"},
    **{"a": "AE", "aa": "AE", "a#": "AH", "A:": "AA", "A@": "AA R", "A#": "AA", "0": "AA"},
    **{"O": "AO", "O:": "AO", "O2": "AO", "O@": "AO R", "o@": "AO R", "OI": "OY", "oU": "OW", "oU#": "OW"},
    **{"e": "EH", "E": "EH", "e@": "EH R", "eI": "EY", "i": "IY", "i:": "IY", "I": "IH", "I#": "IH", "I2": "IH"},
    **{"i@": "IH R", "i@3": "IH R", "U": "UH", "U@": "UH R", "u:": "UW", "aI": "AY", "aI@": "AY ER"},
    **{"aI3": "AY ER", "aU": "AW", "aU@": "AW ER"},
    **{"p": "P", "b": "B", "t": "T", "t#": "T", "d": "D", "d#": "D", "k": "K", "g": "G", "?": "T", "x": "K"},
    **{"f": "F", "v": "V", "T": "TH", "D": "DH", "s": "S", "z": "Z", "S": "SH", "Z": "ZH", "h": "HH"},
    **{"m": "M", "n": "N", "n-": "AH N", "N": "NG", "l": "L", "l-": "AH L", "r": "R", "r-": "R", "w": "W"},
    **{"j": "Y", "tS": "CH", "dZ": "JH", ";": ""},
}
_ESPEAK_RATE = 22050
_EVENT_PHONEME = 7


class _EspeakEvent(ctypes.Structure):
    class _Id(ctypes.Union):
        _fields_ = (("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8))

    _fields_ = (
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _Id),
    )


_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_EspeakEvent)
)


@functools.cache
def _espeak_library() -> ctypes.CDLL | None:
    """libespeak-ng, initialised once per process for synchronous synthesis with phoneme events."""
    try:
        lib = ctypes.CDLL("libespeak-ng.so.1")
    except OSError:
        return None
    lib.espeak_Initialize.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
    lib.espeak_Synth.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint)
    lib.espeak_Synth.argtypes += (ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p)
    lib.espeak_SetVoiceByName.argtypes = (ctypes.c_char_p,)
    lib.espeak_SetSynthCallback.argtypes = (_SYNTH_CALLBACK,)
    lib.espeak_TextToPhonemes.argtypes = (ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int)
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    lib.espeak_Info.argtypes = (ctypes.c_void_p,)
    lib.espeak_Info.restype = ctypes.c_char_p
    # AUDIO_OUTPUT_SYNCHRONOUS; espeakINITIALIZE_PHONEME_EVENTS | espeakINITIALIZE_DONT_EXIT
    if lib.espeak_Initialize(2, 0, None, 0x8001) != _ESPEAK_RATE:
        return None
    return lib


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None and _espeak_library() is not None


class _EspeakSession:
    """The synthesis calls, in the worker process. espeak-ng's waveform depends on what it spoke before
    (oscillator and noise state), so one fresh worker per build, called in a fixed order, gives the same bytes."""

    def __init__(self):
        self.lib = _espeak_library()
        self.chunks: list[np.ndarray] = []
        self.events: list[tuple[int, str]] = []
        self.callback = _SYNTH_CALLBACK(self.collect)  # kept alive as long as the library may call it
        self.lib.espeak_SetSynthCallback(self.callback)

    def collect(self, wav, count: int, events) -> int:
        if count > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, (count,)).copy())
        i = 0
        while events[i].type:
            if events[i].type == _EVENT_PHONEME:
                self.events.append((events[i].sample, events[i].id.string.decode()))
            i += 1
        return 0

    def stressed_phonemes(self, text: bytes) -> list[str]:
        """espeak's phoneme string of ``text`` (mnemonics with stress marks), one mnemonic per item."""
        pointer, tokens = ctypes.c_char_p(text), []
        while pointer.value:
            line = self.lib.espeak_TextToPhonemes(ctypes.byref(pointer), 1, ord("_") << 8).decode()
            tokens += [t for t in line.replace(" ", "_").split("_") if t]
        return tokens

    def synth(self, voice: str, text: str) -> tuple[np.ndarray, list[tuple[int, str]], list[str]]:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {voice!r}")
        self.chunks, self.events = [], []
        self.lib.espeak_Synth(text.encode(), len(text) + 1, 0, 1, 0, 1, None, None)  # POS_CHARACTER, UTF-8
        return np.concatenate(self.chunks), self.events, self.stressed_phonemes(text.encode())


@functools.cache
def _espeak_session() -> _EspeakSession:
    return _EspeakSession()


def _espeak_synth(voice: str, text: str) -> tuple[np.ndarray, list[tuple[int, str]], list[str]]:
    """(int16 audio at 22050 Hz, phoneme events as (start sample, mnemonic), stressed phoneme string)."""
    return _espeak_session().synth(voice, text)


class EspeakSpeech(Speech):
    """espeak-ng through libespeak-ng: its phoneme events carry sample positions, so phone boundaries are
    exact; stress marks come from the same text's phoneme string (``espeak_TextToPhonemes``)."""

    name = "espeak"
    durations = (
        "exact: libespeak-ng phoneme events (sample positions), resampled 22050 -> 24000 Hz; espeak phonemes "
        "that map to two ARPAbet phones (r-coloured and syllabic vowels) are split evenly, and a phone that espeak "
        "gives no time of its own (a word-final l before a pause) shares the previous phone's span"
    )
    VOICES = ("en-us", "en-us+f2", "en-us+m3", "en", "en+f4", "en-gb-x-rp+m7")  # "en" is British English
    speakers = tuple(f"espeak:{voice}" for voice in VOICES)

    def __init__(self):
        if not espeak_available():
            raise RuntimeError("speech_engine='espeak' needs espeak-ng (e.g. apt-get install espeak-ng)")
        self.description = f"espeak-ng {_espeak_library().espeak_Info(None).decode()} (libespeak-ng through ctypes)"
        self._worker = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))

    def close(self) -> None:
        self._worker.shutdown()

    def say(self, words: list[str], speaker: int, rng: np.random.Generator) -> _Utterance:
        del rng  # espeak-ng draws nothing from it
        text = " ".join(words)
        audio, events, stressed = self._worker.submit(_espeak_synth, self.VOICES[speaker], text).result()
        audio = audio.astype(np.float64) / 32768

        # espeak phonemes with their start sample; pauses ("_", "_:") are silence
        starts, names = [0, *(sample for sample, _ in events), len(audio)], ["_", *(name for _, name in events)]
        spoken = [n for n in names if not n.startswith("_")]
        if spoken != [t.lstrip("',%=") for t in stressed]:
            raise RuntimeError(f"espeak-ng events {spoken} do not match its phoneme string {stressed}")
        marks = iter(stressed)

        phones, bounds = [], []
        for name, start, end in zip(names, starts[:-1], starts[1:], strict=True):
            if name.startswith("_"):
                mapped = ["sil"]
            else:
                token = next(marks)
                if name not in _ESPEAK_ARPABET:
                    raise RuntimeError(f"no ARPAbet mapping for espeak-ng phoneme {name!r} (in {text!r})")
                stress = "1" if "'" in token else "2" if "," in token else "0"
                mapped = []
                for phone in _ESPEAK_ARPABET[name].split():
                    mapped.append(phone + (stress if phone in _VOWEL_BASES else ""))
                    if phone in _VOWEL_BASES:
                        stress = "0"
            if not mapped:  # joins the previous phone
                continue
            if mapped == ["sil"] and phones and phones[-1] == "sil":
                continue
            edges = np.linspace(start, end, len(mapped) + 1)
            for phone, edge in zip(mapped, edges[:-1], strict=True):
                phones.append(phone)
                bounds.append(edge)
        bounds = [round(b * SAMPLE_RATE / _ESPEAK_RATE) for b in bounds]
        audio = signal.resample_poly(audio, 160, 147)  # 22050 → 24000 Hz
        bounds.append(len(audio))
        for i in range(1, len(phones)):
            if bounds[i] == bounds[i + 1] and phones[i] != "sil":  # no time of its own (a final "l" before a pause)
                bounds[i] = (bounds[i - 1] + bounds[i + 1]) // 2
        samples = np.diff(bounds).tolist()
        if phones[0] == "sil" and samples[0] == 0:
            phones, samples = phones[1:], samples[1:]
        return _Utterance(audio, phones, samples, self.speakers[speaker], text)


def speech_engine(name: str) -> Speech:
    if name == "auto":
        name = "espeak" if espeak_available() else "numpy"
    if name == "espeak":
        return EspeakSpeech()
    if name == "numpy":
        return NumpySpeech()
    raise ValueError(f"unknown speech engine {name!r}: use auto, espeak or numpy")


def xvector(speaker: str) -> np.ndarray:
    """A stand-in speaker embedding: a fixed unit-norm random vector per speaker name."""
    vector = np.random.default_rng(zlib.crc32(speaker.encode())).standard_normal(XVECTOR_DIM)
    return (vector / np.linalg.norm(vector)).astype(np.float32)
