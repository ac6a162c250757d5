"""Loizou's segSNR, LLR and WSS and the Hu & Loizou composite scores on cases with known answers."""

import math

import numpy as np
import pytest
from scipy import signal

from uniflow_jax.metrics import composite

SR = 16000


def tones(seconds: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(int(seconds * SR)) / SR
    return np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 1530 * t)


def chirp_pair() -> tuple[np.ndarray, np.ndarray]:
    """A deterministic pair (no RNG) for the reference values below."""
    t = np.arange(SR) / SR
    clean = signal.chirp(t, 150, 1.0, 3000) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    processed = signal.lfilter([1.0, 0.4], [1.0, -0.3], clean) + 0.05 * signal.chirp(t, 4000, 1.0, 500)
    return clean, processed


@pytest.mark.parametrize("snr", [0.0, 5.0, 15.0, 30.0])
def test_segsnr_of_a_tone_plus_a_scaled_tone_is_the_snr(snr):
    # both tones fill every 30 ms frame evenly, so every frame has the SNR of the whole signal
    clean, noise = tones()
    processed = clean + noise * 10 ** (-snr / 20)
    assert composite.segmental_snr(clean, processed, SR) == pytest.approx(snr, abs=0.1)


def test_segsnr_of_a_scaled_copy_and_the_clipping_range():
    # processed = 0.9 clean: the error is 0.1 clean in every frame, 20 dB exactly (where the frame is not silent)
    clean, noise = tones()
    assert composite.segmental_snr(clean, 0.9 * clean, SR) == pytest.approx(20.0, abs=1e-9)
    assert composite.segmental_snr(clean, clean, SR) == 35.0  # the upper clip
    assert composite.segmental_snr(clean, clean + 100 * noise, SR) == -10.0  # the lower clip
    with pytest.raises(ValueError, match="too short"):
        composite.segmental_snr(clean[:599], clean[:599], SR)


def test_llr_and_wss_are_zero_for_identical_and_gain_changed_signals(speech16k):
    for processed in (speech16k, 2.0 * speech16k, 0.3 * speech16k):
        # not exactly 0: composite.m adds machine epsilon to both signals, which breaks the scale invariance
        assert composite.log_likelihood_ratio(speech16k, processed, SR) == pytest.approx(0.0, abs=1e-5)
        assert composite.weighted_spectral_slope(speech16k, processed, SR) == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize(("a", "b"), [(0.9, 0.5), (0.8, 0.0), (0.5, -0.5)])
def test_llr_of_two_ar1_processes_is_the_itakura_closed_form(a, b):
    # clean AR(1) with pole a, processed AR(1) with pole b: the processed predictor [1, -b] leaves
    # R0 (1 + b² - 2ab) of clean error against the clean predictor's R0 (1 - a²). The order-16 fit on
    # 30 ms frames overestimates it slightly (about +0.08); the swapped roles would give a far smaller value.
    rng = np.random.default_rng(0)
    clean = signal.lfilter([1.0], [1.0, -a], rng.standard_normal(4 * SR))
    processed = signal.lfilter([1.0], [1.0, -b], rng.standard_normal(4 * SR))
    expected = math.log((1 + b * b - 2 * a * b) / (1 - a * a))
    assert composite.log_likelihood_ratio(clean, processed, SR) == pytest.approx(expected, abs=0.12)


def test_reference_implementation_values():
    # pysepm (the Python port of Loizou's composite.m, as pysepm-evo 0.1.1) on the same pair gives
    # SNRseg 0.8717118541010979, llr(used_for_composite=True) 1.249716746733304, wss 199.04212649027644
    clean, processed = chirp_pair()
    assert composite.segmental_snr(clean, processed, SR) == pytest.approx(0.8717118541010979, rel=1e-9)
    assert composite.log_likelihood_ratio(clean, processed, SR) == pytest.approx(1.249716746733304, rel=1e-4)
    assert composite.weighted_spectral_slope(clean, processed, SR) == pytest.approx(199.04212649027644, rel=1e-9)


def test_distortion_grows_with_noise(noisy, speech16k):
    llr = [composite.log_likelihood_ratio(speech16k, noisy(snr), SR) for snr in (30, 10, 0)]
    wss = [composite.weighted_spectral_slope(speech16k, noisy(snr), SR) for snr in (30, 10, 0)]
    assert 0 < llr[0] < llr[1] < llr[2]
    assert 0 < wss[0] < wss[1] < wss[2]


def test_composite_formulas():
    # Hu & Loizou (2008), eqs. for Csig, Cbak, Covl, by hand for PESQ 2.5, LLR 0.5, WSS 30, segSNR 5
    scores = composite.composite_measures(pesq=2.5, llr=0.5, wss=30.0, segsnr=5.0)
    assert scores["csig"] == pytest.approx(3.093 - 1.029 * 0.5 + 0.603 * 2.5 - 0.009 * 30)  # 3.8135
    assert scores["cbak"] == pytest.approx(1.634 + 0.478 * 2.5 - 0.007 * 30 + 0.063 * 5)  # 2.934
    assert scores["covl"] == pytest.approx(1.594 + 0.805 * 2.5 - 0.512 * 0.5 - 0.007 * 30)  # 3.1405
    # identical signals (PESQ 4.64, LLR 0, WSS 0, segSNR 35) exceed the scale: all clipped to 5
    assert composite.composite_measures(4.644, 0.0, 0.0, 35.0) == {"csig": 5.0, "cbak": 5.0, "covl": 5.0}
    assert composite.composite_measures(1.0, 3.0, 120.0, -10.0) == {"csig": 1.0, "cbak": 1.0, "covl": 1.0}
