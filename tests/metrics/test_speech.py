"""PESQ, STOI and DNSMOS through their packages, on speech with known orderings and limits."""

import numpy as np
import pytest

from uniflow_jax.metrics import speech


def test_pesq_of_identical_speech_is_the_wideband_maximum(speech16k):
    # P.862.2's MOS-LQO mapping tops out at 4.644 for a raw score of 4.5 (a perfect match)
    assert speech.pesq_wb(speech16k, speech16k) == pytest.approx(4.644, abs=1e-3)


def test_pesq_falls_with_noise_and_rejects_silence(speech16k, noisy):
    scores = [speech.pesq_wb(speech16k, noisy(snr)) for snr in (40, 20, 0)]
    assert 4.644 > scores[0] > scores[1] > scores[2] >= 1.0
    with pytest.raises(speech.UnscorableError, match="NoUtterancesError"):
        speech.pesq_wb(np.zeros(32000), np.zeros(32000))


def test_stoi_is_one_for_identical_speech_and_falls_with_noise(speech16k, noisy):
    assert speech.stoi(speech16k, speech16k) == pytest.approx(1.0, abs=1e-9)
    scores = [speech.stoi(speech16k, noisy(snr)) for snr in (20, 5, -5)]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0


def test_both_use_the_common_length(speech16k):
    longer = np.concatenate([speech16k, np.ones(1000)])
    assert speech.pesq_wb(speech16k, longer) == pytest.approx(4.644, abs=1e-3)
    assert speech.stoi(longer, speech16k) == pytest.approx(1.0, abs=1e-9)


def test_dnsmos_scores_noise_as_intrusive(speech16k, noisy):
    clean, degraded = speech.dnsmos(speech16k), speech.dnsmos(noisy(0))
    assert set(clean) == {"sig", "bak", "ovrl", "p808"}
    assert all(1.0 <= v <= 5.0 for v in (*clean.values(), *degraded.values()))
    assert clean["bak"] > degraded["bak"] + 1.0  # background intrusiveness: white noise at 0 dB
    assert clean["ovrl"] > degraded["ovrl"]
