"""Sung phrases for SVS: pinyin lyrics on a melody, sung by the formant synthesiser, with their scores."""

from __future__ import annotations

import numpy as np

from uniflow_jax import resources
from uniflow_jax.demo.sounds import SCALES, midi_hz
from uniflow_jax.demo.synth import HOP, render
from uniflow_jax.frontends.audio import SAMPLE_RATE
from uniflow_jax.frontends.symbols import singer_id, svs_phone_ids

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


def sung_score(rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A sung phrase (1.5–4 s) and its score in the README's SVS JSON form (per-phone lists)."""
    singer = str(rng.choice(_SINGERS))
    low, scale = _VOICE_TYPES[singer.split("-")[0]]
    scale *= 1 + 0.02 * (singer_id(singer) % 5 - 2)
    key = low + int(rng.integers(0, 5))
    mode = SCALES[str(rng.choice(list(SCALES)))]
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
    f0 = midi_hz(pitch + 0.2 * np.sin(2 * np.pi * 5.5 * t))
    plan = [(_PINYIN_SOUND[p], int(a), int(b)) for p, a, b in zip(phones, bounds[:-1], bounds[1:], strict=True)]
    audio = render(plan, f0, scale, rng)
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
