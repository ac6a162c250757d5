"""The paper's task metrics for a folder of generated audio against references.

    python -m uniflow_jax.evaluate --task TASK --generated GEN_DIR --reference REF_DIR_OR_MANIFEST [--json OUT]

``GEN_DIR`` holds ``<id>.wav`` (any rate and channel count). The reference is a folder of ``<id>.wav`` with
the same ids, or a jsonl manifest of ``{"audio_id": ..., "audio": path, "text": ...}`` rows (paths relative
to the manifest's folder; ``text``, or the key ``--text_key`` names, is the TTS transcript or the T2A/T2M
caption). Ids must match exactly; audio is resampled to each metric's rate and every change (resampling,
downmixing, trimming to the shorter of a pair) is counted in the report's notes. The report (per-item values,
per-metric mean/std/count, corpus-level figures, the settings of every metric) goes to ``--json`` (default
``GEN_DIR/metrics.json``) and a table to stdout.

Metrics (``--metrics`` picks some; default: all the task's metrics whose model is available):

* se: pesq (wide-band), stoi, segsnr, composite (CSIG/CBAK/COVL with LLR and WSS), dnsmos; all at 16 kHz
* sr: lsd at 24 kHz
* svs: mcd (mel-cepstral distance with DTW) and f0 (log-F0 RMSE, semitone accuracy) at 24 kHz
* tts: wer (PocketSphinx, or ``--asr_hmm/--asr_lm/--asr_dict``, or ``--asr_plugin``), sim (``--speaker_model``)
* t2a, t2m, v2a: fd, kl, is (``--audio_model``), clap (``--clap_audio_model``, ``--clap_text_model``,
  ``--clap_tokenizer``); V2A's ImageBind score and Synchformer DeSync are not implemented

Model-based metrics run user-supplied ONNX models (``uniflow_jax.metrics.onnx_models`` states the
conventions); none is downloaded, and a metric whose model is not given is an error when asked for. The
numbers follow the paper's definitions but not always its models (PocketSphinx instead of NeMo/Whisper for
WER, pYIN instead of WORLD for F0, librosa mel cepstra instead of pysptk's): compare systems with each other
under the same settings, which the report's ``settings`` states.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import pathlib
from collections.abc import Callable, Sequence

import numpy as np
import soundfile as sf
from absl import flags

from uniflow_jax import cli, tasks
from uniflow_jax.frontends.audio import load_audio
from uniflow_jax.metrics import asr, composite, distribution, speech
from uniflow_jax.metrics import audio as signal_metrics
from uniflow_jax.metrics.onnx_models import OnnxAudioModel, OnnxTextModel, input_ranks

_DISTRIBUTION = ("fd", "kl", "is", "clap")
TASK_METRICS = {
    "se": ("pesq", "stoi", "segsnr", "composite", "dnsmos"),
    "sr": ("lsd",),
    "svs": ("mcd", "f0"),
    "tts": ("wer", "sim"),
    "t2a": _DISTRIBUTION,
    "t2m": _DISTRIBUTION,
    "v2a": _DISTRIBUTION,
}
# The options each model-based metric needs, and what to pass when they are missing.
MODEL_OPTIONS = {
    "fd": ("audio_model",),
    "kl": ("audio_model",),
    "is": ("audio_model",),
    "sim": ("speaker_model",),
    "clap": ("clap_audio_model", "clap_text_model", "clap_tokenizer"),
}
MODEL_HELP = {
    "audio_model": "an audio classifier exported to ONNX (e.g. PANNs CNN14) with embedding and logits outputs",
    "speaker_model": "a speaker-embedding model exported to ONNX (e.g. the WeSpeaker export the TTS front end uses)",
    "clap_audio_model": "CLAP's audio tower exported to ONNX",
    "clap_text_model": "CLAP's text tower exported to ONNX",
    "clap_tokenizer": "the CLAP text tower's Hugging Face tokenizer.json",
}
OPTIONAL_BY_DEFAULT = ("sim", "clap")  # left out of the default set (with a note) when their model is missing
SE_RATE, SIGNAL_RATE = speech.SAMPLE_RATE, 24000
SIM_MIN_SECONDS = 0.5  # shorter clips get no speaker similarity (upstream skips them too)
MAX_LISTED = 20

SETTINGS = {
    "pesq": speech.SETTINGS["pesq_wb"],
    "stoi": speech.SETTINGS["stoi"],
    "segsnr": composite.SETTINGS["segsnr"],
    "composite": composite.SETTINGS["composite"] + "; llr and wss are reported too",
    "dnsmos": speech.SETTINGS["dnsmos"],
    "lsd": f"at {SIGNAL_RATE} Hz, common length; " + signal_metrics.SETTINGS["lsd"],
    "mcd": f"at {SIGNAL_RATE} Hz; " + signal_metrics.SETTINGS["mcd"],
    "f0": (
        f"at {SIGNAL_RATE} Hz; {signal_metrics.SETTINGS['f0']}; F0 frames (same hop as the cepstra) aligned by "
        "the MCD's DTW path; logf0_rmse: RMS of ln(F0_gen / F0_ref) over frames voiced in both; "
        "semitone_accuracy: fraction of those frames within 0.5 semitone"
    ),
    "wer": asr.SETTINGS["wer"],
    "sim": (
        "cosine similarity of the --speaker_model embeddings of the generated and the reference clip (a "
        "WeSpeaker-style fbank model as the TTS front end runs it, at 16 kHz; a waveform model at "
        f"--speaker_model_rate, output rows averaged); clips under {SIM_MIN_SECONDS:g} s are skipped"
    ),
    **{name: distribution.SETTINGS[name] for name in ("fd", "kl", "is")},
    "clap": "cosine similarity of the CLAP text embedding of the item's text and the audio embedding of the clip",
}


class EvaluationError(ValueError):
    """Inputs or options that cannot be evaluated; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class Item:
    """A generated clip and its reference audio and text (either may be absent in a manifest row)."""

    id: str
    generated: pathlib.Path
    reference: pathlib.Path | None
    text: str | None = None


@dataclasses.dataclass(frozen=True)
class Options:
    """Everything but the inputs; field names are the command's flag names."""

    metrics: tuple[str, ...] = ()
    length_mismatch: str = "trim"
    asr_hmm: str | None = None
    asr_lm: str | None = None
    asr_dict: str | None = None
    asr_plugin: str | None = None
    speaker_model: str | None = None
    speaker_model_rate: int = 16000
    audio_model: str | None = None
    audio_model_rate: int = 16000
    audio_model_embedding: str = "embedding"
    audio_model_logits: str = "logits"
    is_splits: int = 10
    clap_audio_model: str | None = None
    clap_text_model: str | None = None
    clap_tokenizer: str | None = None
    clap_rate: int = 48000


# ---------------------------------------------------------------------------------------------- inputs


def _listing(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:MAX_LISTED])
    return shown + (f", ... ({len(ids) - MAX_LISTED} more)" if len(ids) > MAX_LISTED else "")


def _wavs(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: not a folder")
    return {path.stem: path for path in sorted(folder.glob("*.wav"))}


def read_manifest(path: pathlib.Path, text_key: str = "text") -> dict[str, tuple[pathlib.Path | None, str | None]]:
    """``{audio_id: (audio path or None, text or None)}`` of a jsonl manifest; bad lines are errors."""
    rows, errors = {}, []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            errors.append(f"{path}:{number}: not valid JSON ({error.msg})")
            continue
        if not isinstance(row, dict) or not row.get("audio_id"):
            errors.append(f"{path}:{number}: expected a JSON object with an 'audio_id'")
            continue
        key = str(row["audio_id"])
        if key in rows:
            errors.append(f"{path}:{number}: duplicate audio_id {key!r}")
        audio = pathlib.Path(row["audio"]).expanduser() if row.get("audio") else None
        rows[key] = (path.parent / audio if audio and not audio.is_absolute() else audio, row.get(text_key))
    if errors:
        raise EvaluationError(f"{len(errors)} bad manifest line(s):\n  " + "\n  ".join(errors[:MAX_LISTED]))
    return rows


def load_items(generated: str | pathlib.Path, reference: str | pathlib.Path, text_key: str = "text") -> list[Item]:
    """Pairs ``generated/<id>.wav`` with a reference folder or manifest; raises listing ids on either side only."""
    generated, reference = pathlib.Path(generated), pathlib.Path(reference)
    produced = _wavs(generated)
    if not produced:
        raise EvaluationError(f"{generated}: no .wav files")
    if reference.is_file():
        references = read_manifest(reference, text_key)
    elif reference.is_dir():
        references = {key: (path, None) for key, path in _wavs(reference).items()}
    else:
        raise EvaluationError(f"{reference}: neither a folder nor a manifest file")
    only_generated = sorted(set(produced) - set(references))
    only_reference = sorted(set(references) - set(produced))
    if only_generated or only_reference:
        lines = [f"ids differ between {generated} ({len(produced)} files) and {reference} ({len(references)} ids):"]
        if only_generated:
            lines.append(f"  only generated ({len(only_generated)}): {_listing(only_generated)}")
        if only_reference:
            lines.append(f"  only reference ({len(only_reference)}): {_listing(only_reference)}")
        raise EvaluationError("\n".join(lines))
    return [Item(key, produced[key], *references[key]) for key in sorted(produced)]


class AudioReader:
    """Reads clips at a metric's rate and counts what that changed (resampling, downmixing) for the report."""

    def __init__(self):
        self.changes: collections.Counter = collections.Counter()

    def __call__(self, path: pathlib.Path, role: str, rate: int) -> np.ndarray:
        audio = load_audio(path, rate)  # first: its error names an unreadable file
        info = sf.info(str(path))
        if info.samplerate != rate:
            self.changes[f"{role}: resampled {info.samplerate} Hz -> {rate} Hz"] += 1
        if info.channels > 1:
            self.changes[f"{role}: {info.channels} channels averaged to mono (at {rate} Hz)"] += 1
        return audio

    def notes(self) -> list[str]:
        return [f"{change} ({count} files)" for change, count in sorted(self.changes.items())]


# ---------------------------------------------------------------------------------------------- report


class Report:
    """Per-item values and failures, ASR transcripts and corpus-level figures of one evaluation."""

    def __init__(self, items: list[Item]):
        self.items = items
        self.values: dict[str, dict[str, float]] = collections.defaultdict(dict)
        self.failures: dict[str, dict[str, str]] = collections.defaultdict(dict)
        self.transcripts: dict[str, str] = {}
        self.corpus: dict[str, object] = {}

    def add(self, item_id: str, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.values[name][item_id] = float(value)

    def fail(self, item_id: str, names: Sequence[str], reason: str) -> None:
        for name in names:
            self.failures[name][item_id] = reason

    def summary(self) -> dict[str, dict[str, float | int]]:
        """mean, std and count of every per-item metric over its finite values (NaN: no voiced frame, ...)."""
        out = {}
        for name, by_item in self.values.items():
            finite = np.asarray([v for v in by_item.values() if math.isfinite(v)])
            out[name] = {
                "mean": float(finite.mean()) if len(finite) else float("nan"),
                "std": float(finite.std()) if len(finite) else float("nan"),
                "count": len(finite),
                "not_counted": len(self.items) - len(finite),
            }
        return out


# ---------------------------------------------------------------------------------------------- tasks


@dataclasses.dataclass
class Run:
    """One evaluation in progress: its inputs, options, reader and report."""

    items: list[Item]
    options: Options
    metrics: tuple[str, ...]
    report: Report
    read: AudioReader = dataclasses.field(default_factory=AudioReader)
    trimmed: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def reference(self, item: Item, rate: int) -> np.ndarray:
        if item.reference is None:
            raise EvaluationError(f"item {item.id}: the reference manifest gives no 'audio' path")
        return self.read(item.reference, "reference", rate)

    def pair(self, item: Item, rate: int) -> tuple[np.ndarray, np.ndarray]:
        """(generated, reference) at ``rate``, cut to the shorter (``length_mismatch=trim``) or an error."""
        generated, reference = self.read(item.generated, "generated", rate), self.reference(item, rate)
        if len(generated) != len(reference):
            if self.options.length_mismatch == "error":
                raise EvaluationError(
                    f"item {item.id}: {len(generated)} generated vs {len(reference)} reference samples at {rate} Hz "
                    "(pass --length_mismatch=trim to compare the common length)"
                )
            self.trimmed.append(item.id)
            n = min(len(generated), len(reference))
            generated, reference = generated[:n], reference[:n]
        return generated, reference

    def texts(self) -> list[str]:
        missing = [item.id for item in self.items if not item.text]
        if missing:
            raise EvaluationError(
                f"{len(missing)} items have no text in the reference manifest (pass a jsonl --reference with the "
                f"--text_key field): {_listing(missing)}"
            )
        return [item.text for item in self.items]


def _eval_se(run: Run) -> None:
    """PESQ, STOI, segSNR, composite (reported with its parts: PESQ, segSNR, LLR, WSS) and DNSMOS at 16 kHz."""
    wanted = set(run.metrics)
    for item in run.items:
        generated, reference = run.pair(item, SE_RATE)
        values, unscorable = {}, None
        if wanted & {"pesq", "composite"}:
            try:
                values["pesq_wb"] = speech.pesq_wb(reference, generated)
            except speech.UnscorableError as error:
                unscorable = str(error)
                run.report.fail(
                    item.id, ["pesq_wb", *(["csig", "cbak", "covl"] if "composite" in wanted else [])], unscorable
                )
        if "stoi" in wanted:
            values["stoi"] = speech.stoi(reference, generated)
        if wanted & {"segsnr", "composite"}:
            values["segsnr"] = composite.segmental_snr(reference, generated, SE_RATE)
        if "composite" in wanted:
            values["llr"] = composite.log_likelihood_ratio(reference, generated, SE_RATE)
            values["wss"] = composite.weighted_spectral_slope(reference, generated, SE_RATE)
            if unscorable is None:
                values.update(composite.composite_measures(*(values[k] for k in ("pesq_wb", "llr", "wss", "segsnr"))))
        if "dnsmos" in wanted:
            values.update({f"dnsmos_{name}": v for name, v in speech.dnsmos(generated).items()})
        run.report.add(item.id, values)


def _eval_sr(run: Run) -> None:
    """Log-spectral distance at 24 kHz, the rate the model generates (and ``ssr_eval`` measures) at."""
    for item in run.items:
        generated, reference = run.pair(item, SIGNAL_RATE)
        run.report.add(item.id, {"lsd": signal_metrics.log_spectral_distance(generated, reference, SIGNAL_RATE)})


def _eval_svs(run: Run) -> None:
    """MCD along the DTW path of the mel cepstra, and F0 compared along the same path: a sung clip may be
    timed differently from its reference."""
    import librosa

    for item in run.items:
        generated = run.read(item.generated, "generated", SIGNAL_RATE)
        reference = run.reference(item, SIGNAL_RATE)
        cepstra = signal_metrics.mel_cepstra(generated, SIGNAL_RATE), signal_metrics.mel_cepstra(reference, SIGNAL_RATE)
        if "mcd" in run.metrics:
            run.report.add(item.id, {"mcd": signal_metrics.mcd_dtw(cepstra=cepstra)})
        if "f0" in run.metrics:
            _, path = librosa.sequence.dtw(X=cepstra[0], Y=cepstra[1], metric="euclidean")
            f0_gen = signal_metrics.f0_track(generated, SIGNAL_RATE)[path[:, 0]]
            f0_ref = signal_metrics.f0_track(reference, SIGNAL_RATE)[path[:, 1]]
            cents = signal_metrics.cents_rmse(f0_gen, f0_ref)
            accuracy = signal_metrics.semitone_accuracy(f0_gen, signal_metrics.hz_to_midi(f0_ref))
            run.report.add(item.id, {"logf0_rmse": cents * math.log(2) / 1200, "semitone_accuracy": accuracy})


def _recogniser(options: Options) -> asr.Recogniser:
    if options.asr_plugin:
        return asr.load_plugin(options.asr_plugin)
    return asr.PocketSphinx(hmm=options.asr_hmm, lm=options.asr_lm, dictionary=options.asr_dict)


def _speaker_embedder(options: Options) -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    """(embed, sample rate) of ``--speaker_model``: a features model (batch, frames, 80) is a WeSpeaker-style
    export run as the TTS front end runs it (Kaldi fbank at 16 kHz), so the sampler's speaker model serves
    here too; a waveform model (batch, samples) runs at ``--speaker_model_rate``."""
    if input_ranks(options.speaker_model) == [3]:
        from uniflow_jax.frontends import speaker

        return speaker.load(options.speaker_model), speaker.SAMPLE_RATE
    model = OnnxAudioModel(options.speaker_model, options.speaker_model_rate)
    return model.embedding, model.sample_rate


def _eval_tts(run: Run) -> None:
    """WER of the recogniser's transcript against the manifest text; speaker similarity to the reference."""
    options, report = run.options, run.report
    if "wer" in run.metrics:
        texts, recognise = run.texts(), _recogniser(options)
        heard = [recognise(run.read(item.generated, "generated", recognise.sample_rate)) for item in run.items]
        per_item, report.corpus["wer"] = asr.word_error_rates(texts, heard)
        for item, transcript, wer in zip(run.items, heard, per_item, strict=True):
            report.add(item.id, {"wer": wer})
            report.transcripts[item.id] = transcript
    if "sim" in run.metrics:
        embed, rate = _speaker_embedder(options)
        for item in run.items:
            clips = run.read(item.generated, "generated", rate), run.reference(item, rate)
            if min(len(clip) for clip in clips) < SIM_MIN_SECONDS * rate:
                report.fail(item.id, ["sim"], f"shorter than {SIM_MIN_SECONDS:g} s")
                continue
            report.add(item.id, {"sim": signal_metrics.cosine(*(embed(clip) for clip in clips))})


def _class_probabilities(outputs: list[dict[str, np.ndarray]], name: str) -> np.ndarray:
    """One row per clip (clips × classes): the softmax of its logits rows, averaged."""
    return np.stack([distribution.softmax(out[name]).mean(axis=0) for out in outputs])


def _eval_classifier(run: Run) -> None:
    """FD, KL and IS over the outputs of the ``--audio_model`` classifier."""
    options, report, wanted = run.options, run.report, set(run.metrics) & {"fd", "kl", "is"}
    if not wanted:
        return
    model = OnnxAudioModel(options.audio_model, options.audio_model_rate)
    embedding, logits = options.audio_model_embedding, options.audio_model_logits
    names = ([embedding] if "fd" in wanted else []) + ([logits] if wanted & {"kl", "is"} else [])
    model.check_outputs(names, "--audio_model_embedding / --audio_model_logits")
    generated = [model(run.read(item.generated, "generated", model.sample_rate), names) for item in run.items]
    if wanted & {"fd", "kl"}:
        reference = [model(run.reference(item, model.sample_rate), names) for item in run.items]
    if "fd" in wanted:
        stats = [
            distribution.gaussian_statistics(np.concatenate([out[embedding] for out in side]))
            for side in (generated, reference)
        ]
        report.corpus["fd"] = distribution.frechet_distance(*stats[0], *stats[1])
    if "kl" in wanted:
        kl = distribution.kl_divergence(
            _class_probabilities(reference, logits), _class_probabilities(generated, logits)
        )
        for item, value in zip(run.items, kl, strict=True):
            report.add(item.id, {"kl": value})
    if "is" in wanted:
        splits = min(options.is_splits, len(run.items))
        if splits < options.is_splits:
            run.notes.append(f"is: {len(run.items)} items, so {splits} splits instead of {options.is_splits}")
        mean, std = distribution.inception_score(_class_probabilities(generated, logits), splits)
        report.corpus["is"] = {"mean": mean, "std": std, "splits": splits}


def _eval_clap(run: Run) -> None:
    """Cosine of the CLAP text embedding of each item's text and the audio embedding of its generated clip."""
    if "clap" not in run.metrics:
        return
    options = run.options
    audio_model = OnnxAudioModel(options.clap_audio_model, options.clap_rate)
    text_model = OnnxTextModel(options.clap_text_model, options.clap_tokenizer)
    for item, text in zip(run.items, run.texts(), strict=True):
        audio = audio_model.embedding(run.read(item.generated, "generated", audio_model.sample_rate))
        run.report.add(item.id, {"clap": signal_metrics.cosine(text_model(text), audio)})


def _eval_distribution(run: Run) -> None:
    _eval_classifier(run)
    _eval_clap(run)


TASK_RUNNERS: dict[str, Callable[[Run], None]] = {
    "se": _eval_se,
    "sr": _eval_sr,
    "svs": _eval_svs,
    "tts": _eval_tts,
    "t2a": _eval_distribution,
    "t2m": _eval_distribution,
    "v2a": _eval_distribution,
}


def select_metrics(task: str, options: Options) -> tuple[tuple[str, ...], list[str]]:
    """The metrics to compute and notes on the ones left out; raises naming the flag a requested metric's
    model needs."""
    if task not in TASK_METRICS:
        raise EvaluationError(f"unknown task {task!r}; tasks: {', '.join(tasks.REPORT_ORDER)}")
    available, notes = TASK_METRICS[task], []
    unknown = sorted(set(options.metrics) - set(available))
    if unknown:
        raise EvaluationError(f"task {task} has no metric {', '.join(unknown)}; its metrics: {', '.join(available)}")
    missing = {m: [o for o in MODEL_OPTIONS.get(m, ()) if not getattr(options, o)] for m in available}
    chosen = options.metrics
    if not chosen:
        chosen = tuple(m for m in available if not (m in OPTIONAL_BY_DEFAULT and missing[m]))
        notes += [
            f"{m} not computed: pass {' '.join(f'--{o}' for o in MODEL_OPTIONS[m])}"
            for m in available
            if m not in chosen
        ]
    needing = collections.defaultdict(list)  # the missing options → the metrics that need them
    for m in chosen:
        if missing[m]:
            needing[tuple(missing[m])].append(m)
    if needing:
        problems = [
            f"{', '.join(ms)} need{'s' * (len(ms) == 1)} " + ", ".join(f"--{o} ({MODEL_HELP[o]})" for o in opts)
            for opts, ms in needing.items()
        ]
        raise EvaluationError(
            "no model given: " + "; ".join(problems) + ". None is downloaded: pass it, or pick metrics with --metrics"
        )
    return tuple(chosen), notes


def evaluate(task: str, items: list[Item], options: Options = Options()) -> dict:
    """The report of ``task``'s metrics over ``items`` (see the module docstring)."""
    metrics, notes = select_metrics(task, options)
    run = Run(items, options, metrics, Report(items))
    TASK_RUNNERS[task](run)
    report = run.report
    notes += run.notes + run.read.notes()
    if run.trimmed:
        notes.append(f"{len(run.trimmed)} items cut to the shorter of generated and reference: {_listing(run.trimmed)}")
    for name, failed in sorted(report.failures.items()):
        notes.append(
            f"{name} not scored for {len(failed)} items: " + _listing([f"{k} ({v})" for k, v in failed.items()])
        )
    per_item = {
        item.id: {name: by_item[item.id] for name, by_item in report.values.items() if item.id in by_item}
        for item in items
    }
    for item_id, transcript in report.transcripts.items():
        per_item[item_id]["asr_transcript"] = transcript
    return {
        "task": task,
        "items": len(items),
        "metrics": report.summary(),
        "corpus": report.corpus,
        "notes": notes,
        "failures": dict(report.failures),
        "settings": {name: SETTINGS[name] for name in metrics},
        "per_item": per_item,
    }


# ---------------------------------------------------------------------------------------------- output


def _number(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) else "n/a"


def format_table(report: dict) -> str:
    """Mean, std and count per metric, then the corpus-level figures and the notes."""
    lines = [f"{report['task']}: {report['items']} items", f"  {'metric':<22}{'mean':>10}{'std':>10}{'count':>8}"]
    for name, stats in report["metrics"].items():
        lines.append(f"  {name:<22}{_number(stats['mean']):>10}{_number(stats['std']):>10}{stats['count']:>8}")
    for name, value in report["corpus"].items():
        if isinstance(value, dict):  # the Inception Score: mean and std over splits
            label = f"{name} ({value['splits']} splits)"
            lines.append(f"  {label:<22}{_number(value['mean']):>10}{_number(value['std']):>10}{report['items']:>8}")
        else:
            lines.append(f"  {name + ' (corpus)':<22}{_number(value):>10}{'':>10}{report['items']:>8}")
    if report["notes"]:
        lines += ["notes:", *(f"  - {note}" for note in report["notes"])]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- program

FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Defined only when run as a program, so that importing this module adds no flags to another tool."""
    flags.DEFINE_enum("task", None, list(tasks.REPORT_ORDER), "The task whose metrics to compute.", required=True)
    flags.DEFINE_string("generated", None, "Folder of generated <id>.wav files.", required=True)
    flags.DEFINE_string("reference", None, "Folder of reference <id>.wav, or a jsonl manifest.", required=True)
    flags.DEFINE_string("json", None, "Report file (default: <generated>/metrics.json).")
    flags.DEFINE_string("text_key", "text", "Manifest field of the TTS transcript / T2A-T2M caption.")
    flags.DEFINE_list("metrics", [], "Metrics to compute (default: all the task's metrics with a model).")
    flags.DEFINE_enum("length_mismatch", "trim", ["trim", "error"], "SE/SR pairs of different lengths.")
    flags.DEFINE_string("asr_hmm", None, "WER: a PocketSphinx acoustic model folder instead of the wheel's en-us.")
    flags.DEFINE_string("asr_lm", None, "WER: a PocketSphinx language model instead of the wheel's.")
    flags.DEFINE_string("asr_dict", None, "WER: a PocketSphinx pronunciation dictionary instead of the wheel's.")
    flags.DEFINE_string("asr_plugin", None, "WER: 'package.module:factory' returning another recogniser.")
    flags.DEFINE_string("speaker_model", None, "SIM: speaker-embedding ONNX model (fbank or waveform input).")
    flags.DEFINE_integer("speaker_model_rate", 16000, "SIM: a waveform speaker model's sample rate.")
    flags.DEFINE_string("audio_model", None, "FD/KL/IS: audio classifier ONNX (waveform -> embedding, logits).")
    flags.DEFINE_integer("audio_model_rate", 16000, "FD/KL/IS: the audio classifier's sample rate.")
    flags.DEFINE_string("audio_model_embedding", "embedding", "FD: the classifier's embedding output.")
    flags.DEFINE_string("audio_model_logits", "logits", "KL/IS: the classifier's class-logits output.")
    flags.DEFINE_integer("is_splits", 10, "IS: chunks of the generated items (at most one per item).", lower_bound=1)
    flags.DEFINE_string("clap_audio_model", None, "CLAP: audio tower ONNX (waveform -> embedding).")
    flags.DEFINE_string("clap_text_model", None, "CLAP: text tower ONNX (input_ids[, attention_mask] -> embedding).")
    flags.DEFINE_string("clap_tokenizer", None, "CLAP: the text tower's Hugging Face tokenizer.json.")
    flags.DEFINE_integer("clap_rate", 48000, "CLAP: the audio tower's sample rate.")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise SystemExit(f"evaluate: unexpected arguments {argv[1:]} (everything is a --flag)")
    fields = {f.name for f in dataclasses.fields(Options)}
    options = Options(**{name: FLAGS[name].value for name in fields if name != "metrics"}, metrics=tuple(FLAGS.metrics))
    try:
        items = load_items(FLAGS.generated, FLAGS.reference, FLAGS.text_key)
        report = evaluate(FLAGS.task, items, options)
    except EvaluationError as error:
        raise SystemExit(f"evaluate: {error}") from None
    report = {"generated": FLAGS.generated, "reference": FLAGS.reference, **report}
    print(format_table(report))
    path = pathlib.Path(FLAGS.json or pathlib.Path(FLAGS.generated) / "metrics.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cli.json_ready(report), indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    _define_flags()
    cli.run(main)
