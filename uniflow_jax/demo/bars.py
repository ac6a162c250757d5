"""The demo's per-task bars: does the generated audio follow its condition, by more than a fair baseline?

Each bar is judged three times on the same held-out items, with the same measure:

* **model** — the generated audio of each item, judged against that item's own condition;
* **baseline** — the fair alternative: the task's input itself where it has one (SE: the noisy speech, SR: the
  band-limited audio), otherwise a model that ignores its condition (every *other* item's output judged against
  this item's condition, averaged);
* **ceiling** — the item's reference passed through the demo codec: what any latent model decoded by this codec
  can reach at best.

A bar is met when the model's figure meets the threshold and is *strictly* better than the baseline's: a tie or
a worse figure is never progress. A task meets its bars when every bar that applies to its items is met. The
thresholds are those of issue 19; where it leaves the share of items open, the bar says which share it uses.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import re
from collections.abc import Callable, Mapping

import numpy as np

from uniflow_jax.demo import report
from uniflow_jax.metrics import audio as metrics
from uniflow_jax.metrics import speech

SAMPLE_RATE = report.SAMPLE_RATE
_COUNT_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4}
_CHIRP = re.compile(r"\b(rising|falling) chirps?\b")
TEMPO_CLASSES = {"slow": (60, 76), "moderate": (90, 110), "fast": (130, 150)}  # BPM ranges of the corpus
FLASH_TOLERANCE_S = 0.1


@dataclasses.dataclass(frozen=True)
class Bar:
    """One check of a task. ``value(condition id, audio path)`` measures one item; ``better`` says which way is
    good. With ``share`` the figure is the share of items that pass (value meets ``threshold``, or beats the
    baseline's value of the same item when there is no threshold); without it the figure is the mean value."""

    name: str
    statement: str
    value: Callable[[Judge, str, pathlib.Path], float]
    better: str  # "lower" | "higher"
    threshold: float | None = None
    share: float | None = None
    baseline: str | None = None  # "input" | "mismatched" | None (an absolute bar)
    applies: Callable[[report.Item], bool] = lambda item: True

    def passes(self, value: float, reference: float | None = None) -> bool:
        """Whether one item's value passes: meets the threshold, or is strictly better than ``reference``."""
        if not math.isfinite(value):
            return False
        target = self.threshold if self.threshold is not None else reference
        if target is None or not math.isfinite(target):
            return False
        if self.threshold is not None:
            return value <= target if self.better == "lower" else value >= target
        return value < target if self.better == "lower" else value > target


class Judge:
    """The items of one task and their audio (features computed once, shared with the report)."""

    def __init__(self, items: list[report.Item], features: report._Features):
        self.items = {item.id: item for item in items}
        self.features = features

    def audio(self, path: pathlib.Path) -> np.ndarray:
        return self.features.audio(path)

    def reference(self, key: str) -> np.ndarray:
        return self.audio(self.items[key].target)

    def input_path(self, key: str) -> pathlib.Path:
        item = self.items[key]
        field = {"se": "noisy_speech", "sr": "low_sr_audio"}[item.task]
        return item.folder / item.content[field]


# ---------------------------------------------------------------------------------------------- measures


def _log_mel_to_reference(j: Judge, key: str, path: pathlib.Path) -> float:
    return metrics.log_mel_distance(j.audio(path), j.reference(key), SAMPLE_RATE)


def _pesq(j: Judge, key: str, path: pathlib.Path) -> float:
    try:
        return speech.pesq_wb(report.to_16k(j.reference(key)), report.to_16k(j.audio(path)))
    except speech.UnscorableError:
        return float("nan")


def _dnsmos(j: Judge, key: str, path: pathlib.Path) -> float:
    return speech.dnsmos(report.to_16k(j.audio(path)))["ovrl"]


def _cutoff(j: Judge, key: str) -> float:
    return float(j.items[key].content["cutoff_hz"])


def _low_band_distance(j: Judge, key: str, path: pathlib.Path) -> float:
    source = j.audio(j.input_path(key))
    return metrics.log_mel_distance(j.audio(path), source, SAMPLE_RATE, max_hz=_cutoff(j, key))


def _energy_added(j: Judge, key: str, path: pathlib.Path) -> float:
    cutoff = _cutoff(j, key)
    added = metrics.band_energy_db(j.audio(path), SAMPLE_RATE, cutoff)
    return added - metrics.band_energy_db(j.audio(j.input_path(key)), SAMPLE_RATE, cutoff)


def _voiced_fraction(j: Judge, key: str, path: pathlib.Path) -> float:
    return float(np.mean(np.isfinite(j.features.f0(path))))


def _duration_error(j: Judge, key: str, path: pathlib.Path) -> float:
    return abs(len(j.audio(path)) / len(j.reference(key)) - 1.0)


def _median_f0_semitones(j: Judge, key: str, path: pathlib.Path) -> float:
    ours, theirs = j.features.f0(path), j.features.f0(j.items[key].target)
    if not np.isfinite(ours).any() or not np.isfinite(theirs).any():
        return float("inf")  # nothing voiced: no pitch to compare
    return abs(12.0 * math.log2(np.nanmedian(ours) / np.nanmedian(theirs)))


def note_accuracy(f0: np.ndarray, score: dict, tolerance: float = 1.0) -> float:
    """Share of the score's notes voiced in ``f0`` (≥ half their frames) whose median pitch is within
    ``tolerance`` semitones of the note; the score's time line is stretched to the track's length. 0 when no
    note is voiced."""
    seconds = np.cumsum([0.0, *score["phoneme_duration"]])
    bounds = np.round(seconds / seconds[-1] * len(f0)).astype(int)
    hits = voiced = 0
    for midi, start, end in zip(score["midi"], bounds[:-1], bounds[1:], strict=True):
        frames = f0[start:end]
        if midi <= 0 or len(frames) == 0 or np.mean(np.isfinite(frames)) < 0.5:
            continue
        voiced += 1
        hits += abs(float(np.nanmedian(metrics.hz_to_midi(frames))) - midi) <= tolerance
    return hits / voiced if voiced else 0.0


def _notes(j: Judge, key: str, path: pathlib.Path) -> float:
    return note_accuracy(j.features.f0(path), report.svs_score(j.items[key]))


def _scale_fraction(j: Judge, key: str, path: pathlib.Path) -> float:
    scale = report.caption_key(j.items[key].content["caption"])
    value = metrics.pitch_class_fraction(j.features.f0(path), scale) if scale else float("nan")
    return 0.0 if scale and not math.isfinite(value) else value  # nothing voiced: no note in the key


def tempo_class(bpm: float) -> str:
    """The corpus's tempo word nearest (in log tempo) to ``bpm``."""
    return min(TEMPO_CLASSES, key=lambda name: abs(math.log2(bpm / float(np.mean(TEMPO_CLASSES[name])))))


def _tempo_match(j: Judge, key: str, path: pathlib.Path) -> float:
    said = j.items[key].content["caption"].split()[1]
    return float(tempo_class(metrics.tempo_bpm(j.audio(path), SAMPLE_RATE)) == said)


def caption_event_count(caption: str) -> int:
    """Events a T2A caption names: ``two beeps then a hum`` → 3."""
    return sum(_COUNT_WORDS[part.split()[0]] for part in re.split(r" then |, followed by ", caption))


def _event_count_error(j: Judge, key: str, path: pathlib.Path) -> float:
    found = len(j.features.onsets(path))
    return float(abs(found - caption_event_count(j.items[key].content["caption"])))


def _chirp_direction(j: Judge, key: str, path: pathlib.Path) -> float:
    said = 1 if _CHIRP.search(j.items[key].content["caption"])[1] == "rising" else -1
    heard = metrics.sweep_directions(j.audio(path), SAMPLE_RATE)
    return float(bool(heard) and np.sign(sum(heard)) == said)


def _coverage(j: Judge, key: str, path: pathlib.Path) -> float:
    return len(j.audio(path)) / len(j.reference(key))  # the reference lasts as long as the video


def _flashes_heard(j: Judge, key: str, path: pathlib.Path) -> float:
    flashes = np.array([float(e["onset"]) for e in j.items[key].content.get("events", [])])
    if not len(flashes):
        return float("nan")
    onsets = j.features.onsets(path)
    if not len(onsets):
        return 0.0
    return float(np.mean(np.abs(flashes[:, None] - onsets[None, :]).min(axis=1) <= FLASH_TOLERANCE_S + 1e-9))


BARS: dict[str, tuple[Bar, ...]] = {
    "se": (
        Bar("log_mel", "log-mel distance to the clean speech below the noisy input's on ≥ 3/4 items",
            _log_mel_to_reference, "lower", share=0.75, baseline="input"),
        Bar("pesq_wb", "mean wide-band PESQ above the noisy input's", _pesq, "higher", baseline="input"),
        Bar("dnsmos_ovrl", "mean DNSMOS (overall) above the noisy input's", _dnsmos, "higher", baseline="input"),
    ),
    "sr": (
        Bar("log_mel", "mean log-mel distance to the full-band reference below the band-limited input's",
            _log_mel_to_reference, "lower", baseline="input"),
        Bar("low_band_kept", "mean log-mel distance to the input below its cutoff ≤ 0.5 (the band is kept)",
            _low_band_distance, "lower", threshold=0.5, baseline="mismatched"),
        Bar("energy_added_db", "mean energy above the cutoff ≥ 10 dB over the input's (the band is filled)",
            _energy_added, "higher", threshold=10.0, baseline="input"),
    ),
    "tts": (
        Bar("voiced_fraction", "mean voiced fraction ≥ 0.5", _voiced_fraction, "higher", threshold=0.5),
        Bar("duration_error", "duration within 10 % of the reference on ≥ 3/4 items",
            _duration_error, "lower", threshold=0.10, share=0.75, baseline="mismatched"),
        Bar("median_f0_semitones", "median F0 within 3 semitones of the speaker's on ≥ 3/4 items",
            _median_f0_semitones, "lower", threshold=3.0, share=0.75, baseline="mismatched"),
    ),
    "svs": (
        Bar("note_f0_accuracy", "mean share of voiced notes sung within 1 semitone of the score ≥ 0.6",
            _notes, "higher", threshold=0.6, baseline="mismatched"),
    ),
    "t2m": (
        Bar("scale_fraction", "mean share of voiced frames in the caption's key ≥ 0.7",
            _scale_fraction, "higher", threshold=0.7, baseline="mismatched"),
        Bar("tempo_class", "tempo class (slow/moderate/fast) of the caption on ≥ half the items",
            _tempo_match, "higher", threshold=1.0, share=0.5, baseline="mismatched"),
    ),
    "t2a": (
        Bar("event_count_error", "number of events within ±1 of the caption's on ≥ half the items",
            _event_count_error, "lower", threshold=1.0, share=0.5, baseline="mismatched"),
        Bar("chirp_direction", "rising/falling chirps where the caption says so, on ≥ half of those items",
            _chirp_direction, "higher", threshold=1.0, share=0.5, baseline="mismatched",
            applies=lambda item: bool(_CHIRP.search(item.content["caption"]))),
    ),
    "v2a": (
        Bar("coverage", "output covers the whole video (≥ 99 % of its length) on every item",
            _coverage, "higher", threshold=0.99, share=1.0),
        Bar("flashes_heard", "an onset within 100 ms of ≥ half the flashes, on ≥ half the items",
            _flashes_heard, "higher", threshold=0.5, share=0.5, baseline="mismatched"),
    ),
}  # fmt: skip


# ---------------------------------------------------------------------------------------------- judging


def _mean(values) -> float:
    values = [v for v in values if math.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def _figure(bar: Bar, values: Mapping[str, float], baseline: Mapping[str, float] | None = None) -> float:
    """The bar's figure of per-item values: their mean, or the share of passing items (against ``baseline``'s
    value of the same item for a bar without threshold)."""
    if bar.share is None:
        return _mean(values.values())
    passed = [bar.passes(v, None if baseline is None else baseline.get(key)) for key, v in values.items()]
    return float(np.mean(passed)) if passed else float("nan")


def _meets(bar: Bar, figure: float, base_figure: float | None) -> bool:
    """Threshold or share reached and, where the bar has a baseline figure, strictly better than it."""
    if not math.isfinite(figure):
        return False
    if bar.share is not None:
        reached = figure >= bar.share
        if bar.threshold is None or bar.baseline is None:  # the share itself counts items that beat the baseline
            return reached
        return reached and base_figure is not None and figure > base_figure
    reached = bar.threshold is None or bar.passes(figure)
    if bar.baseline is None:
        return reached
    if base_figure is None or not math.isfinite(base_figure):
        return False
    return reached and (figure < base_figure if bar.better == "lower" else figure > base_figure)


def _baseline(bar: Bar, judge: Judge, keys: list[str], generated: Mapping[str, pathlib.Path]):
    """(per-item baseline values, the baseline's figure or None where it has none)."""
    if bar.baseline == "input":
        values = {key: float(bar.value(judge, key, judge.input_path(key))) for key in keys}
        has_figure = bar.share is None or bar.threshold is not None
        return values, _figure(bar, values) if has_figure else None
    others = {key: [float(bar.value(judge, key, generated[o])) for o in generated if o != key] for key in keys}
    values = {key: _mean(v) for key, v in others.items()}
    if bar.share is None:
        return values, _mean(values.values())
    # the expected share of a model that ignores its condition: every other output judged by this item's bar
    return values, _mean([float(np.mean([bar.passes(v) for v in vs])) for vs in others.values() if vs])


def judge_bar(
    bar: Bar, judge: Judge, generated: Mapping[str, pathlib.Path], codec: Mapping[str, pathlib.Path] | None
) -> dict:
    """One bar's entry of the report: statement, model / baseline / ceiling figures and per-item values."""
    keys = [key for key in generated if bar.applies(judge.items[key])]
    entry: dict = {"statement": bar.statement, "better": bar.better, "threshold": bar.threshold,
                   "share": bar.share, "baseline_kind": bar.baseline, "items": len(keys)}  # fmt: skip
    if not keys:
        return {**entry, "verdict": "not applicable", "reason": "no evaluated item has this condition"}
    if bar.baseline == "mismatched" and len(generated) < 2:
        return {**entry, "verdict": "not measured", "reason": "a mismatched baseline needs two items or more"}
    try:
        model = {key: float(bar.value(judge, key, generated[key])) for key in keys}
        base_values, base_figure = _baseline(bar, judge, keys, generated) if bar.baseline else (None, None)
        ceiling = None
        if codec is not None and all(key in codec for key in keys):
            ceiling = {key: float(bar.value(judge, key, codec[key])) for key in keys}
    except ImportError as error:
        return {**entry, "verdict": "not measured", "reason": str(error)}

    def summary(values: dict[str, float], figure: float | None) -> dict:
        return {"figure": figure, "mean": _mean(values.values()), "values": values}

    figure = _figure(bar, model, base_values)
    entry["model"] = summary(model, figure)
    entry["baseline"] = None if base_values is None else summary(base_values, base_figure)
    entry["ceiling"] = None if ceiling is None else summary(ceiling, _figure(bar, ceiling, base_values))
    entry["verdict"] = "met" if _meets(bar, figure, base_figure) else "not met"
    if ceiling is not None and not _meets(bar, entry["ceiling"]["figure"], base_figure):
        entry["note"] = "the codec's round trip of the references does not meet this bar either"
    return entry


def judge_task(
    items: list[report.Item],
    generated: Mapping[str, pathlib.Path],
    codec: Mapping[str, pathlib.Path] | None,
    features: report._Features,
) -> dict:
    """{"bars": {name: entry}, "met": whether every applicable bar is met}."""
    if not items or not generated:
        return {"bars": {}, "met": False}
    judge = Judge(items, features)
    entries = {bar.name: judge_bar(bar, judge, generated, codec) for bar in BARS[items[0].task]}
    judged = [e["verdict"] for e in entries.values() if e["verdict"] != "not applicable"]
    return {"bars": entries, "met": bool(judged) and all(v == "met" for v in judged)}
