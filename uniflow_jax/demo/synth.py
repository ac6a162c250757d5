"""Signal primitives shared by the demo corpus's sounds: clips padded to whole hops, one gain for an input and
its target, and the formant synthesiser (Klatt resonators over a harmonic voice source) that both speaks and sings."""

from __future__ import annotations

import numpy as np
from scipy import signal

from uniflow_jax.frontends.audio import SAMPLE_RATE

HOP = 480  # the VAE hop: every clip is a whole number of hops
PEAK = 0.9


def pad_to_hop(audio: np.ndarray, minimum: int = HOP) -> np.ndarray:
    length = max(minimum, -(-len(audio) // HOP) * HOP)
    return np.pad(audio, (0, length - len(audio)))


def normalise(*signals: np.ndarray) -> list[np.ndarray]:
    """One gain for all (input and target stay consistent) so that the loudest peak is ``PEAK``."""
    peak = max(float(np.abs(s).max()) for s in signals)
    return [(s * (PEAK / peak)).astype(np.float32) for s in signals]


def resonators(formants: tuple[float, ...], bandwidths: tuple[float, ...]) -> np.ndarray:
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
VOWELS = {
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
FRICATIVES = {  # (centre Hz, bandwidth Hz, gain, voiced)
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


def render(plan: list[tuple[str, int, int]], f0: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
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
        if base in VOWELS or base in _SONORANTS:
            formants = tuple(f * scale for f in (VOWELS.get(base) or _SONORANTS[base][:3]))
            seg = signal.sosfilt(resonators(formants, (80, 120, 160)), src)
            gain = _SONORANTS[base][3] if base in _SONORANTS else 1.0
        elif base in FRICATIVES:
            centre, bw, gain, voiced = FRICATIVES[base]
            seg = signal.sosfilt(resonators((min(centre * scale, 10000),), (bw,)), noise[lo:hi])
            if voiced:  # plus a low voice bar
                bar = signal.sosfilt(resonators((250,), (100,)), src)
                seg = seg / (np.std(seg) + 1e-9) + 0.5 * bar / (np.std(bar) + 1e-9)
        else:
            centre, voiced = _STOPS[base]
            seg = np.zeros(hi - lo)
            closure = (hi - lo) * 3 // 5
            burst = signal.sosfilt(resonators((centre * scale,), (1500,)), noise[lo + closure : hi])
            seg[closure:] = burst * np.exp(-np.arange(hi - lo - closure) / (0.01 * SAMPLE_RATE))
            if voiced:
                seg[:closure] = 0.1 * signal.sosfilt(resonators((150,), (100,)), src[:closure]) / (np.std(src) + 1e-9)
            gain = 0.3
        seg = gain * seg / (np.sqrt(np.mean(seg**2)) + 1e-9)
        window = np.ones(hi - lo)  # hi - lo > 2 * _RAMP: cross-fades of sin² and cos² sum to one
        ramp = np.sin(np.linspace(0, np.pi / 2, 2 * _RAMP)) ** 2
        window[: 2 * _RAMP] = ramp
        window[-2 * _RAMP :] *= ramp[::-1]
        out[lo:hi] += seg * window
    return out[_RAMP:-_RAMP]
