"""Sound events with their captions (T2A) and melodies with theirs (T2M, and the music of SR); the scales and
MIDI pitches serve the sung scores too."""

from __future__ import annotations

import numpy as np
from scipy import signal

from uniflow_jax.demo.synth import pad_to_hop
from uniflow_jax.frontends.audio import SAMPLE_RATE
from uniflow_jax.frontends.symbols import note_to_midi

_COUNT_WORDS = {1: "a", 2: "two", 3: "three", 4: "four"}
_EVENT_KINDS = ("beep", "click", "burst", "chirp", "knock", "hum")


def event(kind: str, attrs: dict, rng: np.random.Generator) -> np.ndarray:
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


def sound_scene(rng: np.random.Generator) -> tuple[np.ndarray, str]:
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
                pieces.append(event(kind, attrs, rng))
        pieces.append(np.zeros(int(rng.uniform(0.1, 0.3) * SAMPLE_RATE)))
        audio = np.concatenate(pieces)
        if len(audio) <= 4 * SAMPLE_RATE:
            joiner = str(rng.choice([" then ", ", followed by "]))
            return pad_to_hop(audio, SAMPLE_RATE), joiner.join(p[3] for p in parts)


SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
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


def midi_hz(midi: float | np.ndarray) -> float | np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi) - 69) / 12)


def melody(rng: np.random.Generator, seconds: float) -> tuple[np.ndarray, str]:
    """A melody (optionally with bass and drums) of exactly ``seconds`` and its caption."""
    root, mode = str(rng.choice(_ROOTS)), str(rng.choice(list(SCALES)))
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
        out[start : start + length] += _tone(timbre, midi_hz(tonic + 12 * octave + SCALES[mode][step]), length)
        start += length
        degree = int(np.clip(degree + rng.integers(-2, 3), -3, 9))
    caption = f"a {tempo_word} melody in {root} {mode} played on {_TIMBRES[timbre]}"
    beats = np.arange(0, n, int(beat * SAMPLE_RATE))
    if rng.random() < 0.5:
        length = int(beat * SAMPLE_RATE)
        for i, b in enumerate(beats):
            fifth = 7 if i % 2 else 0
            bass = _tone("sine", midi_hz(tonic - 24 + fifth), min(length, n - b))
            out[b : b + len(bass)] += 0.6 * bass
        caption += " with a bass line"
    if rng.random() < 0.4:
        t = np.arange(int(0.15 * SAMPLE_RATE)) / SAMPLE_RATE
        kick = np.sin(2 * np.pi * (60 * t - 66 * t**2)) * np.exp(-t / 0.04)
        for b in beats:
            m = min(len(kick), n - b)
            out[b : b + m] += kick[:m]
        caption += " over a steady drum beat"
    return pad_to_hop(out), caption
