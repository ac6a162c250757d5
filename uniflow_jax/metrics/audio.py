"""Signal metrics for evaluating generated audio against references (numpy, scipy and librosa only).

Every function takes mono float waveforms (any dtype, computed in float64) and, where relevant, the sample
rate. Two waveforms of different lengths are compared over their common length (``si_sdr``,
``log_spectral_distance``) or as documented per function. Settings are module constants so that a report
can state them (``SETTINGS``).
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from scipy.optimize import linear_sum_assignment

LSD_N_FFT = 2048
LSD_HOP = 512
LSD_FLOOR_DB = 80.0  # power floor below the reference's loudest bin
F0_FMIN, F0_FMAX = 60.0, 1000.0
F0_FRAME, F0_HOP = 2048, 240  # pyin frame and hop in samples (10 ms hop at 24 kHz)
MCD_N_FFT, MCD_HOP, MCD_MELS, MCD_COEFFS = 1024, 240, 80, 24
MCD_FLOOR_DB = 80.0  # mel power floor below the loudest bin
ONSET_FRAME, ONSET_HOP = 512, 240
ONSET_RISE_DB = 10.0
ONSET_TOLERANCE = 0.05  # s: ± window of a matched onset
CHROMA_N_FFT, CHROMA_HOP = 4096, 1024
LOG_MEL_N_FFT, LOG_MEL_HOP, LOG_MEL_BANDS = 1024, 256, 80
LOG_MEL_EPS = 1e-8  # added to the mel power: an absolute floor at -80 dB re full scale (silence must stay silent)
ENVELOPE_FRAME, ENVELOPE_HOP = 1024, 240

SETTINGS = {
    "si_sdr": "scale-invariant SDR (Le Roux et al. 2019), both signals zero-mean, over their common length, dB",
    "lsd": (
        f"log-spectral distance: STFT n_fft {LSD_N_FFT}, hop {LSD_HOP}, Hann window, centred frames; "
        f"P = max(|STFT|^2, floor), floor {LSD_FLOOR_DB:g} dB below the reference's loudest bin; mean over frames "
        "of sqrt(mean over bins of (log10 P_ref - log10 P_est)^2); common length; unit: log10 power (a 2x "
        "amplitude error = log10 4 = 0.602)"
    ),
    "f0": (
        f"librosa.pyin fmin {F0_FMIN:g} Hz, fmax {F0_FMAX:g} Hz, frame {F0_FRAME}, hop {F0_HOP} samples; "
        "unvoiced frames are NaN"
    ),
    "mcd": (
        f"mel-cepstral distance with DTW: {MCD_MELS}-band mel power spectrogram (n_fft {MCD_N_FFT}, hop {MCD_HOP}), "
        f"floored {MCD_FLOOR_DB:g} dB below its loudest bin, natural-log amplitude, DCT-II (orthonormal), "
        f"divided by sqrt(2 * {MCD_MELS}) (the scale of a real cepstrum), c1..c{MCD_COEFFS} (c0, the level, dropped); "
        "DTW (librosa, Euclidean) then the mean over the path of (10 / ln 10) * sqrt(2 * sum (c_est - c_ref)^2), dB"
    ),
    "onsets": (
        f"level-rise detector: frame RMS level (frame {ONSET_FRAME}, hop {ONSET_HOP}) in dB re the loudest frame "
        "(80 dB floor); strength = level rise from frame n - 1 to n + 1; peaks picked by librosa.onset.onset_detect "
        f"(unnormalised; local maximum within ±30 ms, at least {ONSET_RISE_DB:g} dB above the ±100 ms mean, "
        "30 ms apart); "
        f"F1 of a maximum one-to-one matching with a ±{ONSET_TOLERANCE * 1000:g} ms tolerance "
        "(both empty: 1, one empty: 0)"
    ),
    "chroma": (
        f"librosa.feature.chroma_stft (n_fft {CHROMA_N_FFT}, hop {CHROMA_HOP}, tuning 0) averaged over time; "
        "cosine similarity of the two 12-bin profiles"
    ),
    "log_mel": (
        f"log-mel distance: {LOG_MEL_BANDS}-band mel power spectrogram (n_fft {LOG_MEL_N_FFT}, hop {LOG_MEL_HOP}, "
        f"Hann, centred, float audio in [-1, 1]); mean over bands and frames of |log10(P_ref + {LOG_MEL_EPS:g}) - "
        f"log10(P_est + {LOG_MEL_EPS:g})|; common length; unit: log10 power"
    ),
    "envelope": (
        f"RMS envelope (frame {ENVELOPE_FRAME}, hop {ENVELOPE_HOP}); Pearson correlation, the shorter "
        "envelope padded with silence"
    ),
}


def _mono(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, np.float64)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio (1-d), got shape {audio.shape}")
    return audio


def _common(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _mono(a), _mono(b)
    n = min(len(a), len(b))
    if n == 0:
        raise ValueError("cannot compare empty audio")
    return a[:n], b[:n]


# ---------------------------------------------------------------------------------------------- waveform


def si_sdr(estimate: np.ndarray, reference: np.ndarray, eps: float = 1e-12) -> float:
    """Scale-invariant signal-to-distortion ratio (dB) of ``estimate`` against ``reference``."""
    est, ref = _common(estimate, reference)
    est, ref = est - est.mean(), ref - ref.mean()
    alpha = np.dot(est, ref) / (np.dot(ref, ref) + eps)
    target = alpha * ref
    noise = est - target
    return float(10 * np.log10((np.dot(target, target) + eps) / (np.dot(noise, noise) + eps)))


# ---------------------------------------------------------------------------------------------- spectra


def power_spectrogram(audio: np.ndarray, n_fft: int = LSD_N_FFT, hop_length: int = LSD_HOP) -> np.ndarray:
    """|STFT|² (bins × frames) with a Hann window and centred frames."""
    import librosa

    return np.abs(librosa.stft(_mono(audio), n_fft=n_fft, hop_length=hop_length, window="hann", center=True)) ** 2


def log_spectral_distance(
    estimate: np.ndarray,
    reference: np.ndarray,
    sample_rate: int,
    *,
    min_hz: float = 0.0,
    max_hz: float | None = None,
    n_fft: int = LSD_N_FFT,
    hop_length: int = LSD_HOP,
    floor_db: float = LSD_FLOOR_DB,
) -> float:
    """Log-spectral distance (log10 power units) over the bins with ``min_hz <= f <= max_hz``. Both power
    spectrograms are floored ``floor_db`` below the reference's loudest bin (of the whole band), so that
    digital silence (an exact zero) or an empty band does not count as an infinite difference."""
    est, ref = _common(estimate, reference)
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    band = (freqs >= min_hz) & (freqs <= (max_hz if max_hz is not None else sample_rate / 2))
    if not band.any():
        raise ValueError(f"no STFT bin between {min_hz} and {max_hz} Hz")
    ref_power, est_power = power_spectrogram(ref, n_fft, hop_length), power_spectrogram(est, n_fft, hop_length)
    floor = max(float(ref_power.max()), 1e-20) * 10 ** (-floor_db / 10)
    diff = np.log10(np.maximum(ref_power[band], floor)) - np.log10(np.maximum(est_power[band], floor))
    return float(np.mean(np.sqrt(np.mean(diff**2, axis=0))))


def log_mel_distance(
    estimate: np.ndarray, reference: np.ndarray, sample_rate: int, *, max_hz: float | None = None
) -> float:
    """Mean |Δ log10 mel power| (see ``SETTINGS["log_mel"]``): 0 for a perfect copy; a spectrogram that is
    recognisably the reference's stays well under 0.5; broadband noise in its place, or faint noise where the
    reference is silent, is above 1. ``max_hz``: only the bands centred at or below it (a kept low band)."""
    import librosa

    est, ref = _common(estimate, reference)
    mel = lambda x: librosa.feature.melspectrogram(  # noqa: E731
        y=x, sr=sample_rate, n_fft=LOG_MEL_N_FFT, hop_length=LOG_MEL_HOP, n_mels=LOG_MEL_BANDS, power=2.0
    )
    diff = np.abs(np.log10(mel(ref) + LOG_MEL_EPS) - np.log10(mel(est) + LOG_MEL_EPS))
    if max_hz is not None:
        centres = librosa.mel_frequencies(n_mels=LOG_MEL_BANDS + 2, fmax=sample_rate / 2)[1:-1]
        diff = diff[centres <= max_hz]
        if not len(diff):
            raise ValueError(f"no mel band centred below {max_hz} Hz")
    return float(np.mean(diff))


def band_energy_db(audio: np.ndarray, sample_rate: int, min_hz: float) -> float:
    """Energy (dB re 1, floored at -200 dB) of the STFT bins at or above ``min_hz`` (n_fft/hop of LSD)."""
    power = power_spectrogram(audio)
    freqs = np.fft.rfftfreq(LSD_N_FFT, 1 / sample_rate)
    return 10.0 * float(np.log10(max(float(power[freqs >= min_hz].sum()), 1e-20)))


def rms_db_difference(estimate: np.ndarray, reference: np.ndarray) -> float:
    """20 log10 (RMS of ``estimate`` / RMS of ``reference``): how much louder (+) or quieter (−) it is."""
    rms = lambda x: max(float(np.sqrt(np.mean(np.square(_mono(x))))), 1e-12)  # noqa: E731
    return 20.0 * float(np.log10(rms(estimate) / rms(reference)))


# ---------------------------------------------------------------------------------------------- pitch


def f0_track(
    audio: np.ndarray,
    sample_rate: int,
    *,
    fmin: float = F0_FMIN,
    fmax: float = F0_FMAX,
    frame_length: int = F0_FRAME,
    hop_length: int = F0_HOP,
) -> np.ndarray:
    """pYIN fundamental frequency (Hz) per frame; NaN where unvoiced. ``1 + len // hop_length`` frames."""
    import librosa

    f0, voiced, _ = librosa.pyin(
        _mono(audio), fmin=fmin, fmax=fmax, sr=sample_rate, frame_length=frame_length, hop_length=hop_length
    )
    return np.where(voiced, f0, np.nan)


def hz_to_midi(f0: np.ndarray) -> np.ndarray:
    """Fractional MIDI note numbers (69 = A4 = 440 Hz); NaN stays NaN, non-positive becomes NaN."""
    f0 = np.asarray(f0, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(f0 > 0, 69 + 12 * np.log2(f0 / 440.0), np.nan)


def stretch_track(track: np.ndarray, length: int) -> np.ndarray:
    """A frame track resampled (nearest frame, first and last frames kept in place) to ``length`` frames:
    compares tracks of different durations by relative position in time."""
    track = np.asarray(track)
    if length <= 0 or len(track) == 0:
        return track[:0]
    if length == 1:
        return track[:1]
    return track[np.round(np.arange(length) * (len(track) - 1) / (length - 1)).astype(int)]


def cents_rmse(f0_estimate: np.ndarray, f0_reference: np.ndarray) -> float:
    """RMS pitch difference in cents over the frames voiced in both tracks (common length); NaN if none."""
    n = min(len(f0_estimate), len(f0_reference))
    est, ref = np.asarray(f0_estimate[:n], np.float64), np.asarray(f0_reference[:n], np.float64)
    joint = np.isfinite(est) & np.isfinite(ref) & (est > 0) & (ref > 0)
    if not joint.any():
        return float("nan")
    return float(np.sqrt(np.mean((1200 * np.log2(est[joint] / ref[joint])) ** 2)))


def semitone_accuracy(f0_estimate: np.ndarray, midi_reference: np.ndarray, tolerance: float = 0.5) -> float:
    """Fraction of frames (voiced in the estimate, a note in the reference: finite and > 0) whose pitch is
    within ``tolerance`` semitones of the reference MIDI pitch (common length); NaN if no such frame."""
    n = min(len(f0_estimate), len(midi_reference))
    est, ref = hz_to_midi(f0_estimate[:n]), np.asarray(midi_reference[:n], np.float64)
    joint = np.isfinite(est) & np.isfinite(ref) & (ref > 0)
    if not joint.any():
        return float("nan")
    return float(np.mean(np.abs(est[joint] - ref[joint]) < tolerance))


def pitch_class_fraction(f0: np.ndarray, pitch_classes: set[int] | frozenset[int]) -> float:
    """Fraction of voiced frames whose nearest semitone belongs to ``pitch_classes`` (0 = C … 11 = B)."""
    midi = hz_to_midi(f0)
    voiced = np.isfinite(midi)
    if not voiced.any():
        return float("nan")
    return float(np.mean(np.isin(np.round(midi[voiced]).astype(int) % 12, sorted(pitch_classes))))


# ---------------------------------------------------------------------------------------------- timbre


def mel_cepstra(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mel cepstra c1..c24 (coefficients × frames) of the natural-log mel amplitude spectrum, floored
    ``MCD_FLOOR_DB`` below its loudest bin (so that silence is flat whatever its noise floor)."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=_mono(audio), sr=sample_rate, n_fft=MCD_N_FFT, hop_length=MCD_HOP, n_mels=MCD_MELS, power=2.0
    )
    floor = max(float(mel.max()), 1e-20) * 10 ** (-MCD_FLOOR_DB / 10)  # silence of either signal is flat
    log_amplitude = 0.5 * np.log(np.maximum(mel, floor))
    # scaled as a real cepstrum: log amplitude(ω) ≈ c0 + 2 Σ c_k cos(kω) over the mel axis
    cepstrum = scipy.fft.dct(log_amplitude, type=2, norm="ortho", axis=0) / np.sqrt(2 * MCD_MELS)
    return cepstrum[1 : MCD_COEFFS + 1]


def mcd_dtw(
    estimate: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    sample_rate: int = 24000,
    *,
    cepstra: tuple[np.ndarray, np.ndarray] | None = None,
) -> float:
    """Mel-cepstral distance (dB) averaged along the DTW path between the two cepstrum sequences. Pass
    waveforms, or ``cepstra=(estimate, reference)`` from ``mel_cepstra`` to reuse them."""
    import librosa

    est, ref = (
        cepstra if cepstra is not None else (mel_cepstra(estimate, sample_rate), mel_cepstra(reference, sample_rate))
    )
    _, path = librosa.sequence.dtw(X=est, Y=ref, metric="euclidean")
    diff = est[:, path[:, 0]] - ref[:, path[:, 1]]
    return float(np.mean(10 / np.log(10) * np.sqrt(2 * np.sum(diff**2, axis=0))))


def chroma_profile(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The time-averaged 12-bin chroma (C … B) of librosa's ``chroma_stft``."""
    import librosa

    chroma = librosa.feature.chroma_stft(
        y=_mono(audio), sr=sample_rate, n_fft=CHROMA_N_FFT, hop_length=CHROMA_HOP, tuning=0.0
    )
    return chroma.mean(axis=1)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity; 0 when either vector is zero."""
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norm) if norm > 0 else 0.0


def chroma_similarity(a: np.ndarray, b: np.ndarray, sample_rate: int) -> float:
    """Cosine similarity of the time-averaged chroma profiles (key and pitch content, not note order)."""
    return cosine(chroma_profile(a, sample_rate), chroma_profile(b, sample_rate))


# ---------------------------------------------------------------------------------------------- timing


def onset_strength(audio: np.ndarray, sample_rate: int, hop_length: int = ONSET_HOP) -> np.ndarray:
    """Level rise (dB, ≥ 0) per frame: the RMS level (dB re the loudest frame, floored 80 dB below it) of
    frame n + 1 minus that of frame n - 1. Frame n is centred at n · hop."""
    import librosa

    rms = librosa.feature.rms(y=_mono(audio), frame_length=ONSET_FRAME, hop_length=hop_length)[0]
    level = librosa.amplitude_to_db(rms, ref=np.max, top_db=80.0)
    rise = np.zeros_like(level)
    rise[1:-1] = np.maximum(0.0, level[2:] - level[:-2])
    return rise


def onset_times(audio: np.ndarray, sample_rate: int, hop_length: int = ONSET_HOP) -> np.ndarray:
    """Onset times (s): local maxima (within ±30 ms) of ``onset_strength`` at least ``ONSET_RISE_DB`` above
    its mean over ±100 ms, picked by ``librosa.onset.onset_detect``. A rise in level, unlike spectral flux,
    ignores the broadband splatter of a sound's abrupt end."""
    import librosa

    frames = lambda seconds: max(1, round(seconds * sample_rate / hop_length))  # noqa: E731
    return librosa.onset.onset_detect(
        onset_envelope=onset_strength(audio, sample_rate, hop_length),
        sr=sample_rate,
        hop_length=hop_length,
        units="time",
        normalize=False,
        delta=ONSET_RISE_DB,
        pre_max=frames(0.03),
        post_max=frames(0.03) + 1,
        pre_avg=frames(0.1),
        post_avg=frames(0.1) + 1,
        wait=frames(0.03),
    )


def onset_f1(estimate: np.ndarray, reference: np.ndarray, tolerance: float = ONSET_TOLERANCE) -> float:
    """F1 of onset times (s): pairs within ``tolerance`` matched one to one (a maximum matching, as
    ``mir_eval.onset``); 1 when both are empty, 0 when only one is."""
    est, ref = np.asarray(estimate, np.float64), np.asarray(reference, np.float64)
    if len(est) == 0 and len(ref) == 0:
        return 1.0
    if len(est) == 0 or len(ref) == 0:
        return 0.0
    close = np.abs(est[:, None] - ref[None, :]) <= tolerance + 1e-9
    rows, cols = linear_sum_assignment(~close)  # cost 0 for a close pair, 1 otherwise: most close pairs
    matched = int(close[rows, cols].sum())
    return 2 * matched / (len(est) + len(ref))


def rms_envelope(audio: np.ndarray) -> np.ndarray:
    """Frame RMS (frame 1024, hop 240 samples)."""
    import librosa

    return librosa.feature.rms(y=_mono(audio), frame_length=ENVELOPE_FRAME, hop_length=ENVELOPE_HOP)[0]


def envelope_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the RMS envelopes (shorter padded with silence); 0 if either is constant."""
    ea, eb = rms_envelope(a), rms_envelope(b)
    n = max(len(ea), len(eb))
    ea, eb = np.pad(ea, (0, n - len(ea))), np.pad(eb, (0, n - len(eb)))
    if ea.std() == 0 or eb.std() == 0:
        return 0.0
    return float(np.corrcoef(ea, eb)[0, 1])


def tempo_bpm(audio: np.ndarray, sample_rate: int, hop_length: int = ONSET_HOP) -> float:
    """Global tempo (beats per minute): librosa's tempogram estimate over its spectral-flux onset envelope (its
    default log-normal prior around 120 BPM); it can be off by an octave (half or double)."""
    import librosa

    envelope = librosa.onset.onset_strength(y=_mono(audio), sr=sample_rate, hop_length=hop_length)
    return float(librosa.feature.tempo(onset_envelope=envelope, sr=sample_rate, hop_length=hop_length)[0])


def sweep_directions(audio: np.ndarray, sample_rate: int) -> list[int]:
    """+1 / -1 for every sustained sound (≥ 100 ms within 25 dB of the loudest frame) whose strongest STFT bin
    rises / falls monotonically (Spearman ρ of log frequency against time beyond ±0.8); steady or noisy sounds
    give nothing. A chirp counts, a beep or a burst does not."""
    import librosa
    from scipy import stats

    hop = sample_rate // 100
    power = np.abs(librosa.stft(_mono(audio), n_fft=1024, hop_length=hop)) ** 2
    energy = power.sum(axis=0)
    loud = energy > energy.max() * 10 ** (-2.5)
    peak = np.log(librosa.fft_frequencies(sr=sample_rate, n_fft=1024)[power.argmax(axis=0)] + 1.0)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(np.int8), [0]])))
    directions = []
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        if end - start < 10 or np.ptp(peak[start:end]) == 0:
            continue
        rho = stats.spearmanr(np.arange(end - start), peak[start:end]).statistic
        if abs(rho) > 0.8:
            directions.append(int(np.sign(rho)))
    return directions
