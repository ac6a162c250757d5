"""The measures behind the demo's bars, on signals whose answer is known, and the verdict rules (strictly
better than the baseline: a tie is never met)."""

import numpy as np
import pytest
from scipy import signal

from uniflow_jax.demo import bars
from uniflow_jax.metrics import audio as metrics

SR = 24000


def test_caption_event_count():
    assert bars.caption_event_count("a click") == 1
    assert bars.caption_event_count("three muffled bursts of noise in quick succession then a low hum") == 4
    assert bars.caption_event_count("two rising chirps spaced apart, followed by four dull knocks") == 6


@pytest.mark.parametrize(
    ("bpm", "word"), [(62, "slow"), (75, "slow"), (95, "moderate"), (110, "moderate"), (145, "fast")]
)
def test_tempo_class(bpm, word):
    assert bars.tempo_class(bpm) == word


def test_sweep_directions():
    t = np.arange(int(0.3 * SR)) / SR
    gap = np.zeros(SR // 5)
    rising = signal.chirp(t, 400, t[-1], 3000, method="logarithmic")
    falling = signal.chirp(t, 3000, t[-1], 400, method="logarithmic")
    beep = np.sin(2 * np.pi * 1000 * t)
    assert metrics.sweep_directions(np.concatenate([gap, rising, gap, rising, gap]), SR) == [1, 1]
    assert metrics.sweep_directions(np.concatenate([gap, falling, gap]), SR) == [-1]
    assert metrics.sweep_directions(np.concatenate([gap, beep, gap]), SR) == []
    noise = np.random.default_rng(0).normal(size=SR // 2)
    assert metrics.sweep_directions(np.concatenate([gap, noise, gap]), SR) == []


def test_note_accuracy_follows_the_score():
    score = {"phoneme_duration": [0.5, 0.5, 0.5], "midi": [60, 0, 67]}
    f0 = np.full(150, np.nan)
    f0[:50] = 440 * 2 ** ((60.4 - 69) / 12)  # within 1 semitone of C4
    f0[100:] = 440 * 2 ** ((65 - 69) / 12)  # F4 under a G4: 2 semitones off
    assert bars.note_accuracy(f0, score) == 0.5
    assert bars.note_accuracy(np.full(150, np.nan), score) == 0.0  # nothing voiced


def test_band_measures():
    t = np.arange(SR) / SR
    low = np.sin(2 * np.pi * 500 * t)
    full = low + 0.3 * np.sin(2 * np.pi * 8000 * t)
    assert metrics.log_mel_distance(full, low, SR, max_hz=4000) < 0.05 < metrics.log_mel_distance(full, low, SR)
    assert metrics.band_energy_db(full, SR, 4000) - metrics.band_energy_db(low, SR, 4000) > 40


def test_a_tie_is_never_met():
    bar = bars.Bar("x", "", lambda j, k, p: 0.0, "higher", threshold=0.5, baseline="mismatched")
    assert bars._meets(bar, 0.8, 0.7) and not bars._meets(bar, 0.8, 0.8) and not bars._meets(bar, 0.4, 0.1)
    mean_bar = bars.Bar("y", "", lambda j, k, p: 0.0, "lower", baseline="input")
    assert bars._meets(mean_bar, 1.0, 1.1) and not bars._meets(mean_bar, 1.1, 1.1)
    share_bar = bars.Bar("z", "", lambda j, k, p: 0.0, "lower", threshold=1.0, share=0.5, baseline="mismatched")
    assert bars._meets(share_bar, 0.5, 0.25) and not bars._meets(share_bar, 0.5, 0.5)
    assert not bars._meets(share_bar, float("nan"), 0.0)
