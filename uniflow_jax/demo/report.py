"""Evaluation of the demo corpus (``uniflow_jax.demo.corpus``): sampler requests for held-out rows, and a report
of per-task figures that show whether a model trained on the corpus learnt its conditioning.

    python -m uniflow_jax.demo.report requests --corpus DEMO --out REQ_DIR [--per_task 4]
    python -m uniflow_jax.demo.report report --corpus DEMO --generated GEN_DIR --out report.json [--per_task 4]
        [--codec ROUND_TRIPS]

``requests`` writes ``REQ_DIR/requests.jsonl``: the first ``per_task`` rows of every task's split, one JSON
object per line, ``{"id": <audio_id>, "task": <short id>, ...}`` with the remaining fields named like
``uniflow_jax.sample``'s flags (t2a/t2m ``caption``, ``duration``; tts ``phonemes``, ``speaker_embedding``;
svs ``score_phonemes``, ``score_notes``, ``score_durations``, ``score_slurs``, ``singer``; se
``noisy_speech``; sr ``low_sr_audio``; v2a ``video``); paths are absolute.

``report`` reads ``GEN_DIR/<task>/<id>.wav`` (24 kHz mono) for the same rows and judges each task by its bars
(``demo.bars``: model vs fair baseline vs the codec's ceiling, from the round trips in ``--codec``), then gives
diagnostic figures: against the clean target and the model's input where the task has one (SE, SR: output vs input),
and otherwise against the item's own reference versus the other items' references ("own vs mismatched": a
model that follows its conditioning is closer to its own reference). Missing or unreadable files are
counted; a file at another sample rate is an error. Metric definitions: ``uniflow_jax.metrics.audio``. It also
writes ``report.html`` (open it in a browser) and ``report.png`` beside the JSON (``demo.page``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import re
from collections.abc import Callable, Sequence

import h5py
import numpy as np
import soundfile as sf
from absl import app, flags

from uniflow_jax import cli, tasks
from uniflow_jax.frontends import symbols
from uniflow_jax.frontends.symbols import note_to_midi
from uniflow_jax.metrics import audio as metrics
from uniflow_jax.metrics import speech

SAMPLE_RATE = 24000
HIGH_BAND_HZ = 4000.0
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
_KEY = re.compile(r"\bin ([A-G][b#]?) (major|minor)\b")

SETTINGS = {
    **metrics.SETTINGS,
    "sample_rate": f"{SAMPLE_RATE} Hz mono; a generated file at another rate is an error",
    "own_vs_mismatched": (
        "metric(generated i, reference i) vs the mean of metric(generated i, reference j) over the other "
        "evaluated items j of the task; an item counts as favouring its own reference when strictly better"
    ),
    "time_alignment": (
        "F0 tracks and score tracks of different lengths are compared after stretching the generated track to "
        "the reference's frame count (nearest frame: by relative position in time); waveform metrics use the "
        "common length"
    ),
    "lsd_high": f"LSD over the bins at or above {HIGH_BAND_HZ:g} Hz",
    "score_semitone_accuracy": (
        "fraction of frames voiced in the generated audio and under a note of the score (rests excluded) whose "
        "pitch is within 0.5 semitone of the note; the score's phone durations set its time line"
    ),
    "melody_semitone_agreement": "the same, with the reference's F0 track (voiced frames) as the note track",
    "scale_fraction": "fraction of voiced frames whose nearest semitone lies in the key named by the caption",
    "pesq_wb": "wide-band PESQ at 16 kHz (resampled 3:2) when the pesq package is installed (the eval extra)",
    "stoi": "STOI at 16 kHz when the pystoi package is installed (the eval extra)",
}


# ---------------------------------------------------------------------------------------------- corpus


@dataclasses.dataclass(frozen=True)
class Item:
    """One row of a task's split: its content row and the absolute path of its target wav."""

    id: str
    task: str
    folder: pathlib.Path
    content: dict
    target: pathlib.Path


def _jsonl(path: pathlib.Path) -> list[dict]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (is --corpus a demo corpus from uniflow_jax.demo.corpus?)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_items(corpus: str | pathlib.Path, task: str, *, split: str = "val", per_task: int = 4) -> list[Item]:
    """The first ``per_task`` rows (all when ``per_task`` <= 0) of ``corpus/<split>/<task>``."""
    folder = pathlib.Path(corpus).resolve() / split / task
    targets = {row["audio_id"]: folder / row["audio"] for row in _jsonl(folder / "audio.jsonl")}
    rows = _jsonl(folder / "content.jsonl")
    rows = rows[:per_task] if per_task > 0 else rows
    return [Item(row["audio_id"], task, folder, row, targets[row["audio_id"]]) for row in rows]


def _json_file(path: pathlib.Path) -> dict:
    return json.loads(path.read_text())


def tts_entry(item: Item) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ARPAbet phones, phone durations in s, x-vector) of a TTS row (HDF5 of the original layout)."""
    with h5py.File(item.folder / item.content["audio"], "r") as f:
        ids, durations, xvector = (f[f"{group}/{item.id}"][()] for group in ("phoneme", "phoneme_duration", "xvector"))
    table = symbols.tts_phones()
    return [table[int(i)] for i in ids], np.asarray(durations, np.float64), np.asarray(xvector, np.float32)


def svs_score(item: Item) -> dict:
    """The score of an SVS row: the original's JSON fields (phoneme, phoneme_duration, midi, ...)."""
    value = item.content["midi"]
    return value if isinstance(value, dict) else _json_file(item.folder / value)[item.id]


def midi_to_note(midi: int) -> str:
    """Inverse of ``symbols.note_to_midi`` with sharps: 60 → ``C4``, 56 → ``G#3``, 0 → ``rest``."""
    midi = int(midi)
    if midi <= 0:
        return "rest"
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


def _number(x: float) -> str:
    return f"{x:.6f}".rstrip("0").rstrip(".")


# ---------------------------------------------------------------------------------------------- requests


def request(item: Item, out: pathlib.Path) -> dict:
    """The sampler request of one row (files it needs, such as an x-vector, are written under ``out``)."""
    row: dict = {"id": item.id, "task": item.task}
    content = item.content
    if item.task in ("t2a", "t2m"):
        row["caption"] = content["caption"]
        row["duration"] = round(sf.info(str(item.target)).frames / SAMPLE_RATE, 6)
    elif item.task == "tts":
        phones, _, xvector = tts_entry(item)
        path = out / "speaker_embeddings" / f"{item.id}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, xvector)
        row.update(phonemes=" ".join(phones), speaker_embedding=str(path))
    elif item.task == "svs":
        score = svs_score(item)
        row.update(
            score_phonemes=score["phoneme"],
            score_notes=" ".join(midi_to_note(m) for m in score["midi"]),
            score_durations=" ".join(_number(d) for d in score["midi_duration"]),
            score_slurs=" ".join(str(int(s)) for s in score["is_slur"]),
            singer=score["spk"],
        )
    elif item.task in ("se", "sr", "v2a"):
        field = {"se": "noisy_speech", "sr": "low_sr_audio", "v2a": "video"}[item.task]
        row[field] = str((item.folder / content[field]).resolve())
    else:
        raise ValueError(f"unknown task {item.task!r}")
    return row


def write_requests(
    corpus: str | pathlib.Path, out: str | pathlib.Path, *, per_task: int = 4, split: str = "val"
) -> pathlib.Path:
    """Writes ``out/requests.jsonl`` (and the files the requests point to); returns its path."""
    out = pathlib.Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        request(item, out)
        for task in tasks.REPORT_ORDER
        for item in load_items(corpus, task, split=split, per_task=per_task)
    ]
    path = out / "requests.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_references(
    corpus: str | pathlib.Path, out: str | pathlib.Path, *, per_task: int = 4, split: str = "val"
) -> list[pathlib.Path]:
    """``out/<task>.jsonl``: the evaluated items' targets as ``python -m uniflow_jax.evaluate --reference``
    manifests (``audio_id``, ``audio``, and ``text``: the TTS transcript or the T2A/T2M caption)."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for task in tasks.REPORT_ORDER:
        rows = []
        for item in load_items(corpus, task, split=split, per_task=per_task):
            row = {"audio_id": item.id, "audio": str(item.target)}
            text = item.content.get("caption", item.content.get("text")) if task in ("tts", "t2a", "t2m") else None
            rows.append(row | ({"text": text} if text else {}))
        paths.append(out / f"{task}.jsonl")
        paths[-1].write_text("".join(json.dumps(row) + "\n" for row in rows))
    return paths


# ---------------------------------------------------------------------------------------------- audio


class UnreadableAudio(ValueError):
    """A generated file that cannot be used (unreadable, empty, not finite): counted, not fatal."""


def read_wav(path: str | pathlib.Path) -> np.ndarray:
    """Mono float64 audio at ``SAMPLE_RATE``; raises ``ValueError`` naming the file when the rate differs."""
    try:
        audio, rate = sf.read(str(path), dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise UnreadableAudio(f"{path}: cannot read audio ({error})") from None
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: sample rate {rate} Hz, expected {SAMPLE_RATE} Hz (the evaluation does not resample)")
    audio = audio.mean(axis=1)
    if len(audio) == 0:
        raise UnreadableAudio(f"{path}: empty audio")
    if not np.isfinite(audio).all():
        raise UnreadableAudio(f"{path}: non-finite samples")
    return audio


class _Features:
    """Per-file audio and features, each computed once."""

    def __init__(self):
        self._memo: dict[tuple[str, str], object] = {}

    def _get(self, kind: str, path: pathlib.Path, compute: Callable[[], object]):
        key = (kind, str(path))
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def audio(self, path: pathlib.Path) -> np.ndarray:
        return self._get("audio", path, lambda: read_wav(path))

    def f0(self, path: pathlib.Path) -> np.ndarray:
        return self._get("f0", path, lambda: metrics.f0_track(self.audio(path), SAMPLE_RATE))

    def cepstra(self, path: pathlib.Path) -> np.ndarray:
        return self._get("cepstra", path, lambda: metrics.mel_cepstra(self.audio(path), SAMPLE_RATE))

    def onsets(self, path: pathlib.Path) -> np.ndarray:
        return self._get("onsets", path, lambda: metrics.onset_times(self.audio(path), SAMPLE_RATE))

    def chroma(self, path: pathlib.Path) -> np.ndarray:
        return self._get("chroma", path, lambda: metrics.chroma_profile(self.audio(path), SAMPLE_RATE))


# ---------------------------------------------------------------------------------------------- figures


def _mean(values: Sequence[float]) -> float:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def _better(a: float, b: float, better: str) -> bool:
    return a < b if better == "lower" else a > b


def _paired_figure(kind: str, names: tuple[str, str], pairs: list[tuple[float, float]], better: str) -> dict:
    """A summary of (first, second) pairs: means over the items where both are defined, and how many favour
    the first (the output, or the own reference)."""
    defined = [(a, b) for a, b in pairs if math.isfinite(a) and math.isfinite(b)]
    first, second = names
    wins = sum(_better(a, b, better) for a, b in defined)
    mean_a, mean_b = _mean([a for a, _ in defined]), _mean([b for _, b in defined])
    return {
        "kind": kind,
        "better": better,
        first: mean_a,
        second: mean_b,
        f"{first}_better_items": wins,
        "items": len(defined),
        "learned": _better(mean_a, mean_b, better) if defined and mean_a != mean_b else None,  # None: no evidence
    }


class _TaskEval:
    """Collects per-item values and summary figures of one task."""

    def __init__(self, items: list[Item], generated: dict[str, pathlib.Path], features: _Features):
        self.items, self.generated, self.features = items, generated, features
        self.refs = {item.id: item.target for item in items}
        self.per_item: dict[str, dict] = {key: {} for key in generated}
        self.figures: dict[str, dict] = {}

    def own_vs_mismatched(self, name: str, metric: Callable[[str, str], float], better: str) -> None:
        """``metric(generated id, reference id)`` for the own reference and averaged over the others."""
        pairs = []
        for key in self.generated:
            own = float(metric(key, key))
            others = [float(metric(key, other)) for other in self.refs if other != key]
            mismatched = _mean(others)
            self.per_item[key][name] = {"own": own, "mismatched": mismatched}
            pairs.append((own, mismatched))
        self.figures[name] = _paired_figure("own_vs_mismatched", ("own", "mismatched"), pairs, better)

    def output_vs_input(self, name: str, metric: Callable[[str], tuple[float, float]], better: str) -> None:
        """``metric(id) -> (output value, input value)``, both against the clean reference."""
        pairs = []
        for key in self.generated:
            output, inp = (float(v) for v in metric(key))
            self.per_item[key][name] = {"output": output, "input": inp}
            pairs.append((output, inp))
        self.figures[name] = _paired_figure("output_vs_input", ("output", "input"), pairs, better)

    def generated_vs_reference(self, name: str, metric: Callable[[pathlib.Path], float]) -> None:
        """The same statistic of the generated audio and of its reference (an upper bound or a target)."""
        values = []
        for key, path in self.generated.items():
            pair = {"generated": float(metric(path)), "reference": float(metric(self.refs[key]))}
            self.per_item[key][name] = pair
            values.append(pair)
        self.figures[name] = {
            "kind": "generated_vs_reference",
            "generated": _mean([v["generated"] for v in values]),
            "reference": _mean([v["reference"] for v in values]),
            "items": len(values),
        }

    def value(self, name: str, metric: Callable[[str], float]) -> None:
        values = []
        for key in self.generated:
            self.per_item[key][name] = v = float(metric(key))
            values.append(v)
        self.figures[name] = {"kind": "value", "mean": _mean(values), "items": sum(math.isfinite(v) for v in values)}


def _duration_ratio(ev: _TaskEval) -> None:
    ev.value("duration_ratio", lambda k: len(ev.features.audio(ev.generated[k])) / len(ev.features.audio(ev.refs[k])))


def to_16k(audio: np.ndarray) -> np.ndarray:
    from scipy import signal

    return signal.resample_poly(audio, 2, 3)  # 24 kHz -> 16 kHz, the rate of wide-band PESQ and STOI


def _eval_se(ev: _TaskEval) -> None:
    f = ev.features
    noisy = {item.id: item.folder / item.content["noisy_speech"] for item in ev.items}

    def pair(metric: Callable[[np.ndarray, np.ndarray], float], rate: int = SAMPLE_RATE) -> Callable:
        convert = to_16k if rate == speech.SAMPLE_RATE else (lambda x: x)

        def both(key: str) -> tuple[float, float]:
            clean = convert(f.audio(ev.refs[key]))
            scores = []
            for path in (ev.generated[key], noisy[key]):
                try:
                    scores.append(metric(clean, convert(f.audio(path))))
                except speech.UnscorableError:  # no utterance detected, too short, ...
                    scores.append(float("nan"))
            return tuple(scores)

        return both

    ev.output_vs_input("si_sdr_db", pair(lambda ref, x: metrics.si_sdr(x, ref)), "higher")
    # Magnitude-based figures: they measure the denoising even where a small demo VAE loses the phase.
    ev.output_vs_input("lsd", pair(lambda ref, x: metrics.log_spectral_distance(x, ref, SAMPLE_RATE)), "lower")
    for name, metric in (("pesq_wb", speech.pesq_wb), ("stoi", speech.stoi)):
        try:
            ev.output_vs_input(name, pair(metric, speech.SAMPLE_RATE), "higher")
        except ImportError as error:
            ev.figures[name] = {"kind": "skipped", "reason": str(error)}


def _eval_sr(ev: _TaskEval) -> None:
    f = ev.features
    low = {item.id: item.folder / item.content["low_sr_audio"] for item in ev.items}

    def lsd(min_hz: float) -> Callable[[str], tuple[float, float]]:
        def pair(key: str) -> tuple[float, float]:
            ref = f.audio(ev.refs[key])
            return tuple(
                metrics.log_spectral_distance(f.audio(path), ref, SAMPLE_RATE, min_hz=min_hz)
                for path in (ev.generated[key], low[key])
            )

        return pair

    ev.output_vs_input("lsd", lsd(0.0), "lower")
    ev.output_vs_input("lsd_high", lsd(HIGH_BAND_HZ), "lower")


def _voiced_fraction(f: _Features, path: pathlib.Path) -> float:
    return float(np.mean(np.isfinite(f.f0(path))))


def _speech_metrics(ev: _TaskEval) -> None:
    """TTS and SVS: length, F0 and timbre against the own reference vs the others."""
    f = ev.features

    def abs_log_ratio(key: str, ref: str) -> float:
        return abs(math.log(len(f.audio(ev.generated[key])) / len(f.audio(ev.refs[ref]))))

    def cents(key: str, ref: str) -> float:
        target = f.f0(ev.refs[ref])
        return metrics.cents_rmse(metrics.stretch_track(f.f0(ev.generated[key]), len(target)), target)

    def mcd(key: str, ref: str) -> float:
        return metrics.mcd_dtw(cepstra=(f.cepstra(ev.generated[key]), f.cepstra(ev.refs[ref])))

    ev.own_vs_mismatched("abs_log_duration_ratio", abs_log_ratio, "lower")
    ev.own_vs_mismatched("f0_rmse_cents", cents, "lower")
    ev.own_vs_mismatched("mcd_dtw_db", mcd, "lower")
    ev.generated_vs_reference("voiced_fraction", lambda path: _voiced_fraction(f, path))


def score_track(score: dict, frames: int, hop: int = metrics.F0_HOP) -> np.ndarray:
    """The score's MIDI note per F0 frame (0 under rests), its time line set by the phone durations."""
    bounds = np.round(np.cumsum([0.0, *score["phoneme_duration"]]) * SAMPLE_RATE / hop).astype(int)
    track = np.zeros(frames)
    for midi, start, end in zip(score["midi"], bounds[:-1], bounds[1:], strict=True):
        track[start:end] = midi
    return track


def _eval_svs(ev: _TaskEval) -> None:
    _speech_metrics(ev)
    f = ev.features
    scores = {item.id: svs_score(item) for item in ev.items}

    def notes(key: str, ref: str) -> float:
        generated = f.f0(ev.generated[key])
        expected = score_track(scores[ref], len(f.f0(ev.refs[ref])))
        return metrics.semitone_accuracy(generated, metrics.stretch_track(expected, len(generated)))

    def notes_of_reference(key: str) -> float:
        reference = f.f0(ev.refs[key])
        return metrics.semitone_accuracy(reference, score_track(scores[key], len(reference)))

    ev.own_vs_mismatched("score_semitone_accuracy", notes, "higher")
    ev.value("reference_score_semitone_accuracy", notes_of_reference)


def _eval_events(ev: _TaskEval) -> None:
    """T2A and V2A: onsets and energy envelopes against the own reference vs the others."""
    f = ev.features
    ev.own_vs_mismatched(
        "onset_f1", lambda key, ref: metrics.onset_f1(f.onsets(ev.generated[key]), f.onsets(ev.refs[ref])), "higher"
    )
    ev.own_vs_mismatched(
        "onset_count_error",
        lambda key, ref: abs(len(f.onsets(ev.generated[key])) - len(f.onsets(ev.refs[ref]))),
        "lower",
    )
    ev.own_vs_mismatched(
        "envelope_correlation",
        lambda key, ref: metrics.envelope_correlation(f.audio(ev.generated[key]), f.audio(ev.refs[ref])),
        "higher",
    )


def _eval_v2a(ev: _TaskEval) -> None:
    _eval_events(ev)
    f = ev.features
    flashes = {item.id: [float(e["onset"]) for e in item.content.get("events", [])] for item in ev.items}
    if not any(flashes.values()):
        ev.figures["onset_f1_vs_flashes"] = {"kind": "skipped", "reason": "the corpus records no flash times"}
        return
    ev.own_vs_mismatched(
        "onset_f1_vs_flashes", lambda key, ref: metrics.onset_f1(f.onsets(ev.generated[key]), flashes[ref]), "higher"
    )
    ev.value("reference_onset_f1_vs_flashes", lambda key: metrics.onset_f1(f.onsets(ev.refs[key]), flashes[key]))


def caption_key(caption: str) -> frozenset[int] | None:
    """The pitch classes of the key a T2M caption names (``... in Bb minor ...``), or None."""
    match = _KEY.search(caption)
    if not match:
        return None
    tonic = note_to_midi(f"{match[1]}4") % 12
    return frozenset((tonic + step) % 12 for step in _SCALES[match[2]])


def _eval_t2m(ev: _TaskEval) -> None:
    f = ev.features
    keys = {item.id: caption_key(item.content["caption"]) for item in ev.items}
    ev.own_vs_mismatched(
        "chroma_similarity",
        lambda key, ref: metrics.cosine(f.chroma(ev.generated[key]), f.chroma(ev.refs[ref])),
        "higher",
    )

    def melody(key: str, ref: str) -> float:
        target = f.f0(ev.refs[ref])
        generated = metrics.stretch_track(f.f0(ev.generated[key]), len(target))
        return metrics.semitone_accuracy(generated, metrics.hz_to_midi(target))

    def in_key(path: pathlib.Path, key: frozenset[int] | None) -> float:
        return float("nan") if key is None else metrics.pitch_class_fraction(f.f0(path), key)

    ev.own_vs_mismatched("melody_semitone_agreement", melody, "higher")
    ev.own_vs_mismatched("scale_fraction", lambda key, ref: in_key(ev.generated[key], keys[ref]), "higher")
    ev.value("reference_scale_fraction", lambda key: in_key(ev.refs[key], keys[key]))


_EVALUATORS: dict[str, Callable[[_TaskEval], None]] = {
    "t2a": _eval_events,
    "t2m": _eval_t2m,
    "tts": _speech_metrics,
    "svs": _eval_svs,
    "se": _eval_se,
    "sr": _eval_sr,
    "v2a": _eval_v2a,
}


def evaluate_task(
    items: list[Item],
    generated_dir: pathlib.Path,
    features: _Features | None = None,
    codec_dir: pathlib.Path | None = None,
) -> dict:
    """The report section of one task: counts, the task's bars (``demo.bars``; the codec's round trips in
    ``codec_dir/<task>/<id>.wav`` give their ceiling), diagnostic figures and per-item values."""
    from uniflow_jax.demo import bars  # bars builds on this module's items and features

    features = features or _Features()
    task = items[0].task if items else ""
    generated, missing, unreadable = {}, [], {}
    for item in items:
        path = generated_dir / task / f"{item.id}.wav"
        if not path.exists():
            missing.append(item.id)
            continue
        try:
            features.audio(path)
        except UnreadableAudio as error:
            unreadable[item.id] = str(error)
            continue
        generated[item.id] = path
    for item in items:
        features.audio(item.target)  # a reference at another rate is an error too
    section = {
        "expected": len(items),
        "generated": len(generated),
        "missing": len(missing),
        "missing_ids": missing,
        "unreadable": unreadable,
        "bars": {},
        "meets_bars": False,
        "figures": {},
        "items": {},
    }
    if generated:
        codec = None
        if codec_dir is not None:
            codec = {item.id: codec_dir / task / f"{item.id}.wav" for item in items}
            codec = {key: path for key, path in codec.items() if path.exists()}
        judged = bars.judge_task(items, generated, codec, features)
        section["bars"], section["meets_bars"] = judged["bars"], judged["met"]
        ev = _TaskEval(items, generated, features)
        _duration_ratio(ev)
        _EVALUATORS[task](ev)
        section["figures"], section["items"] = ev.figures, ev.per_item
    return section


def evaluate(
    corpus: str | pathlib.Path,
    generated: str | pathlib.Path,
    *,
    per_task: int = 4,
    split: str = "val",
    codec: str | pathlib.Path | None = None,
) -> dict:
    """The whole report (JSON-ready apart from NaN, which ``write_report`` turns into null); ``codec``: the
    folder of the codec's round trips (``demo.codec --out_dir``), the ceiling of every bar."""
    generated = pathlib.Path(generated).resolve()
    codec_dir = pathlib.Path(codec).resolve() if codec else None
    features = _Features()
    sections = {
        task: evaluate_task(load_items(corpus, task, split=split, per_task=per_task), generated, features, codec_dir)
        for task in tasks.REPORT_ORDER
    }
    verdicts = {}
    for task, section in sections.items():
        decided = [fig["learned"] for fig in section["figures"].values() if fig.get("learned") is not None]
        verdicts[task] = {"favourable": sum(decided), "comparisons": len(decided)}
    return {
        "corpus": str(pathlib.Path(corpus).resolve()),
        "generated": str(generated),
        "split": split,
        "per_task": per_task,
        "settings": SETTINGS,
        "summary": {
            "tasks_meeting_bars": [task for task, s in sections.items() if s["meets_bars"]],
            "favourable": sum(v["favourable"] for v in verdicts.values()),
            "comparisons": sum(v["comparisons"] for v in verdicts.values()),
            "missing": sum(s["missing"] for s in sections.values()),
            "unreadable": sum(len(s["unreadable"]) for s in sections.values()),
            "per_task": verdicts,
        },
        "tasks": sections,
    }


def write_report(report: dict, path: str | pathlib.Path) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cli.json_ready(report), indent=2) + "\n")


def format_cell(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def bar_cells(entry: dict) -> tuple[str, str, str]:
    """(model, baseline, ceiling) figures of a bar entry as text."""
    return tuple(
        "—" if entry.get(side) is None else format_cell(entry[side]["figure"])
        for side in ("model", "baseline", "ceiling")
    )


def format_bars(entries: dict) -> list[str]:
    lines = [f"  {'bar':<22}{'model':>8}{'baseline':>10}{'ceiling':>9}  verdict: statement"]
    for name, entry in entries.items():
        model, baseline, ceiling = bar_cells(entry)
        why = f" ({entry['reason']})" if "reason" in entry else f" ({entry['note']})" if "note" in entry else ""
        lines.append(
            f"  {name:<22}{model:>8}{baseline:>10}{ceiling:>9}  {entry['verdict'].upper()}: {entry['statement']}{why}"
        )
    return lines


def format_table(report: dict) -> str:
    """The report as text: one block per task, one line per figure."""
    lines = []
    header = f"  {'figure':<34}{'model':>10}{'baseline':>11}  {'better':<7}{'items':>7}  verdict"
    for task, section in report["tasks"].items():
        counts = f"{section['generated']}/{section['expected']} generated"
        if section["missing"]:
            counts += f", {section['missing']} missing"
        if section["unreadable"]:
            counts += f", {len(section['unreadable'])} unreadable"
        verdict = "meets its bars" if section["meets_bars"] else "does NOT meet its bars"
        lines += ["", f"{task}  ({counts}) {verdict}"]
        lines += format_bars(section["bars"])
        if not section["figures"]:
            continue
        lines.append(header)
        for name, fig in section["figures"].items():
            kind = fig["kind"]
            if kind == "skipped":
                lines.append(f"  {name:<34}skipped: {fig['reason']}")
                continue
            if kind == "value":
                lines.append(f"  {name:<34}{format_cell(fig['mean']):>10}{'':>11}  {'':<7}{fig['items']:>7}")
                continue
            if kind == "generated_vs_reference":
                cells = f"{format_cell(fig['generated']):>10}{format_cell(fig['reference']):>11}"
                lines.append(f"  {name:<34}{cells}  {'':<7}{fig['items']:>7}  (baseline = the reference itself)")
                continue
            first, second = ("own", "mismatched") if kind == "own_vs_mismatched" else ("output", "input")
            verdict = {True: f"{first} better", False: f"NOT {first} better", None: "undecided"}[fig["learned"]]
            if fig["learned"] is None and fig["items"]:
                verdict = "tie"
            wins = f"{fig[f'{first}_better_items']}/{fig['items']}"
            cells = f"{format_cell(fig[first]):>10}{format_cell(fig[second]):>11}"
            lines.append(f"  {name:<34}{cells}  {fig['better']:<7}{wins:>7}  {verdict} ({second} as baseline)")
    summary = report["summary"]
    met = summary["tasks_meeting_bars"]
    lines += [
        "",
        f"{len(met)} of {len(report['tasks'])} tasks meet their bars ({', '.join(met) or 'none'}); diagnostics: "
        f"{summary['favourable']} of {summary['comparisons']} comparisons favour the model "
        f"({summary['missing']} generated files missing, {summary['unreadable']} unreadable)",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- program

FLAGS = flags.FLAGS
COMMANDS = ("requests", "references", "report")


def _define_flags() -> None:
    """Defined only when run as a program, so that importing this module adds no flags to another tool."""
    flags.DEFINE_string(
        "corpus", None, "The demo corpus (python -m uniflow_jax.demo.corpus --out DEMO).", required=True
    )
    flags.DEFINE_string(
        "out",
        None,
        "requests: the request folder; references: the manifest folder; report: the JSON file to write.",
        required=True,
    )
    flags.DEFINE_string("generated", None, "report: folder of generated audio, <task>/<id>.wav (24 kHz mono).")
    flags.DEFINE_string("codec", None, "report: folder of the codec's round trips, <task>/<id>.wav (demo.codec).")
    flags.DEFINE_integer("per_task", 4, "Rows per task (the first of the split); 0 = all.")
    flags.DEFINE_string("split", "val", "The corpus split to evaluate.")


def main(argv: Sequence[str]) -> None:
    commands = argv[1:]
    if len(commands) != 1 or commands[0] not in COMMANDS:
        raise app.UsageError(f"give one command: {' or '.join(COMMANDS)} (got {commands or 'none'})")
    if commands[0] == "requests":
        path = write_requests(FLAGS.corpus, FLAGS.out, per_task=FLAGS.per_task, split=FLAGS.split)
        print(f"wrote {sum(1 for _ in path.open())} requests to {path}")
        return
    if commands[0] == "references":
        paths = write_references(FLAGS.corpus, FLAGS.out, per_task=FLAGS.per_task, split=FLAGS.split)
        print(f"wrote {len(paths)} reference manifests to {FLAGS.out}")
        return
    if not FLAGS.generated:
        raise app.UsageError("report needs --generated GEN_DIR")
    report = evaluate(FLAGS.corpus, FLAGS.generated, per_task=FLAGS.per_task, split=FLAGS.split, codec=FLAGS.codec)
    print(format_table(report))
    write_report(report, FLAGS.out)
    from uniflow_jax.demo import page

    html, sheet = page.write_page(
        report, FLAGS.corpus, FLAGS.generated, pathlib.Path(FLAGS.out).with_suffix(".html"), codec=FLAGS.codec
    )
    print(f"wrote {FLAGS.out}, {html} (open it in a browser) and {sheet}")


if __name__ == "__main__":
    _define_flags()
    cli.run(main)
