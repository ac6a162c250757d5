"""A request as users give it (the flags of the sample CLI, the keys of a batch line, the Python API's dicts):
its fields, the checks made before any model loads, and the model sample it becomes."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import soundfile as sf
from absl import logging

from uniflow_jax import tasks
from uniflow_jax.frontends import audio, g2p, score, speaker, symbols, video
from uniflow_jax.inference.model import LoadedModel, Request
from uniflow_jax.weights import converted as converted_folder
from uniflow_jax.weights import release

LENGTH_RULES = ("input", "predicted")  # SE/SR/V2A: the input's own length, or the duration predictor's
WORD_FIELDS = ("phonemes", "score_phonemes", "score_notes", "score_durations", "score_slurs")  # or JSON lists
TEXT_FIELDS = ("caption", "transcript", "music_score", "singer", "instruction", "length")
PATH_FIELDS = ("speaker_embedding", "ref_speaker_speech", "speaker_model", "pinyin_table", "noisy_speech",
               "low_sr_audio", "video", "video_features")  # fmt: skip
FIELDS = (*TEXT_FIELDS, *WORD_FIELDS, *PATH_FIELDS, "duration", "instruction_idx", "seed")
SHARED_FIELDS = ("speaker_model", "pinyin_table")  # with --batch, the flags apply to every line lacking them
DEFAULTS = {"singer": "Alto-1", "instruction_idx": 0}


def _content_inputs(task: tasks.Task) -> list[tuple[str, ...]]:
    """The ways to give a task's content, one of them exactly: each, the fields that together make it."""
    return {
        "text": [("caption",)],
        "phoneme": [("transcript",), ("phonemes",)],
        "score": [("music_score",), ("score_phonemes", "score_notes", "score_durations")],
        "audio": [("noisy_speech",) if task.short == "se" else ("low_sr_audio",)],
        "video": [("video",), ("video_features",)],
    }[task.content]


def check_fields(task: tasks.Task, fields: Mapping[str, Any]) -> None:
    """Raises ``ValueError`` when the task's input is missing, given twice or malformed, or a value is out of
    range."""
    ways = _content_inputs(task)
    given = [way for way in ways if any(fields.get(name) for name in way)]
    if len(given) != 1 or not all(fields.get(name) for name in given[0]):
        needs = " or ".join(" + ".join(way) for way in ways)
        raise ValueError(f"{task.short} needs {needs}" + (", not several" if len(given) > 1 else ""))
    if task.content == "phoneme":
        if fields.get("ref_speaker_speech") and fields.get("speaker_embedding"):
            raise ValueError("tts: give ref_speaker_speech or speaker_embedding, not both")
        if fields.get("ref_speaker_speech") and not fields.get("speaker_model"):
            raise ValueError("ref_speaker_speech needs speaker_model (an ONNX speaker model, e.g. WeSpeaker's)")
    if fields.get("music_score"):
        score.split_music_score(fields["music_score"])
    duration = fields.get("duration")
    if duration is not None and not duration > 0:
        raise ValueError(f"duration must be positive, got {duration}")
    rule = fields.get("length")
    if rule is not None:
        if rule not in LENGTH_RULES:
            raise ValueError(f"length must be one of {', '.join(LENGTH_RULES)}, got {rule!r}")
        if task.content not in ("audio", "video"):
            raise ValueError(f"length applies to se, sr and v2a only (a {task.short} length is predicted)")
    seed = fields.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    index = fields.get("instruction_idx") or 0
    if not 0 <= index < tasks.NUM_INSTRUCTIONS:
        raise ValueError(f"instruction_idx must be 0..{tasks.NUM_INSTRUCTIONS - 1}, got {index}")


MAX_INPUT_SECONDS = 30.0  # = the longest latent bucket (1500 frames) of the released VAE's 50 frames per second
MAX_VIDEO_SECONDS = 10.0  # read from a video file, as the original CLI (longer videos are cut there)


class InvalidRequests(ValueError):
    """Every problem found in a set of requests, one ``where: reason`` each (nothing was generated)."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclasses.dataclass(frozen=True)
class InputContext:
    """What checking a request's inputs needs to know of the model before it is loaded."""

    pinyin_table: pathlib.Path | None = None  # the checkpoint folder's, for --music_score without its own
    has_clip: bool = True  # False: a converted release without CLIP (V2A needs --video_features)

    @classmethod
    def of_converted(cls, folder: str | pathlib.Path) -> InputContext:
        """The context of a folder written by ``python -m uniflow_jax.convert``."""
        table = pathlib.Path(folder) / release.PINYIN_TABLE
        return cls(table if table.exists() else None, converted_folder.has_item(folder, "clip"))


def _audio_problem(path: str, what: str) -> None:
    """Raises ``ValueError`` unless ``path`` decodes to finite, non-empty audio of at most the longest bucket."""
    if not pathlib.Path(path).is_file():
        raise ValueError(f"{what} {path}: no such file")
    try:
        wave, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise ValueError(f"{what} {path}: cannot read audio ({error})") from None
    if len(wave) == 0:
        raise ValueError(f"{what} {path}: no samples")
    if not np.isfinite(wave).all():
        raise ValueError(f"{what} {path}: {int(np.sum(~np.isfinite(wave)))} samples are NaN or infinite")
    seconds = len(wave) / rate
    if seconds > MAX_INPUT_SECONDS:
        raise ValueError(f"{what} {path}: {seconds:.1f} s, longer than the {MAX_INPUT_SECONDS:g} s the sampler takes")


def _array_file(path: str, what: str, ndim: int) -> np.ndarray:
    if not pathlib.Path(path).is_file():
        raise ValueError(f"{what} {path}: no such file")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise ValueError(f"{what} {path}: not a .npy array ({error})") from None
    if array.ndim != ndim or array.size == 0 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{what} {path}: expected a non-empty {ndim}-d numeric array, got {array.dtype} {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} {path}: contains NaN or infinite values")
    return array


def check_inputs(task: tasks.Task, fields: Mapping[str, Any], context: InputContext = InputContext()) -> None:
    """Everything about a request that can be checked before the model loads: its fields (:func:`check_fields`),
    non-blank texts, known phones, notes and singers, and files that exist and decode to finite, non-empty
    inputs within the length limits. Raises ``ValueError`` with the first problem."""
    check_fields(task, fields)
    for name in ("caption", "transcript", "music_score", "instruction", "phonemes", "score_phonemes"):
        if name in fields and fields[name] is not None and not str(fields[name]).strip():
            raise ValueError(f"{name} is blank")
    duration = fields.get("duration")
    if duration is not None and duration > MAX_INPUT_SECONDS:
        raise ValueError(f"duration {duration:g} s is longer than the {MAX_INPUT_SECONDS:g} s the sampler makes")
    if task.content == "phoneme":
        phones = fields["phonemes"].split() if fields.get("phonemes") else g2p.phonemize(fields["transcript"])
        symbols.tts_phone_ids(phones, oov=None if fields.get("phonemes") else "spn")
        if fields.get("speaker_embedding"):
            _array_file(fields["speaker_embedding"], "speaker_embedding", 1)
        if fields.get("ref_speaker_speech"):
            _audio_problem(fields["ref_speaker_speech"], "ref_speaker_speech")
            if not pathlib.Path(fields["speaker_model"]).is_file():
                raise ValueError(f"speaker_model {fields['speaker_model']}: no such file")
    elif task.content == "score":
        symbols.singer_id(fields.get("singer", DEFAULTS["singer"]))
        if fields.get("music_score"):
            table = fields.get("pinyin_table") or context.pinyin_table
            if table is None:
                raise ValueError("a music_score needs a pinyin_table (a release checkpoint folder has one)")
            phones = score.parse_music_score(fields["music_score"], score.read_pinyin_table(table))
        else:
            phones = _phone_score(fields, None)
        symbols.svs_phone_ids(phones.phones)
        for note in phones.notes:
            symbols.note_to_midi(note)
    elif task.content == "audio":
        _audio_problem(fields["noisy_speech" if task.short == "se" else "low_sr_audio"], task.short + " input")
    elif task.content == "video":
        if fields.get("video_features"):
            features = _array_file(fields["video_features"], "video_features", 2)
            if len(features) / video.FRAME_RATE > MAX_INPUT_SECONDS:
                raise ValueError(f"video_features: {len(features)} frames, more than {MAX_INPUT_SECONDS:g} s")
        else:
            if not context.has_clip:
                raise ValueError("a video needs the CLIP vision tower: this checkpoint was converted without "
                                 "--clip (convert it again with --clip, or give video_features)")  # fmt: skip
            if not pathlib.Path(fields["video"]).is_file():
                raise ValueError(f"video {fields['video']}: no such file")
            video.probe(fields["video"])


def build_sample(task: tasks.Task, fields: Mapping[str, Any], model: LoadedModel) -> Request:
    """A request's inputs (``fields``: named like the flags, from the command line or a jsonl line; missing
    or None = not given) as a model sample."""
    fields = {**DEFAULTS, **{k: v for k, v in fields.items() if v is not None}}
    check_fields(task, fields)
    hop, rate = model.cfg.vae.hop_length, model.config.model.sample_rate
    instruction = model.instruction(task, fields.get("instruction"), fields["instruction_idx"])
    request = Request(task, {"task": task.id, "instruction": instruction}, seed=fields.get("seed") or 0)
    request.aligned = task.content in ("audio", "video") and fields.get("length", "input") == "input"
    sample = request.sample
    if task.content == "text":
        sample["text_ids"] = model.caption_ids(fields["caption"])
        if fields.get("duration"):
            request.samples = round(fields["duration"] * rate)
            request.frames = max(1, -(-request.samples // hop))
    elif task.content == "phoneme":
        if fields.get("transcript"):  # G2P output outside the phone set becomes spn, as in the original
            sample["phoneme"] = symbols.tts_phone_ids(g2p.phonemize(fields["transcript"]), oov="spn")
        else:
            sample["phoneme"] = symbols.tts_phone_ids(fields["phonemes"])
        sample["xvector"] = _xvector(fields, model.cfg.phoneme.speaker_dim)
    elif task.content == "score":
        phones = _phone_score(fields, model)
        sample.update(
            score_phoneme=symbols.svs_phone_ids(phones.phones),
            midi=np.array([symbols.note_to_midi(n) for n in phones.notes], np.int32),
            midi_duration=np.array(phones.durations, np.float32),
            is_slur=np.array(phones.slurs, np.int32),
            singer=symbols.singer_id(fields["singer"]),
        )
    elif task.content == "audio":
        wave = audio.load_audio(fields["noisy_speech" if task.short == "se" else "low_sr_audio"], rate)
        frames = max(1, -(-len(wave) // hop))
        if request.aligned:
            request.samples = len(wave)  # the output keeps the input's exact length
        sample["audio"] = np.pad(wave, (0, frames * hop - len(wave)))
    elif task.content == "video":
        if fields.get("video_features"):
            features = np.load(fields["video_features"]).astype(np.float32)
            if features.ndim != 2 or features.shape[1] != model.cfg.video_dim:
                raise ValueError(f"{fields['video_features']}: features of shape {features.shape}, expected "
                                 f"(frames, {model.cfg.video_dim})")  # fmt: skip
            sample["video"] = features
        else:
            sample["video"] = model.clip_features(video.read_frames(fields["video"], max_seconds=MAX_VIDEO_SECONDS))
    return request


def _xvector(fields: Mapping[str, Any], dim: int) -> np.ndarray:
    """The TTS speaker: a saved x-vector, one computed from reference speech, or zeros (with a warning)."""
    if fields.get("speaker_embedding"):
        source, xvector = fields["speaker_embedding"], np.load(fields["speaker_embedding"]).reshape(-1)
    elif fields.get("ref_speaker_speech"):
        source = f"{fields['speaker_model']} on {fields['ref_speaker_speech']}"
        xvector = speaker.embed(fields["ref_speaker_speech"], fields["speaker_model"])
    else:
        logging.warning("tts without a speaker_embedding or ref_speaker_speech: using a zero x-vector")
        return np.zeros(dim, np.float32)
    if len(xvector) != dim:
        raise ValueError(f"{source}: {len(xvector)} values, the model's x-vectors have {dim}")
    return xvector.astype(np.float32)


def _phone_score(fields: Mapping[str, Any], model: LoadedModel | None) -> score.PhoneScore:
    """The SVS score per phone: a word-level music score expanded (with ``model``'s pinyin table), or the
    explicit per-phone lists."""
    if fields.get("music_score"):
        return score.parse_music_score(fields["music_score"], model.pinyin_table(fields.get("pinyin_table")))
    phones = fields["score_phonemes"].split()
    notes = fields["score_notes"].split()
    try:
        seconds = [float(x) for x in fields["score_durations"].split()]
    except ValueError:
        raise ValueError(f"score_durations must be seconds per phone, got {fields['score_durations']!r}") from None
    if not all(np.isfinite(s) and s >= 0 for s in seconds):
        raise ValueError(f"score_durations must be finite and non-negative, got {fields['score_durations']!r}")
    try:
        slurs = [int(x) for x in fields["score_slurs"].split()] if fields.get("score_slurs") else [0] * len(phones)
    except ValueError:
        raise ValueError(f"score_slurs must be 0 or 1 per phone, got {fields['score_slurs']!r}") from None
    if not len(phones) == len(notes) == len(seconds) == len(slurs):
        raise ValueError("SVS: phones, notes, durations and slurs need one entry per phone")
    return score.PhoneScore(phones, notes, seconds, slurs)


@dataclasses.dataclass(frozen=True)
class Line:
    """One request of a --batch file: where it is (``file:line``), its id, task and fields."""

    where: str
    id: str
    task: tasks.Task
    fields: dict


def read_requests(
    path: str | pathlib.Path, defaults: Mapping[str, str] | None = None, context: InputContext = InputContext()
) -> list[Line]:
    """Parses and fully checks a jsonl file of requests (UTF-8, with or without a BOM): every line's fields and
    input files (:func:`check_inputs`). Raises :class:`InvalidRequests` listing every bad line as file:line.
    ``defaults``: values of :data:`SHARED_FIELDS` for the lines that do not give them."""
    path = pathlib.Path(path)
    try:
        rows = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidRequests([f"{path}: cannot read the requests ({error})"]) from None
    lines: list[Line] = []
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for number, row in enumerate(rows, start=1):
        if not row.strip():
            continue
        where = f"{path}:{number}"
        try:
            line = _parse_line(row, where, path.parent, defaults or {})
            if (line.task.short, line.id) in seen:
                raise ValueError(f"a second {line.task.short} request with id {line.id!r}")
            seen.add((line.task.short, line.id))
            check_inputs(line.task, line.fields, context)
        except (ValueError, KeyError, OSError, ImportError) as error:
            problems.append(f"{where}: {error.args[0] if isinstance(error, KeyError) else error}")
            continue
        lines.append(line)
    if not lines and not problems:
        problems.append(f"{path}: no requests")
    if problems:
        raise InvalidRequests(problems)
    return lines


def _parse_line(row: str, where: str, base: pathlib.Path, defaults: Mapping[str, str]) -> Line:
    try:
        obj = json.loads(row)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    return parse_request(obj, where, base, defaults)


def parse_request(obj: Mapping[str, Any], where: str, base: pathlib.Path, defaults: Mapping[str, str]) -> Line:
    """A request given as a mapping (a batch line's object, a Python API dict) → a :class:`Line`; paths relative
    to ``base``. ``ValueError`` for an unknown key or a value of the wrong type."""
    obj = dict(obj)
    for key in ("id", "task"):
        if key not in obj:
            raise ValueError(f"no {key!r}")
    rid, task = obj.pop("id"), tasks.get(str(obj.pop("task")))
    name = str(rid)
    if isinstance(rid, bool) or not isinstance(rid, (str, int)) or name in ("", ".", "..") or {"/", "\\"} & set(name):
        raise ValueError(f"id must be a non-empty string or integer usable as a file name, got {rid!r}")
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; known: id, task, {', '.join(FIELDS)}")
    fields: dict[str, Any] = {}
    for key, value in obj.items():
        if value is None:
            continue
        if key in WORD_FIELDS and isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
            value = " ".join(str(v) for v in value)
        if key == "duration":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"duration must be a number of seconds, got {value!r}")
            value = float(value)
        elif key in ("instruction_idx", "seed"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{key} must be an integer, got {value!r}")
        elif not isinstance(value, str):
            raise ValueError(f"{key} must be a string{' or a list' if key in WORD_FIELDS else ''}, got {value!r}")
        if key in PATH_FIELDS:
            value = str(base / pathlib.Path(value).expanduser())  # relative to the jsonl's folder
        fields[key] = value
    fields = {**{k: v for k, v in defaults.items() if k in SHARED_FIELDS}, **fields}
    return Line(where, name, task, fields)


def line_seed(run_seed: int, line: Line) -> int:
    """The noise seed of a batch line that gives none: from the run's ``--seed`` and the line's task and id only
    (never its position or its batch)."""
    return zlib.crc32(f"{run_seed}/{line.task.short}/{line.id}".encode())


def length_hint(line: Line) -> float:
    """A cheap guess of a request's output length (within a task only), to batch similar lengths together."""
    f = line.fields
    if line.task.content == "text":
        return f.get("duration") or 0.0
    if line.task.content == "phoneme":
        try:
            return len(f["phonemes"].split() if f.get("phonemes") else g2p.phonemize(f["transcript"]))
        except ValueError:  # reported when the request is built
            return 0.0
    if line.task.content == "score":
        if f.get("music_score"):
            return score.total_seconds(f["music_score"])
        try:
            return sum(float(x) for x in f["score_durations"].split())
        except ValueError:
            return 0.0
    if line.task.content == "audio":
        try:
            return sf.info(f["noisy_speech" if line.task.short == "se" else "low_sr_audio"]).duration
        except Exception:  # unreadable files are reported when the request is built
            return 0.0
    return 0.0


def settings(task: tasks.Task, num_steps: int | None, guidance_scale: float | None) -> tuple[int, float]:
    steps, guidance = task.num_steps, task.guidance_scale  # the original CLI's defaults
    return num_steps or steps, guidance if guidance_scale is None else guidance_scale
