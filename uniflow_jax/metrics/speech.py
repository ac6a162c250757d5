"""Speech-quality scores from their reference packages: wide-band PESQ (``pesq``, ITU-T P.862.2), STOI
(``pystoi``) and DNSMOS P.835 (``speechmos``, whose wheel ships Microsoft's ONNX models, so it runs offline).
All take 16 kHz mono audio: the rate of wide-band PESQ and of DNSMOS, and the rate SE results are quoted at.
"""

from __future__ import annotations

import numpy as np

from uniflow_jax.metrics.optional import require

SAMPLE_RATE = 16000

SETTINGS = {
    "pesq_wb": "wide-band PESQ (ITU-T P.862.2, MOS-LQO 1.04-4.64) of the pesq package at 16 kHz",
    "stoi": "STOI (Taal et al. 2011) of the pystoi package (internally at 10 kHz), 0-1",
    "dnsmos": (
        "DNSMOS P.835 (no reference) of the speechmos package at 16 kHz: sig, bak, ovrl (1-5) and P.808 MOS, "
        "mean over 9.01 s windows (shorter clips repeated to 9.01 s), audio clipped to [-1, 1]"
    ),
}


class UnscorableError(ValueError):
    """An item a metric cannot score (PESQ finds no utterance in it, say): reported, not averaged."""


def pesq_wb(reference: np.ndarray, degraded: np.ndarray) -> float:
    """Wide-band PESQ of ``degraded`` against ``reference`` (16 kHz, common length)."""
    pesq = require("pesq")
    n = min(len(reference), len(degraded))
    try:
        with np.errstate(invalid="ignore", divide="ignore"):  # pesq normalises digital silence by 0 first
            return float(pesq.pesq(SAMPLE_RATE, np.asarray(reference[:n]), np.asarray(degraded[:n]), "wb"))
    except pesq.PesqError as error:  # NoUtterancesError, BufferTooShortError, ...
        raise UnscorableError(f"PESQ: {type(error).__name__}") from None


def stoi(reference: np.ndarray, degraded: np.ndarray) -> float:
    """Short-time objective intelligibility of ``degraded`` against ``reference`` (16 kHz, common length)."""
    pystoi = require("pystoi")
    n = min(len(reference), len(degraded))
    return float(pystoi.stoi(np.asarray(reference[:n], np.float64), np.asarray(degraded[:n], np.float64), SAMPLE_RATE))


def dnsmos(audio: np.ndarray) -> dict[str, float]:
    """DNSMOS of one 16 kHz clip: ``{"sig", "bak", "ovrl", "p808"}`` (higher is better)."""
    module = require("speechmos.dnsmos", "speechmos (and onnxruntime)")
    scores = module.run(np.clip(np.asarray(audio, np.float32), -1.0, 1.0), SAMPLE_RATE)
    return {name: float(scores[f"{name}_mos"]) for name in ("sig", "bak", "ovrl", "p808")}
