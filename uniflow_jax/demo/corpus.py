"""A small demo corpus for all seven tasks, synthesised offline, in the original manifest format.

Training, evaluation and the tests need data for every task without downloading data sets, so this module
synthesises it: speech (espeak-ng when installed, else a numpy formant synthesiser), noisy and band-limited
copies, sound events with captions, melodies with captions, sung scores and videos whose flashes coincide
with their sounds. The same arguments give the same bytes. Layout (format: ``data/README.md``)::

    OUT/corpus.json                        what was built (engine, counts, seed, how durations were found)
    OUT/<split>/<task>/content.jsonl       split = train | val (held out), task = tts svs se sr v2a t2a t2m
    OUT/<split>/<task>/audio.jsonl         targets: wavs/<id>.wav (24 kHz mono, a multiple of 480 samples)
    OUT/spiece.model                       a caption tokenizer (SentencePiece, T5 ids) for models trained on it

    python -m uniflow_jax.demo.corpus --out demo_data
"""

from __future__ import annotations

import ctypes
import functools
import json
import multiprocessing
import pathlib
import shutil
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor

import h5py
import numpy as np
from absl import app, flags
from scipy import signal
from tqdm import tqdm

from uniflow_jax import resources, tasks
from uniflow_jax.frontends.audio import SAMPLE_RATE, write_audio
from uniflow_jax.frontends.symbols import note_to_midi, singer_id, svs_phone_ids, tts_phone_ids
from uniflow_jax.frontends.text import train_tokenizer
from uniflow_jax.instructions import all_texts

HOP = 480  # the VAE hop: every clip is a whole number of hops
SPLITS = ("train", "val")
PEAK = 0.9
XVECTOR_DIM = 256
TTS_GROUPS = ("phoneme", "phoneme_duration", "xvector")  # the original's HDF5 layout: <group>/<audio_id>
VIDEO_SIZE = 64
VIDEO_CODEC = "mpeg4"  # FFmpeg's own encoder: present in every build, unlike libx264
VIDEO_GRID = 0.2  # s: sound onsets on this grid fall on frame boundaries at both 10 and 25 fps

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


def _sentence(rng: np.random.Generator) -> list[str]:
    def pick(slot: str) -> list[str]:
        return [str(rng.choice(list(_LEXICON[slot])))]

    adj = pick("adj") if rng.random() < 0.5 else []
    end = pick("end") if rng.random() < 0.5 else []
    return pick("det") + adj + pick("noun") + pick("verb") + pick("det") + pick("noun") + end


# ---------------------------------------------------------------------------------------------- synthesis


def _pad_to_hop(audio: np.ndarray, minimum: int = HOP) -> np.ndarray:
    length = max(minimum, -(-len(audio) // HOP) * HOP)
    return np.pad(audio, (0, length - len(audio)))


def _normalise(*signals: np.ndarray) -> list[np.ndarray]:
    """One gain for all (input and target stay consistent) so that the loudest peak is ``PEAK``."""
    peak = max(float(np.abs(s).max()) for s in signals)
    return [(s * (PEAK / peak)).astype(np.float32) for s in signals]


def _resonators(formants: tuple[float, ...], bandwidths: tuple[float, ...]) -> np.ndarray:
    """A cascade of two-pole resonators (Klatt), as second-order sections."""
    sos = []
    for freq, bw in zip(formants, bandwidths, strict=True):
        r = np.exp(-np.pi * bw / SAMPLE_RATE)
        sos.append([1 - r, 0.0, 0.0, 1.0, -2 * r * np.cos(2 * np.pi * freq / SAMPLE_RATE), r * r])
    return np.asarray(sos)


def _harmonics(f0: np.ndarray, limit: float = 10000.0) -> np.ndarray:
    """A voice source following the per-sample ``f0``: every harmonic below ``limit`` at equal strength (the
    closed form of the sum of cosines: no aliasing, and cheap), tilted by -6 dB/octave like a sawtooth."""
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    count = np.floor(limit / f0)
    half = np.sin(phase / 2)
    regular = np.abs(half) > 1e-6
    pulses = np.where(regular, np.sin((count + 0.5) * phase) / (2 * np.where(regular, half, 1.0)) - 0.5, count)
    return signal.lfilter([1.0], [1.0, -0.99], pulses)


# Phone classes of the formant synthesiser: vowels and sonorants are a voice source through formants
# (F1..F3 of an average adult male, scaled per speaker); fricatives band-passed noise; stops a closure
# and a burst.
_VOWELS = {
    "IY": (270, 2290, 3010),
    "IH": (390, 1990, 2550),
    "EH": (530, 1840, 2480),
    "AE": (660, 1720, 2410),
    "AH": (520, 1190, 2390),
    "AA": (730, 1090, 2440),
    "AO": (570, 840, 2410),
    "UH": (440, 1020, 2240),
    "UW": (300, 870, 2240),
    "ER": (490, 1350, 1690),
    "EY": (480, 2000, 2600),
    "AY": (700, 1300, 2500),
    "AW": (700, 1100, 2400),
    "OW": (500, 900, 2400),
    "OY": (550, 900, 2400),
}
_SONORANTS = {  # (F1, F2, F3, gain)
    "M": (250, 1100, 2200, 0.35),
    "N": (250, 1700, 2600, 0.35),
    "NG": (250, 2000, 2700, 0.35),
    "L": (360, 1300, 2700, 0.5),
    "R": (420, 1300, 1600, 0.5),
    "W": (300, 610, 2200, 0.5),
    "Y": (280, 2250, 2900, 0.5),
}
_FRICATIVES = {  # (centre Hz, bandwidth Hz, gain, voiced)
    "S": (6000, 2000, 0.3, False),
    "Z": (6000, 2000, 0.25, True),
    "SH": (2800, 1500, 0.3, False),
    "ZH": (2800, 1500, 0.25, True),
    "F": (5000, 5000, 0.1, False),
    "V": (5000, 5000, 0.1, True),
    "TH": (5000, 5000, 0.08, False),
    "DH": (5000, 5000, 0.08, True),
    "HH": (1500, 3000, 0.08, False),
    "CH": (3000, 1500, 0.3, False),
    "JH": (3000, 1500, 0.25, True),
}
_STOPS = {
    "P": (1000, False),
    "B": (1000, True),
    "T": (4000, False),
    "D": (3500, True),
    "K": (2000, False),
    "G": (2000, True),
}
_RAMP = 96  # samples of cross-fade between neighbouring phones


def _render(plan: list[tuple[str, int, int]], f0: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Formant synthesis of ``(phone, start, end)`` segments (ARPAbet, stress digits ignored; ``sil`` silent)."""
    n = len(f0)
    source = np.pad(_harmonics(f0), _RAMP)
    noise = rng.standard_normal(n + 2 * _RAMP)
    out = np.zeros(n + 2 * _RAMP)
    for phone, start, end in plan:
        base = phone.rstrip("012")
        if base == "sil" or end <= start:
            continue
        lo, hi = start, end + 2 * _RAMP  # in ``out`` coordinates (shifted by _RAMP)
        src = source[lo:hi]
        if base in _VOWELS or base in _SONORANTS:
            formants = tuple(f * scale for f in (_VOWELS.get(base) or _SONORANTS[base][:3]))
            seg = signal.sosfilt(_resonators(formants, (80, 120, 160)), src)
            gain = _SONORANTS[base][3] if base in _SONORANTS else 1.0
        elif base in _FRICATIVES:
            centre, bw, gain, voiced = _FRICATIVES[base]
            seg = signal.sosfilt(_resonators((min(centre * scale, 10000),), (bw,)), noise[lo:hi])
            if voiced:  # plus a low voice bar
                bar = signal.sosfilt(_resonators((250,), (100,)), src)
                seg = seg / (np.std(seg) + 1e-9) + 0.5 * bar / (np.std(bar) + 1e-9)
        else:
            centre, voiced = _STOPS[base]
            seg = np.zeros(hi - lo)
            closure = (hi - lo) * 3 // 5
            burst = signal.sosfilt(_resonators((centre * scale,), (1500,)), noise[lo + closure : hi])
            seg[closure:] = burst * np.exp(-np.arange(hi - lo - closure) / (0.01 * SAMPLE_RATE))
            if voiced:
                seg[:closure] = 0.1 * signal.sosfilt(_resonators((150,), (100,)), src[:closure]) / (np.std(src) + 1e-9)
            gain = 0.3
        seg = gain * seg / (np.sqrt(np.mean(seg**2)) + 1e-9)
        window = np.ones(hi - lo)  # hi - lo > 2 * _RAMP: cross-fades of sin² and cos² sum to one
        ramp = np.sin(np.linspace(0, np.pi / 2, 2 * _RAMP)) ** 2
        window[: 2 * _RAMP] = ramp
        window[-2 * _RAMP :] *= ramp[::-1]
        out[lo:hi] += seg * window
    return out[_RAMP:-_RAMP]


# ---------------------------------------------------------------------------------------------- speech

_VOWEL_BASES = frozenset(_VOWELS)


class _Utterance:
    """Speech at 24 kHz (a whole number of hops) with its ARPAbet phones and their lengths in samples."""

    def __init__(self, audio: np.ndarray, phones: list[str], samples: list[int], speaker: str, text: str):
        pad = len(_pad_to_hop(audio)) - len(audio)
        if pad:  # the padding is silence: it lengthens a final ``sil`` or becomes one
            if phones[-1] == "sil":
                samples = [*samples[:-1], samples[-1] + pad]
            else:
                phones, samples = [*phones, "sil"], [*samples, pad]
        self.audio = _normalise(np.pad(audio, (0, pad)))[0]
        self.phones, self.samples, self.speaker, self.text = phones, samples, speaker, text


class _Speech:
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


class NumpySpeech(_Speech):
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
            elif base in _VOWELS:
                low, high = (0.05, 0.08) if phone.endswith("0") else (0.11, 0.17)
            elif base in _FRICATIVES:
                low, high = 0.07, 0.11
            else:
                low, high = 0.05, 0.08
            samples.append(int(rng.uniform(low, high) * rate * SAMPLE_RATE))
        bounds = np.cumsum([0, *samples])
        t = np.arange(bounds[-1]) / SAMPLE_RATE
        f0 = f0_base * (1.1 - 0.2 * t / t[-1]) * (1 + 0.03 * np.sin(2 * np.pi * 1.3 * t + rng.uniform(0, 2 * np.pi)))
        plan = list(zip(phones, bounds[:-1], bounds[1:], strict=True))
        audio = _render(plan, f0, scale, rng)
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


class EspeakSpeech(_Speech):
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


def _speech_engine(name: str) -> _Speech:
    if name == "auto":
        name = "espeak" if espeak_available() else "numpy"
    if name == "espeak":
        return EspeakSpeech()
    if name == "numpy":
        return NumpySpeech()
    raise ValueError(f"unknown speech engine {name!r}: use auto, espeak or numpy")


def _xvector(speaker: str) -> np.ndarray:
    """A stand-in speaker embedding: a fixed unit-norm random vector per speaker name."""
    vector = np.random.default_rng(zlib.crc32(speaker.encode())).standard_normal(XVECTOR_DIM)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


# ---------------------------------------------------------------------------------------------- sounds

_COUNT_WORDS = {1: "a", 2: "two", 3: "three", 4: "four"}
_EVENT_KINDS = ("beep", "click", "burst", "chirp", "knock", "hum")


def _event(kind: str, attrs: dict, rng: np.random.Generator) -> np.ndarray:
    """One sound event; ``attrs`` are the words its caption uses (pitch, length, direction, timbre)."""
    seconds = {
        "beep": rng.uniform(0.08, 0.15) if attrs.get("length") == "short" else rng.uniform(0.35, 0.5),
        "click": 0.01,
        "burst": rng.uniform(0.15, 0.3),
        "chirp": rng.uniform(0.25, 0.4),
        "knock": 0.12,
        "hum": rng.uniform(0.8, 1.4),
    }[kind]
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    if kind == "beep":
        freq = rng.uniform(1200, 2400) if attrs["pitch"] == "high" else rng.uniform(250, 500)
        x = np.sin(2 * np.pi * freq * t)
    elif kind == "click":
        x = rng.standard_normal(n) * np.exp(-t / 0.002)
    elif kind == "burst":
        x = rng.standard_normal(n)
        if attrs["timbre"] == "muffled":
            x = signal.sosfilt(signal.butter(4, 800, fs=SAMPLE_RATE, output="sos"), x)
    elif kind == "chirp":
        low, high = 400.0, rng.uniform(1500, 3000)
        start, end = (low, high) if attrs["direction"] == "rising" else (high, low)
        x = signal.chirp(t, start, seconds, end, method="logarithmic")
    elif kind == "knock":
        body = np.sin(2 * np.pi * rng.uniform(160, 260) * t) * np.exp(-t / 0.03)
        x = body + 0.3 * rng.standard_normal(n) * np.exp(-t / 0.004)
    else:  # hum
        f0 = rng.uniform(80, 120)
        x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
    ramp = min(n // 2, int(0.005 * SAMPLE_RATE))
    envelope = np.ones(n)
    envelope[:ramp] = np.linspace(0, 1, ramp)
    envelope[n - ramp :] = np.linspace(1, 0, ramp)
    return x * envelope / (np.abs(x).max() + 1e-9)


def _draw_part(rng: np.random.Generator) -> tuple[str, dict, int, str]:
    """(kind, attributes, count, caption phrase) of one group of similar events."""
    kind = str(rng.choice(_EVENT_KINDS))
    attrs: dict = {}
    words = []
    if kind == "beep":
        attrs = {"length": str(rng.choice(["short", "long"])), "pitch": str(rng.choice(["high", "low"]))}
        words = [attrs["length"], attrs["pitch"]]
    elif kind == "burst":
        attrs = {"timbre": str(rng.choice(["hissing", "muffled"]))}
        words = [attrs["timbre"]]
    elif kind == "chirp":
        attrs = {"direction": str(rng.choice(["rising", "falling"]))}
        words = [attrs["direction"]]
    elif kind == "knock":
        words = ["dull"]
    elif kind == "hum":
        words = ["low"]
    count = 1 if kind == "hum" else int(rng.integers(1, 3 if attrs.get("length") == "long" else 5))
    noun = kind + ("" if count == 1 else "s")
    phrase = " ".join([_COUNT_WORDS[count], *words, noun + (" of noise" if kind == "burst" else "")])
    if count > 1:
        attrs["rhythm"] = str(rng.choice(["in quick succession", "spaced apart"]))
        phrase += " " + attrs["rhythm"]
    return kind, attrs, count, phrase


def _sound_scene(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """One or two groups of events (1–4 s) and the caption that describes them."""
    while True:
        parts = [_draw_part(rng) for _ in range(1 if rng.random() < 0.5 else 2)]
        pieces = [np.zeros(int(rng.uniform(0.1, 0.3) * SAMPLE_RATE))]
        for p, (kind, attrs, count, _) in enumerate(parts):
            if p:
                pieces.append(np.zeros(int(rng.uniform(0.2, 0.4) * SAMPLE_RATE)))
            for i in range(count):
                if i:
                    quick = attrs["rhythm"] == "in quick succession"
                    gap = rng.uniform(0.06, 0.12) if quick else rng.uniform(0.3, 0.45)
                    pieces.append(np.zeros(int(gap * SAMPLE_RATE)))
                pieces.append(_event(kind, attrs, rng))
        pieces.append(np.zeros(int(rng.uniform(0.1, 0.3) * SAMPLE_RATE)))
        audio = np.concatenate(pieces)
        if len(audio) <= 4 * SAMPLE_RATE:
            joiner = str(rng.choice([" then ", ", followed by "]))
            return _pad_to_hop(audio, SAMPLE_RATE), joiner.join(p[3] for p in parts)


_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
_ROOTS = ("C", "D", "E", "F", "G", "A", "Bb")
_TEMPI = {"slow": (60, 76), "moderate": (90, 110), "fast": (130, 150)}
_TIMBRES = {
    "sine": "a soft sine tone",
    "square": "a square-wave synthesizer",
    "pluck": "a plucked string",
    "organ": "an organ",
}


def _tone(timbre: str, freq: float, n: int) -> np.ndarray:
    """One note of ``n`` samples: additive partials (below 10 kHz) under a 10 ms attack and 30 ms release."""
    t = np.arange(n) / SAMPLE_RATE
    if timbre == "sine":
        x = np.sin(2 * np.pi * freq * t) + 0.1 * np.sin(4 * np.pi * freq * t)
    elif timbre == "square":
        x = sum(np.sin(2 * np.pi * k * freq * t) / k for k in range(1, 16, 2) if k * freq < 10000)
    elif timbre == "pluck":
        partials = [k for k in range(1, 13) if k * freq < 10000]
        x = sum(np.exp(-t * (3 + 2 * k)) * np.sin(2 * np.pi * k * freq * t) / k for k in partials)
    else:  # organ
        x = sum(np.sin(2 * np.pi * k * freq * t) / k for k in (1, 2, 3, 4, 6, 8) if k * freq < 10000)
    envelope = np.minimum(1.0, np.minimum(t / 0.01, (n / SAMPLE_RATE - t) / 0.03))
    return x * np.maximum(envelope, 0.0)


def _midi_hz(midi: float | np.ndarray) -> float | np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi) - 69) / 12)


def _melody(rng: np.random.Generator, seconds: float) -> tuple[np.ndarray, str]:
    """A melody (optionally with bass and drums) of exactly ``seconds`` and its caption."""
    root, mode = str(rng.choice(_ROOTS)), str(rng.choice(list(_SCALES)))
    tempo_word = str(rng.choice(list(_TEMPI)))
    beat = 60.0 / rng.uniform(*_TEMPI[tempo_word])
    timbre = str(rng.choice(list(_TIMBRES)))
    n = int(seconds * SAMPLE_RATE)
    out = np.zeros(n)
    tonic = note_to_midi(f"{root}4")
    degree, start = 0, 0
    while start < n:
        length = min(n - start, int(float(rng.choice([0.5, 1, 1, 1.5, 2])) * beat * SAMPLE_RATE))
        octave, step = divmod(degree, 7)
        out[start : start + length] += _tone(timbre, _midi_hz(tonic + 12 * octave + _SCALES[mode][step]), length)
        start += length
        degree = int(np.clip(degree + rng.integers(-2, 3), -3, 9))
    caption = f"a {tempo_word} melody in {root} {mode} played on {_TIMBRES[timbre]}"
    beats = np.arange(0, n, int(beat * SAMPLE_RATE))
    if rng.random() < 0.5:
        length = int(beat * SAMPLE_RATE)
        for i, b in enumerate(beats):
            fifth = 7 if i % 2 else 0
            bass = _tone("sine", _midi_hz(tonic - 24 + fifth), min(length, n - b))
            out[b : b + len(bass)] += 0.6 * bass
        caption += " with a bass line"
    if rng.random() < 0.4:
        t = np.arange(int(0.15 * SAMPLE_RATE)) / SAMPLE_RATE
        kick = np.sin(2 * np.pi * (60 * t - 66 * t**2)) * np.exp(-t / 0.04)
        for b in beats:
            m = min(len(kick), n - b)
            out[b : b + m] += kick[:m]
        caption += " over a steady drum beat"
    return _pad_to_hop(out), caption


# ---------------------------------------------------------------------------------------------- singing

# Pinyin syllables of the lyrics → (initial or "", final), phones of svs_phone_set.json.
_SYLLABLES = {
    "wo": ("", "uo"),
    "ai": ("", "ai"),
    "ni": ("n", "i"),
    "tian": ("t", "ian"),
    "shang": ("sh", "ang"),
    "de": ("d", "e"),
    "xing": ("x", "ing"),
    "yue": ("", "ve"),
    "liang": ("l", "iang"),
    "guang": ("g", "uang"),
    "hua": ("h", "ua"),
    "kai": ("k", "ai"),
    "feng": ("f", "eng"),
    "chun": ("ch", "uen"),
    "mei": ("m", "ei"),
    "hong": ("h", "ong"),
    "xue": ("x", "ve"),
    "yu": ("", "v"),
    "shui": ("sh", "uei"),
    "liu": ("l", "iou"),
    "ge": ("g", "e"),
    "chang": ("ch", "ang"),
    "lai": ("l", "ai"),
    "qu": ("q", "v"),
    "ming": ("m", "ing"),
    "kong": ("k", "ong"),
    "yun": ("", "vn"),
    "xin": ("x", "in"),
    "zai": ("z", "ai"),
    "sheng": ("sh", "eng"),
    "bao": ("b", "ao"),
    "pa": ("p", "a"),
    "zhe": ("zh", "e"),
    "ren": ("r", "en"),
    "cong": ("c", "ong"),
    "jia": ("j", "ia"),
    "er": ("", "er"),
    "duo": ("d", "uo"),
    "tou": ("t", "ou"),
    "si": ("s", "i"),
}
# For synthesis only: each pinyin phone as the ARPAbet phone whose sound is closest.
_PINYIN_SOUND = {
    **{"b": "B", "p": "P", "m": "M", "f": "F", "d": "D", "t": "T", "n": "N", "l": "L", "g": "G", "k": "K"},
    **{"h": "HH", "j": "JH", "q": "CH", "x": "SH", "zh": "JH", "ch": "CH", "sh": "SH", "r": "R", "z": "Z"},
    **{"c": "S", "s": "S", "a": "AA", "o": "AO", "e": "AH", "i": "IY", "u": "UW", "v": "IH", "er": "ER"},
    **{"ai": "AY", "ao": "AW", "an": "AA", "ang": "AA", "ei": "EY", "en": "AH", "eng": "AH", "ia": "AA"},
    **{"ian": "EH", "iang": "AA", "iao": "AW", "ie": "EH", "in": "IY", "ing": "IY", "iong": "UH", "iou": "OW"},
    **{"ong": "UH", "ou": "OW", "ua": "AA", "uai": "AY", "uan": "AA", "uang": "AA", "uei": "EY", "uen": "AH"},
    **{"uo": "AO", "van": "EH", "ve": "EH", "vn": "IH", "<SP>": "sil"},
}
# Lowest MIDI note and formant scale per voice type.
_VOICE_TYPES = {"Bass": (43, 0.9), "Tenor": (50, 0.95), "Alto": (55, 1.05), "Soprano": (62, 1.12)}
_SINGERS = tuple(resources.load_json("svs_spk_set.json"))


def _sung_score(rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A sung phrase (1.5–4 s) and its score in the README's SVS JSON form (per-phone lists)."""
    singer = str(rng.choice(_SINGERS))
    low, scale = _VOICE_TYPES[singer.split("-")[0]]
    scale *= 1 + 0.02 * (singer_id(singer) % 5 - 2)
    key = low + int(rng.integers(0, 5))
    mode = _SCALES[str(rng.choice(list(_SCALES)))]
    beat = rng.uniform(0.25, 0.4)

    def sec(x: float) -> int:
        return round(x * SAMPLE_RATE)

    # per phone: (phone, samples, midi, note samples, slur)
    lead = sec(rng.uniform(0.1, 0.25))
    rows = [("<SP>", lead, 0, lead, 0)]
    lyrics, total, degree = [], lead, int(rng.integers(0, 5))
    while total < 3.0 * SAMPLE_RATE and len(lyrics) < 8:
        syllable = str(rng.choice(list(_SYLLABLES)))
        initial, final = _SYLLABLES[syllable]
        notes = []
        for _ in range(2 if rng.random() < 0.3 else 1):
            octave, step = divmod(degree, 7)
            notes.append((key + 12 * octave + mode[step], sec(beat * float(rng.choice([1, 1, 1.5, 2])))))
            degree = int(np.clip(degree + rng.integers(-2, 3), 0, 9))
        if total + sum(d for _, d in notes) > 3.8 * SAMPLE_RATE:
            break
        lyrics.append(syllable)
        midi, length = notes[0]
        if initial:
            consonant = sec(rng.uniform(0.05, 0.09))
            rows.append((initial, consonant, midi, length, 0))
            rows.append((final, length - consonant, midi, length, 0))
        else:
            rows.append((final, length, midi, length, 0))
        rows.extend((final, d, m, d, 1) for m, d in notes[1:])
        total += sum(d for _, d in notes)
    tail = sec(rng.uniform(0.1, 0.3))
    tail += -(total + tail) % HOP  # a whole number of hops
    rows.append(("<SP>", tail, 0, tail, 0))
    phones, samples, midis, note_samples, slurs = (list(col) for col in zip(*rows, strict=True))
    svs_phone_ids(phones)  # fails loudly on a table typo

    # f0: the note pitch (rests hold the previous one), glides of 30 ms, vibrato of ±0.2 semitone at 5.5 Hz
    bounds = np.cumsum([0, *samples])
    held = [m or next((p for p in reversed(midis[:i]) if p), key) for i, m in enumerate(midis)]
    pitch = np.repeat(np.asarray(held, np.float64), samples)
    glide = sec(0.03)
    pitch = np.convolve(np.pad(pitch, glide, mode="edge"), np.ones(glide) / glide, mode="same")[glide:-glide]
    t = np.arange(len(pitch)) / SAMPLE_RATE
    f0 = _midi_hz(pitch + 0.2 * np.sin(2 * np.pi * 5.5 * t))
    plan = [(_PINYIN_SOUND[p], int(a), int(b)) for p, a, b in zip(phones, bounds[:-1], bounds[1:], strict=True)]
    audio = _render(plan, f0, scale, rng)
    score = {
        "phoneme": " ".join(phones),
        "phoneme_duration": [s / SAMPLE_RATE for s in samples],
        "midi": midis,
        "midi_duration": [s / SAMPLE_RATE for s in note_samples],
        "is_slur": slurs,
        "spk": singer,
        "text": " ".join(lyrics),
    }
    return audio, score


# ---------------------------------------------------------------------------------------------- video

_VIDEO_EVENTS = ("beep", "click", "burst", "chirp", "knock")
_EVENT_COLOURS = {
    "beep": (255, 220, 40),
    "click": (255, 255, 255),
    "burst": (230, 40, 40),
    "chirp": (40, 220, 90),
    "knock": (200, 120, 50),
}


def _write_video(path: pathlib.Path, frames: np.ndarray, fps: int) -> None:
    import av  # imported here: only V2A needs it

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(VIDEO_CODEC, rate=fps)
        stream.width, stream.height, stream.pix_fmt = VIDEO_SIZE, VIDEO_SIZE, "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _video_scene(rng: np.random.Generator, fps: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """(audio, RGB frames, events): each sound starts on a frame where a coloured square appears."""
    slots = int(rng.integers(10, 21))  # 2–4 s on the 0.2 s grid
    chosen = np.sort(rng.choice(np.arange(1, slots - 1), size=int(rng.integers(2, 6)), replace=False))
    onsets = [int(s) for i, s in enumerate(chosen) if i == 0 or s - chosen[i - 1] >= 2]  # ≥ 0.4 s apart
    grid = int(VIDEO_GRID * SAMPLE_RATE)
    audio = np.zeros(slots * grid)
    frames = np.full((round(slots * VIDEO_GRID * fps), VIDEO_SIZE, VIDEO_SIZE, 3), 24, np.uint8)
    events = []
    for slot in onsets:
        kind = str(rng.choice(_VIDEO_EVENTS))
        attrs = {"length": "short", "pitch": str(rng.choice(["high", "low"])), "timbre": "hissing"}
        attrs["direction"] = str(rng.choice(["rising", "falling"]))
        sound = _event(kind, attrs, rng)[: 2 * grid]
        audio[slot * grid : slot * grid + len(sound)] += sound
        size = int(rng.integers(12, 25))
        y, x = (int(v) for v in rng.integers(0, VIDEO_SIZE - size, 2))
        first = round(slot * VIDEO_GRID * fps)
        shown = max(1, round(max(len(sound) / SAMPLE_RATE, 0.1) * fps))
        for k in range(shown):
            fade = 1.0 - 0.5 * k / shown
            frames[first + k, y : y + size, x : x + size] = np.asarray(_EVENT_COLOURS[kind]) * fade
        events.append({"onset": round(slot * VIDEO_GRID, 3), "kind": kind})
    return audio, frames, events


# ---------------------------------------------------------------------------------------------- tasks

Sample = tuple[dict, np.ndarray]  # (content row without the id, target audio)
Builder = Callable[[pathlib.Path, list[str], list[np.random.Generator], _Speech], Iterator[Sample]]


def _tts(folder: pathlib.Path, ids: list[str], rngs: list[np.random.Generator], speech: _Speech) -> Iterator[Sample]:
    entries = {}
    for key, rng in zip(ids, rngs, strict=True):
        utterance = speech.say(_sentence(rng), int(rng.integers(len(speech.speakers))), rng)
        seconds = np.asarray(utterance.samples, np.float64) / SAMPLE_RATE
        entries[key] = (tts_phone_ids(utterance.phones), seconds.astype(np.float32), _xvector(utterance.speaker))
        yield {"audio": "phonemes.h5", "text": utterance.text, "speaker": utterance.speaker}, utterance.audio
    with h5py.File(folder / "phonemes.h5", "w") as f:
        for key, (phones, durations, xvector) in entries.items():
            for group, data in zip(TTS_GROUPS, (phones, durations, xvector), strict=True):
                f.create_dataset(f"{group}/{key}", data=data)


_NOISES = ("white", "pink", "babble", "hum")


def _noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink (1/f), babble-like (speech-shaped noise with syllabic modulation) or mains hum."""
    if kind == "white":
        return rng.standard_normal(n)
    if kind == "pink":
        spectrum = np.fft.rfft(rng.standard_normal(n))
        return np.fft.irfft(spectrum / np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 20.0)), n)
    t = np.arange(n) / SAMPLE_RATE
    if kind == "hum":
        mains = float(rng.choice([50.0, 60.0]))
        return sum(np.sin(2 * np.pi * k * mains * t) / k for k in range(1, 9)) + 0.05 * rng.standard_normal(n)
    talkers = []
    for _ in range(4):
        formants = _VOWELS[str(rng.choice(list(_VOWELS)))]
        voice = signal.sosfilt(_resonators(formants, (150, 200, 250)), rng.standard_normal(n))
        syllables = np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 2 * np.pi)) ** 2
        talkers.append(voice / np.std(voice) * syllables)
    return sum(talkers)


def _se(folder: pathlib.Path, ids: list[str], rngs: list[np.random.Generator], speech: _Speech) -> Iterator[Sample]:
    for key, rng in zip(ids, rngs, strict=True):
        clean = speech.say(_sentence(rng), int(rng.integers(len(speech.speakers))), rng).audio.astype(np.float64)
        kind, snr = str(rng.choice(_NOISES)), int(rng.choice([0, 5, 10, 15]))
        noise = _noise(kind, len(clean), rng)
        noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr / 10))
        noisy, clean = _normalise(clean + noise, clean)
        write_audio(folder / "noisy" / f"{key}.wav", noisy)
        yield {"noisy_speech": f"noisy/{key}.wav", "noise": kind, "snr_db": snr}, clean


def _sr(folder: pathlib.Path, ids: list[str], rngs: list[np.random.Generator], speech: _Speech) -> Iterator[Sample]:
    for key, rng in zip(ids, rngs, strict=True):
        if rng.random() < 0.5:
            source = "speech"
            full = speech.say(_sentence(rng), int(rng.integers(len(speech.speakers))), rng).audio.astype(np.float64)
        else:
            source = "music"
            full = _melody(rng, rng.uniform(1.5, 4.0))[0]
        cutoff = int(rng.integers(20, 41)) * 100
        low = signal.sosfiltfilt(signal.butter(8, cutoff, fs=SAMPLE_RATE, output="sos"), full)
        low, full = _normalise(low, full)
        write_audio(folder / "low" / f"{key}.wav", low)
        yield {"low_sr_audio": f"low/{key}.wav", "source": source, "cutoff_hz": cutoff}, full


def _t2a(folder: pathlib.Path, ids: list[str], rngs: list[np.random.Generator], speech: _Speech) -> Iterator[Sample]:
    for rng in rngs:
        audio, caption = _sound_scene(rng)
        yield {"caption": caption}, _normalise(audio)[0]


def _t2m(folder: pathlib.Path, ids: list[str], rngs: list[np.random.Generator], speech: _Speech) -> Iterator[Sample]:
    for rng in rngs:
        audio, caption = _melody(rng, 4.0)
        yield {"caption": caption}, _normalise(audio)[0]


def _svs(folder: pathlib.Path, ids: list[str], rngs: list[np.random.Generator], speech: _Speech) -> Iterator[Sample]:
    scores = {}
    for key, rng in zip(ids, rngs, strict=True):
        audio, scores[key] = _sung_score(rng)
        yield {"midi": "score.json", "text": scores[key]["text"]}, _normalise(audio)[0]
    lines = ",\n".join(f"{json.dumps(key)}: {json.dumps(score)}" for key, score in scores.items())
    (folder / "score.json").write_text("{\n" + lines + "\n}\n")  # one score per line


def _v2a(folder: pathlib.Path, ids: list[str], rngs: list[np.random.Generator], speech: _Speech) -> Iterator[Sample]:
    for i, (key, rng) in enumerate(zip(ids, rngs, strict=True)):
        fps = (10, 25)[i % 2]
        audio, frames, events = _video_scene(rng, fps)
        _write_video(folder / "videos" / f"{key}.mp4", frames, fps)
        yield {"video": f"videos/{key}.mp4", "fps": fps, "events": events}, _normalise(audio)[0]


BUILDERS: dict[str, Builder] = {"tts": _tts, "svs": _svs, "se": _se, "sr": _sr, "v2a": _v2a, "t2a": _t2a, "t2m": _t2m}


def _write_jsonl(path: pathlib.Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def build(
    out: str | pathlib.Path, *, seed: int = 0, num_train: int = 64, num_val: int = 16, speech_engine: str = "auto"
) -> dict:
    """Writes the corpus under ``out`` (replacing an earlier demo corpus there) and returns its summary."""
    out = pathlib.Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "corpus.json").exists():
        raise FileExistsError(f"{out} is not empty and holds no demo corpus: choose another --out")
    for split in SPLITS:
        shutil.rmtree(out / split, ignore_errors=True)
    counts = {"train": num_train, "val": num_val}
    bar = tqdm(total=len(BUILDERS) * sum(counts.values()), desc="demo corpus", unit="clip")
    with _speech_engine(speech_engine) as speech, bar:
        summary = {
            "seed": seed,
            "sample_rate": SAMPLE_RATE,
            "counts": counts,
            "speech_engine": speech.name,
            "speech_synthesiser": speech.description,
            "speakers": list(speech.speakers),
            "tts_durations": speech.durations,
            "xvector": f"stand-in: a fixed unit-norm random {XVECTOR_DIM}-d vector per speaker (seeded by its name)",
            "video": {"codec": VIDEO_CODEC, "size": VIDEO_SIZE, "fps": [10, 25]},
            "seconds": {},
        }
        for split_index, split in enumerate(SPLITS):
            for task, builder in BUILDERS.items():
                folder = out / split / task
                folder.mkdir(parents=True)
                ids = [f"{task}_{split}_{i:04d}" for i in range(counts[split])]
                rngs = [np.random.default_rng([seed, tasks.index(task), split_index, i]) for i in range(len(ids))]
                contents, audios, samples = [], [], 0
                for key, (content, audio) in zip(ids, builder(folder, ids, rngs, speech), strict=True):
                    write_audio(folder / "wavs" / f"{key}.wav", audio)
                    contents.append({"audio_id": key, **content})
                    audios.append({"audio_id": key, "audio": f"wavs/{key}.wav"})
                    samples += len(audio)
                    bar.update()
                _write_jsonl(folder / "content.jsonl", contents)
                _write_jsonl(folder / "audio.jsonl", audios)
                summary["seconds"].setdefault(task, {})[split] = samples / SAMPLE_RATE
    _caption_tokenizer(out)
    (out / "corpus.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


TOKENIZER_VOCAB = 512


def _caption_tokenizer(out: pathlib.Path) -> pathlib.Path:
    """No Flan-T5 tokenizer can be downloaded here: one trained on the corpus's captions and the task
    instructions, the vocabulary that configs/demo.py's T5 embeds."""
    captions = [
        json.loads(line)["caption"]
        for path in sorted(out.glob("*/t2[am]/content.jsonl"))
        for line in path.read_text().splitlines()
    ]
    return train_tokenizer((captions + list(all_texts())) * 4, out / "spiece", TOKENIZER_VOCAB)


FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Defined only when run as a program, so that importing this module adds no flags to another tool."""
    flags.DEFINE_string("out", None, "Folder to write the corpus to.", required=True)
    flags.DEFINE_integer("seed", 0, "Seed of every random draw.")
    flags.DEFINE_integer("num_train", 64, "Clips per task in the train split.")
    flags.DEFINE_integer("num_val", 16, "Clips per task in the held-out val split.")
    flags.DEFINE_enum("speech_engine", "auto", ["auto", "espeak", "numpy"], "auto: espeak-ng when installed.")


def main(argv: list[str]) -> None:
    del argv
    summary = build(
        FLAGS.out, seed=FLAGS.seed, num_train=FLAGS.num_train, num_val=FLAGS.num_val, speech_engine=FLAGS.speech_engine
    )
    print(f"wrote {FLAGS.out}: {summary['speech_synthesiser']} speech, {summary['counts']} clips per task")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
