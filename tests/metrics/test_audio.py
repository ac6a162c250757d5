"""Signal metrics on signals with known answers."""

import math

import numpy as np
import pytest

from uniflow_jax.metrics import audio

SR = 24000


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 0.1


def sine(freq: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return 0.5 * np.sin(2 * np.pi * freq * t)


def clicks(times: list[float], seconds: float = 2.0) -> np.ndarray:
    x = np.zeros(int(seconds * SR))
    rng = np.random.default_rng(1)
    for t in times:
        start = int(t * SR)
        x[start : start + 240] += rng.standard_normal(240) * np.exp(-np.arange(240) / 48)
    return x


def test_si_sdr_identical_is_very_large():
    x = noise(1.0)
    assert audio.si_sdr(x, x) > 100


@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0])
def test_si_sdr_of_added_noise_is_the_snr(snr):
    x, n = noise(2.0, 0), noise(2.0, 1)
    n *= np.sqrt(np.sum(x**2) / np.sum(n**2) / 10 ** (snr / 10))
    assert audio.si_sdr(x + n, x) == pytest.approx(snr, abs=0.5)


def test_si_sdr_is_scale_invariant():
    x, n = sine(440.0), noise(1.0, 2)
    value = audio.si_sdr(x + n, x)
    assert audio.si_sdr(3.0 * (x + n), x) == pytest.approx(value, abs=1e-6)
    assert audio.si_sdr(x + n, 0.2 * x) == pytest.approx(value, abs=1e-6)


def test_si_sdr_uses_the_common_length():
    x = noise(1.0)
    assert audio.si_sdr(np.concatenate([x, noise(0.5, 3)]), x) > 100


def test_lsd_identical_is_zero():
    x = noise(1.0)
    assert audio.log_spectral_distance(x, x, SR) == pytest.approx(0.0, abs=1e-12)


def test_lsd_of_double_amplitude_is_log10_of_four():
    # power ×4 in every bin above the floor: every frame's RMS log10 difference is log10(4) = 20·log10(2)/10
    x = noise(2.0)
    assert audio.log_spectral_distance(2 * x, x, SR) == pytest.approx(math.log10(4), abs=1e-6)
    assert audio.log_spectral_distance(x, 2 * x, SR, min_hz=4000) == pytest.approx(math.log10(4), abs=1e-6)


def test_lsd_high_band_sees_a_missing_band():
    from scipy import signal

    x = noise(1.0)
    low = signal.sosfiltfilt(signal.butter(8, 3000, fs=SR, output="sos"), x)
    full = audio.log_spectral_distance(low, x, SR)
    high = audio.log_spectral_distance(low, x, SR, min_hz=4000)
    assert high > full > 1.0
    assert audio.log_spectral_distance(low, x, SR, max_hz=2000) < 0.05
    # digital silence in both signals costs nothing (the floor)
    padded = np.concatenate([x, np.zeros(SR)])
    assert audio.log_spectral_distance(padded, padded, SR) == 0.0


def test_onset_f1_of_click_trains():
    times = [0.3, 0.8, 1.2, 1.6]
    x = clicks(times)
    found = audio.onset_times(x, SR)
    assert len(found) == len(times) and np.max(np.abs(found - times)) < 0.02
    assert audio.onset_f1(found, audio.onset_times(x, SR)) == 1.0
    shifted = audio.onset_times(clicks([t + 0.2 for t in times], 2.2), SR)
    assert audio.onset_f1(shifted, found) == 0.0
    assert audio.onset_f1(found, times) == 1.0


def test_onset_f1_matching():
    assert audio.onset_f1([0.1, 0.5], [0.13, 0.9]) == pytest.approx(0.5)
    assert audio.onset_f1([0.1, 0.12], [0.11]) == pytest.approx(2 / 3)  # one to one
    assert audio.onset_f1([0.1], [0.149]) == 1.0 and audio.onset_f1([0.1], [0.16]) == 0.0
    assert audio.onset_f1([], []) == 1.0 and audio.onset_f1([0.1], []) == 0.0


def test_cents_rmse_of_a_semitone_shift():
    a = audio.f0_track(sine(220.0), SR)
    b = audio.f0_track(sine(220.0 * 2 ** (1 / 12)), SR)
    assert np.isfinite(a).mean() > 0.8
    assert audio.cents_rmse(b, a) == pytest.approx(100.0, abs=3.0)
    assert audio.cents_rmse(a, a) == 0.0
    assert math.isnan(audio.cents_rmse(a, np.full_like(a, np.nan)))


def test_semitone_accuracy_and_pitch_classes():
    f0 = audio.f0_track(sine(440.0), SR)
    assert audio.semitone_accuracy(f0, np.full(len(f0), 69.0)) == pytest.approx(1.0)
    assert audio.semitone_accuracy(f0, np.full(len(f0), 70.0)) == 0.0
    assert math.isnan(audio.semitone_accuracy(f0, np.zeros(len(f0))))  # rests only
    assert audio.pitch_class_fraction(f0, {9}) == pytest.approx(1.0)  # A
    assert audio.pitch_class_fraction(f0, {0, 2, 4}) == 0.0


def test_stretch_track():
    np.testing.assert_array_equal(audio.stretch_track(np.array([1, 2]), 4), [1, 1, 2, 2])
    np.testing.assert_array_equal(audio.stretch_track(np.array([1, 2, 3, 4]), 2), [1, 4])


def test_chroma_similarity():
    c_major = sine(261.63) + sine(329.63) + sine(392.0)
    f_sharp = sine(369.99) + sine(466.16) + sine(554.37)
    assert audio.chroma_similarity(c_major, c_major, SR) == pytest.approx(1.0)
    assert audio.chroma_similarity(c_major, f_sharp, SR) < 0.5


def test_mcd_and_envelope():
    x, y = noise(1.0, 0) + sine(300.0), sine(1200.0)
    assert audio.mcd_dtw(x, x, SR) == pytest.approx(0.0, abs=1e-9)
    assert audio.mcd_dtw(y, x, SR) > 1.0
    assert audio.envelope_correlation(x, x) == pytest.approx(1.0)
    assert audio.envelope_correlation(clicks([0.3, 1.2]), clicks([0.8, 1.6])) < 0.2
    assert audio.envelope_correlation(np.zeros(SR), x) == 0.0


def test_log_mel_distance_zero_for_a_copy_log10_4_for_double_amplitude_and_large_for_noise():
    tone = sine(440.0) + 0.01 * noise(1.0)
    assert audio.log_mel_distance(tone, tone, SR) == pytest.approx(0.0, abs=1e-12)
    assert audio.log_mel_distance(2 * tone, tone, SR) == pytest.approx(math.log10(4), rel=1e-2)  # less near the floor
    # broadband noise of the same loudness in place of a tone: far above a recognisable copy (< 0.5)
    assert audio.log_mel_distance(noise(1.0) * 0.5 / 0.1 / math.sqrt(2), tone, SR) > 1.0


def test_rms_db_difference():
    tone = sine(440.0)
    assert audio.rms_db_difference(tone, tone) == pytest.approx(0.0, abs=1e-9)
    assert audio.rms_db_difference(tone / 2, tone) == pytest.approx(-20 * math.log10(2), rel=1e-9)
