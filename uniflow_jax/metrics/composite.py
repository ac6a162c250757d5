"""Loizou's objective speech-quality measures and the composite CSIG/CBAK/COVL of Hu & Loizou (2008),
"Evaluation of objective quality measures for speech enhancement", IEEE TASLP 16(1): 229-238.

The composite scores are regressions fitted on the outputs of Loizou's MATLAB code (``composite.m``, with
``snr.m``, ``llr.m`` and ``wss.m``), so this module follows that code, quirks included: both signals cut to
the common length with machine epsilon added; 30 ms frames, hop a quarter frame, MATLAB's ``hanning``
window ``0.5 (1 - cos(2π n / (N + 1)))``, n = 1..N; ``floor((len - N) / hop)`` frames (the last full frame
dropped, as the MATLAB loop does); LLR and WSS averaged over the best 95 % of frames. SE papers on VoiceBank
+ DEMAND feed the regressions with wide-band PESQ at 16 kHz, as :func:`composite_measures` expects.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

FRAME_SECONDS = 0.03
SEGSNR_RANGE_DB = (-10.0, 35.0)
TRIM_FRACTION = 0.95  # LLR and WSS: mean over the lowest 95 % of frame distortions
WSS_KMAX, WSS_KLOCMAX = 20.0, 1.0  # Klatt's weights (1982, p. 1280)
# Klatt's 25 critical bands (Hz), as wss.m
WSS_CENTRES = np.array([
    50.0, 120.0, 190.0, 260.0, 330.0, 400.0, 470.0, 540.0, 617.372, 703.378, 798.717, 904.128, 1020.38,
    1148.30, 1288.72, 1442.54, 1610.70, 1794.16, 1993.93, 2211.08, 2446.71, 2701.97, 2978.04, 3276.17, 3597.63,
])  # fmt: skip
WSS_BANDWIDTHS = np.array([
    70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 77.3724, 86.0056, 95.3398, 105.411, 116.256, 127.914, 140.423,
    153.823, 168.154, 183.457, 199.776, 217.153, 235.631, 255.255, 276.072, 298.126, 321.465, 346.136,
])  # fmt: skip

SETTINGS = {
    "segsnr": (
        "segmental SNR (Loizou snr.m): 30 ms Hann frames, hop 7.5 ms, per-frame SNR clipped to [-10, 35] dB, "
        "mean over frames, dB"
    ),
    "composite": (
        "CSIG/CBAK/COVL (Hu & Loizou 2008) from wide-band PESQ, LLR (LPC order 16 at 16 kHz), WSS (Klatt, 25 "
        "bands) and segSNR at 16 kHz as Loizou's composite.m (best 95 % of frames for LLR and WSS), each "
        "clipped to [1, 5]"
    ),
}


def _frames(clean: np.ndarray, processed: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Windowed frames (frames × samples) of both signals, as Loizou's measures cut them."""
    clean, processed = (np.asarray(x, np.float64) for x in (clean, processed))
    if clean.ndim != 1 or processed.ndim != 1:
        raise ValueError(f"expected mono audio, got shapes {clean.shape} and {processed.shape}")
    n = min(len(clean), len(processed))
    length = round(FRAME_SECONDS * sample_rate)
    hop = length // 4
    count = (n - length) // hop
    if count < 1:
        raise ValueError(f"{n} samples: too short for these measures (at least {length + hop} at {sample_rate} Hz)")
    eps = np.finfo(np.float64).eps
    window = 0.5 * (1 - np.cos(2 * np.pi * np.arange(1, length + 1) / (length + 1)))

    def cut(x: np.ndarray) -> np.ndarray:
        return np.lib.stride_tricks.sliding_window_view(x[:n] + eps, length)[::hop][:count] * window

    return cut(clean), cut(processed)


def _trimmed_mean(values: np.ndarray) -> float:
    return float(np.mean(np.sort(values)[: round(len(values) * TRIM_FRACTION)]))


def segmental_snr(clean: np.ndarray, processed: np.ndarray, sample_rate: int) -> float:
    """Segmental SNR (dB) of ``processed`` against ``clean``: the mean over frames of the frame SNR clipped to
    [-10, 35] dB, so that silent frames neither dominate nor vanish. As in snr.m, a frame of digital silence
    in ``clean`` scores -10 dB even when ``processed`` equals it (real recordings have a noise floor)."""
    c, p = _frames(clean, processed, sample_rate)
    eps = np.finfo(np.float64).eps
    snr = 10 * np.log10(np.sum(c**2, axis=1) / (np.sum((c - p) ** 2, axis=1) + eps) + eps)
    return float(np.mean(np.clip(snr, *SEGSNR_RANGE_DB)))


def _autocorrelation(frames: np.ndarray, order: int) -> np.ndarray:
    """Lags 0..order of every frame (frames × order + 1)."""
    width = frames.shape[1]
    return np.stack([np.sum(frames[:, : width - k] * frames[:, k:], axis=1) for k in range(order + 1)], axis=1)


def _lpc(r: np.ndarray) -> np.ndarray:
    """Prediction-error filter ``[1, -a_1 .. -a_p]`` from autocorrelation lags (the Levinson-Durbin solution)."""
    return np.concatenate([[1.0], -scipy.linalg.solve_toeplitz(r[:-1], r[1:])])


def log_likelihood_ratio(clean: np.ndarray, processed: np.ndarray, sample_rate: int) -> float:
    """Log-likelihood ratio (Itakura): per frame ``log(a_p R_c a_pᵀ / a_c R_c a_cᵀ)``, the extra prediction
    error of the processed frame's LPC filter on the clean frame (≥ 0, gain-invariant); LPC order 10 below
    10 kHz, else 16; mean over the best 95 % of frames (composite.m: no clipping at 2)."""
    c, p = _frames(clean, processed, sample_rate)
    order = 10 if sample_rate < 10000 else 16
    r_clean, r_processed = _autocorrelation(c, order), _autocorrelation(p, order)
    ratios = []
    for rc, rp in zip(r_clean, r_processed, strict=True):
        toeplitz = scipy.linalg.toeplitz(rc)
        a_clean, a_processed = _lpc(rc), _lpc(rp)
        ratios.append((a_processed @ toeplitz @ a_processed) / (a_clean @ toeplitz @ a_clean))
    return _trimmed_mean(np.log(np.asarray(ratios)))


def _critical_band_filters(sample_rate: int, half_fft: int) -> np.ndarray:
    """wss.m's 25 Gaussian-shaped critical-band filters over FFT bins 0..half_fft - 1 (bands × bins), gains
    normalised to the narrowest band, values under the -30 dB point zeroed."""
    bins = np.arange(half_fft)
    centres = np.floor(WSS_CENTRES / (sample_rate / 2) * half_fft)
    widths = WSS_BANDWIDTHS / (sample_rate / 2) * half_fft
    gains = np.log(WSS_BANDWIDTHS[0]) - np.log(WSS_BANDWIDTHS)
    filters = np.exp(-11 * ((bins[None, :] - centres[:, None]) / widths[:, None]) ** 2 + gains[:, None])
    return filters * (filters > np.exp(-30.0 / (2.0 * 2.303)))


def _nearest_peaks(slope: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """wss.m's nearest spectral peak of every band: up the slope to the right (taking the band before the
    turn, as the MATLAB code does) or to the left."""
    last = len(energy) - 1
    peaks = np.empty_like(slope)
    for i in range(len(slope)):
        n = i
        if slope[i] > 0:
            while n < last and slope[n] > 0:
                n += 1
            peaks[i] = energy[n - 1]
        else:
            while n >= 0 and slope[n] <= 0:
                n -= 1
            peaks[i] = energy[n + 1]
    return peaks


def weighted_spectral_slope(clean: np.ndarray, processed: np.ndarray, sample_rate: int) -> float:
    """Klatt's weighted spectral slope distance: squared differences of the critical-band log-energy slopes,
    weighted towards spectral peaks and loud bands; mean over the best 95 % of frames (lower is better)."""
    c, p = _frames(clean, processed, sample_rate)
    n_fft = int(2 ** np.ceil(np.log2(2 * c.shape[1])))
    filters = _critical_band_filters(sample_rate, n_fft // 2)

    def band_energy_db(frames: np.ndarray) -> np.ndarray:
        spectrum = np.abs(np.fft.fft(frames, n_fft, axis=1)[:, : n_fft // 2]) ** 2
        return 10 * np.log10(np.maximum(spectrum @ filters.T, 1e-10))

    distortions = []
    for ec, ep in zip(band_energy_db(c), band_energy_db(p), strict=True):
        weights = []
        for energy in (ec, ep):
            slope = np.diff(energy)
            w_max = WSS_KMAX / (WSS_KMAX + energy.max() - energy[:-1])
            w_peak = WSS_KLOCMAX / (WSS_KLOCMAX + _nearest_peaks(slope, energy) - energy[:-1])
            weights.append(w_max * w_peak)
        w = (weights[0] + weights[1]) / 2
        distortions.append(np.sum(w * (np.diff(ec) - np.diff(ep)) ** 2) / np.sum(w))
    return _trimmed_mean(np.asarray(distortions))


def composite_measures(pesq: float, llr: float, wss: float, segsnr: float) -> dict[str, float]:
    """Hu & Loizou's regressions of listener ratings (signal distortion, background intrusiveness, overall),
    each clipped to the 1–5 MOS scale."""
    scores = {
        "csig": 3.093 - 1.029 * llr + 0.603 * pesq - 0.009 * wss,
        "cbak": 1.634 + 0.478 * pesq - 0.007 * wss + 0.063 * segsnr,
        "covl": 1.594 + 0.805 * pesq - 0.512 * llr - 0.007 * wss,
    }
    return {name: float(np.clip(value, 1.0, 5.0)) for name, value in scores.items()}
