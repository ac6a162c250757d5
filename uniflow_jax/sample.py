"""Generate audio for any task with a model we trained (or a random one), one request or a file of many.

One request: ``python -m uniflow_jax.sample TASK [inputs] --workdir RUN --output out.wav``

TASK is t2a, t2m, tts, svs, se, sr or v2a (or the long ids). Inputs follow the original CLI:

    t2a/t2m  --caption "a dog barks twice" [--duration SECONDS]
    tts      --transcript "Hello world." (or --phonemes "HH AH0 L OW1")
             [--ref_speaker_speech ref.wav --speaker_model speaker.onnx | --speaker_embedding xvector.npy]
    svs      --music_score "AP你好<sep>rest | C4 | D4 E4<sep>0.2 | 0.4 | 0.3 0.3" [--pinyin_table TABLE]
             (or --score_phonemes "n i h ao" --score_notes "C4 C4 D4 D4" --score_durations "0.3 0.3 0.4 0.4"
             [--score_slurs "0 0 0 0"]) --singer Alto-1
    se       --noisy_speech noisy.wav          sr  --low_sr_audio low.wav
    v2a      --video clip.mp4 (or --video_features frames.npy)
    every task: --instruction TEXT | --instruction_idx K, --guidance_scale, --num_steps, --seed

Front ends (``uniflow_jax.frontends``): a transcript becomes ARPAbet phones through the CMU dictionary and
letter-to-sound rules (``g2p``); reference speech becomes an x-vector through a user-supplied ONNX speaker model
(``speaker``; without one, a zero x-vector); a music score is expanded per phone with the checkpoint folder's
pinyin table, or ``--pinyin_table`` (``score``). V2A from a video file also writes ``<output stem>.mp4``: the
input video with the generated sound (``video.mux_audio``).

Many requests: ``python -m uniflow_jax.sample --workdir RUN --batch requests.jsonl --out_dir OUT [--batch_size 8]``

One JSON object per line, ``{"id": "a1", "task": "tts", "phonemes": "HH AH0 L OW1", ...}``, the other keys
named like the flags above (word lists may also be JSON lists; relative paths are relative to the jsonl
file's folder; ``--speaker_model`` and ``--pinyin_table`` given on the command line apply to every line that
does not set them). Requests are grouped by task, ordered by their expected length (so that a batch shares one
length bucket) and generated ``--batch_size`` at a time; a line's noise comes from its own ``seed`` (or, without
one, from ``--seed`` and its task and id), and padding never reaches its valid frames, so its audio is the same
whatever its batch companions, position or bucket. ``OUT/<task>/<id>.wav`` (24 kHz mono) is written for each
(and ``OUT/v2a/<id>.mp4`` for a video), and a
summary per task is printed (count, seconds of audio, wall time, real-time factor = wall time / audio time,
compilation included). ``--num_steps`` and ``--guidance_scale`` apply to every request; unset, the
task's defaults (25 steps; guidance 5, SE/SR 1). A malformed line (bad JSON, unknown task or key, a missing
input) stops the run before any generation, naming ``file:line``.

Weights: ``--workdir`` is a run of ``python -m uniflow_jax.train`` (objective "uniflow"). Its config comes from
``RUN/config.json``; its params from the best checkpoint by validation (``RUN/best``, EMA when the run kept
one) or, with ``--checkpoint_kind latest`` or when validation never ran, from the latest one
(``RUN/checkpoints``; its EMA when ``train.ema_decay`` > 0). The frozen VAE/T5/CLIP come from the config's
``model.frozen_weights`` (random when empty, seeded as in training), captions are tokenised with
``data.tokenizer`` (cut at the training's longest text bucket, as in training) and the stock instructions are
the run's (``model.instructions``, else encoded by the frozen T5 as in training). ``--mesh_shape`` overrides
the run's mesh (e.g. a run trained with fsdp=8 sampled on one device: ``--mesh_shape=-1,1,1``).

Without ``--workdir``, ``--config configs/<name>.py`` builds that model with **random** weights (a smoke
test of the whole path; the audio is noise-like), with a SentencePiece tokenizer trained on the task
instructions when ``data.tokenizer`` is empty; ``--seed`` also seeds the weights.

A single request prints the time to first audio (compilation included) and the steady real-time factor.
Lengths: SE/SR outputs have exactly the input's length and V2A outputs cover the whole video, each output frame
conditioned on its own input frame (``--length input``, the default); ``--length predicted`` lets the duration
predictor choose, as the original does. A T2A/T2M ``duration`` gives exactly that many seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import optax
import soundfile as sf
from absl import flags, logging
from flax import nnx
from ml_collections import config_flags
from tqdm import tqdm

from uniflow_jax import cli, config_lib, convert, generate, instructions, parallel, tasks
from uniflow_jax.data import audio
from uniflow_jax.data.collate import NUM_INSTRUCTIONS
from uniflow_jax.frontends import g2p, score, speaker, symbols, text, video
from uniflow_jax.generate import Generator, task_defaults
from uniflow_jax.models import adapter, clip, uniflow
from uniflow_jax.training import checkpoint
from uniflow_jax.training import state as train_state
from uniflow_jax.weights import frozen as frozen_weights

FrozenSource = Callable[[jax.sharding.Mesh], tuple[nnx.GraphDef, nnx.State]]

FLAGS = flags.FLAGS
LENGTH_RULES = ("input", "predicted")  # SE/SR/V2A: the input's own length, or the duration predictor's
config_flags.DEFINE_config_file("config", None, "Model config file (random weights), or --workdir.", lock_config=False)
flags.DEFINE_string(
    "compilation_cache", None, "Keep compiled programs in this folder across runs (JAX's persistent cache)."
)
flags.DEFINE_string("checkpoint", None, "A released checkpoint converted by python -m uniflow_jax.convert.")
flags.DEFINE_string("workdir", None, "A run of python -m uniflow_jax.train: its config, checkpoint and tokenizer.")
flags.DEFINE_enum("checkpoint_kind", "best", ["best", "latest"], "--workdir: best params by validation, or latest.")
flags.DEFINE_string(
    "mesh_shape", None, "--workdir/--checkpoint: mesh (data,fsdp,tensor) instead of the run's, e.g. -1,1,1."
)
flags.DEFINE_string("batch", None, "A jsonl file of requests (one JSON object per line) instead of one request.")
flags.DEFINE_string("out_dir", None, "--batch: output folder (OUT/<task>/<id>.wav).")
flags.DEFINE_integer("batch_size", 8, "--batch: requests generated together.", lower_bound=1, upper_bound=64)
flags.DEFINE_string("task", None, "Task (or give it as the first argument): t2a t2m tts svs se sr v2a.")
flags.DEFINE_string("output", None, "Output wav (default: <task>.wav); V2A from --video adds <stem>.mp4.")
flags.DEFINE_string("caption", None, "T2A/T2M caption.")
flags.DEFINE_float("duration", None, "T2A/T2M: seconds to generate instead of the predicted length.")
flags.DEFINE_string("transcript", None, "TTS: English text (instead of --phonemes).")
flags.DEFINE_string("phonemes", None, "TTS: ARPAbet phones with stress, space separated.")
flags.DEFINE_string("speaker_embedding", None, "TTS: speaker x-vector (.npy, 256 values).")
flags.DEFINE_string("ref_speaker_speech", None, "TTS: reference speech of the speaker (needs --speaker_model).")
flags.DEFINE_string("speaker_model", None, "TTS: ONNX speaker model, fbank (B, T, 80) -> x-vector (e.g. WeSpeaker).")
flags.DEFINE_string("music_score", None, "SVS: 'lyrics<sep>notes<sep>durations', notes and durations per word by |.")
flags.DEFINE_string("pinyin_table", None, "SVS --music_score: m4singer_pinyin2ph.txt (default: the checkpoint's).")
flags.DEFINE_string("score_phonemes", None, "SVS: M4Singer phones, space separated.")
flags.DEFINE_string("score_notes", None, "SVS: one note per phone (C4, G#3, rest).")
flags.DEFINE_string("score_durations", None, "SVS: note duration in seconds per phone.")
flags.DEFINE_string("score_slurs", None, "SVS: 0/1 slur flag per phone (default all 0).")
flags.DEFINE_string("singer", "Alto-1", "SVS: singer name (the original's svs_spk_set.json, in uniflow_jax/resources).")
flags.DEFINE_string("noisy_speech", None, "SE: noisy speech file (any rate/channels).")
flags.DEFINE_string("low_sr_audio", None, "SR: band-limited audio file (any rate/channels).")
flags.DEFINE_string("video", None, "V2A: video file (frames read at 10 fps).")
flags.DEFINE_string("video_features", None, "V2A: per-frame CLIP features (.npy, frames x dim) instead of --video.")
flags.DEFINE_string("instruction", None, "Free-text instruction (encoded by T5) instead of a stock one.")
flags.DEFINE_integer("instruction_idx", 0, "Which of the task's 10 stock instructions to use.")
flags.DEFINE_integer("num_steps", None, "Euler steps (default 25).")
flags.DEFINE_float("guidance_scale", None, "Classifier-free guidance (default 5; SE/SR 1).")
flags.DEFINE_integer(
    "seed",
    0,
    "Random seed of the noise (and of the weights of a random model); --batch: "
    "of the lines without a seed of their own (each gets one from it and its id).",
    lower_bound=0,
)
flags.DEFINE_enum(
    "length",
    None,
    list(LENGTH_RULES),
    "SE/SR/V2A output length: 'input' (default: the input's "
    "length, each output frame conditioned on its own input frame) or 'predicted' (the original's).",
)

# The inputs of one request: flags of the command line, keys of a --batch line.
WORD_FIELDS = ("phonemes", "score_phonemes", "score_notes", "score_durations", "score_slurs")  # or JSON lists
TEXT_FIELDS = ("caption", "transcript", "music_score", "singer", "instruction", "length")
PATH_FIELDS = ("speaker_embedding", "ref_speaker_speech", "speaker_model", "pinyin_table", "noisy_speech",
               "low_sr_audio", "video", "video_features")  # fmt: skip
FIELDS = (*TEXT_FIELDS, *WORD_FIELDS, *PATH_FIELDS, "duration", "instruction_idx", "length", "seed")
SHARED_FIELDS = ("speaker_model", "pinyin_table")  # with --batch, the flags apply to every line lacking them
DEFAULTS = {"singer": "Alto-1", "instruction_idx": 0}
PINYIN_TABLE = "svs/m4singer_pinyin2ph.txt"  # where a release checkpoint folder keeps it
TASK_ORDER = ("t2a", "t2m", "tts", "svs", "se", "sr", "v2a")


# ---------------------------------------------------------------------------------------------- the model


class LoadedModel:
    """The flow model with its weights — a training run's checkpoint or a random init — placed on the mesh,
    its frozen VAE/T5 (CLIP on demand), the tokenizer and the instruction features: all a request needs.

    Build it with :meth:`from_workdir` or :meth:`random`.
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        load: Callable[[Callable[[], nnx.Module], train_state.TrainState], tuple[dict, int | None, str]],
        resource_dir: pathlib.Path | None = None,
        frozen: FrozenSource | None = None,
        clip_tower: FrozenSource | None = None,
    ):
        """``load(make, shardings)``: (the params of ``make()``'s module placed on ``shardings.params``, their
        checkpoint step or None, a description of the weights). ``resource_dir``: the checkpoint folder's
        front-end files (``svs/m4singer_pinyin2ph.txt``), or None. ``frozen`` / ``clip_tower``: ``mesh -> (graphdef,
        state)`` of the frozen encoders / the CLIP tower (default: the files ``model.frozen_weights`` names)."""
        self.config = config
        self.resource_dir = resource_dir
        self.cfg = config_lib.uniflow_config(config)
        self.clip_cfg = config_lib.clip_config(config)
        self.mesh = parallel.make_mesh(config.mesh.shape)
        rules = config_lib.mesh_rules(config)
        make = lambda: uniflow.UniFlow(self.cfg, rngs=nnx.Rngs(config.seed))  # noqa: E731  (as training builds it)
        with jax.set_mesh(self.mesh), parallel.axis_rules(rules):
            spec = train_state.ModelSpec.of(make)
            shardings = train_state.shardings(spec, optax.identity(), self.mesh, rules, ema=False)
            self.params, self.step, self.description = load(make, shardings)
            buffers = train_state.buffers(make, shardings)
            # The frozen parts with the training's seeds: a toy run with random frozen weights gets the same ones.
            if frozen is None:
                frozen_state = frozen_weights.frozen_encoders(config, self.mesh, seed=config.seed + 1)
            else:
                frozen_state = frozen(self.mesh)
        state = nnx.merge_state(nnx.State(self.params), nnx.State(buffers))
        self.generator = Generator(self.cfg, (spec.graphdef, state), frozen_state)
        self.tokenizer = self._encode = None
        if config.data.tokenizer:
            longest = max(bucket["text"] for bucket in config.data.buckets)  # captions are cut there in training
            self.tokenizer = text.T5Tokenizer(config.data.tokenizer, max_length=longest)
            t5_def, t5_state = nnx.split(nnx.merge(*frozen_state).t5)
            self._encode = instructions.text_encoder(t5_def, t5_state, text.T5Tokenizer(config.data.tokenizer))
        self._bank = instructions.read_h5(config.model.instructions) if config.model.instructions else None
        self._encoded: dict[str, np.ndarray] = {}
        self._clip = None
        self._clip_source = clip_tower or (lambda mesh: frozen_weights.clip_encoder(config, mesh, seed=config.seed + 2))

    @classmethod
    def random(cls, config: ml_collections.ConfigDict, seed: int, workdir: pathlib.Path) -> LoadedModel:
        """``config``'s model with random weights from ``seed``; without ``data.tokenizer``, one trained on the
        task instructions (written to ``workdir``, read at once)."""
        config = config.copy_and_resolve_references()
        config.seed = seed
        if not config.data.tokenizer:
            vocab = config.model.t5.vocab_size
            config.data.tokenizer = str(text.train_tokenizer(instructions.all_texts(), workdir / "spiece", vocab))

        def init(make, shardings) -> tuple[dict, None, str]:
            return train_state.create(make, optax.identity(), seed, shardings, ema=False).params, None, "RANDOM weights"

        return cls(config, init)

    @classmethod
    def from_workdir(
        cls, workdir: str | pathlib.Path, *, kind: str = "best", mesh_shape: Sequence[int] | None = None
    ) -> LoadedModel:
        """A run's model: ``kind`` "best" (the best params by validation, else the latest) or "latest"."""
        workdir = pathlib.Path(workdir)
        config = checkpoint.run_config(workdir)
        if config.get("objective", "uniflow") != "uniflow":
            raise ValueError(f"{workdir} trained objective {config.objective!r}; sampling needs a 'uniflow' run")
        if mesh_shape is not None:
            config.mesh.shape = tuple(mesh_shape)
        best = kind == "best"
        if best:
            try:
                metadata = checkpoint.read_metadata(workdir, best=True)
            except FileNotFoundError:
                logging.warning("%s has no best checkpoint (validation never ran): using the latest", workdir)
                best = False
        ema = not best and config.train.ema_decay > 0  # the best params are the EMA already when the run kept one

        def restore(make, shardings) -> tuple[dict, int, str]:
            abstract = train_state.abstract(make, optax.identity(), shardings, ema=False).params
            params, step = checkpoint.restore_params(workdir, abstract, best=best, ema=ema)
            detail = f"best by validation, val loss {metadata['val_loss']:.4g}" if best else "latest"
            return params, step, f"{workdir} step {step} ({detail}{', EMA' if ema else ''})"

        model = cls(config, restore)
        logging.info("loaded %s", model.description)
        return model

    @classmethod
    def from_converted(cls, folder: str | pathlib.Path, *, mesh_shape: Sequence[int] | None = None) -> LoadedModel:
        """A released checkpoint converted by ``python -m uniflow_jax.convert`` (weights, frozen encoders,
        instructions, tokenizer and front-end files all from ``folder``)."""
        folder = pathlib.Path(folder)
        config = convert.read_config(folder)
        if mesh_shape is not None:
            config.mesh.shape = tuple(mesh_shape)
        cfg, clip_cfg, rules = (
            config_lib.uniflow_config(config),
            config_lib.clip_config(config),
            config_lib.mesh_rules(config),
        )

        def load(make, shardings) -> tuple[dict, None, str]:
            abstract = train_state.abstract(make, optax.identity(), shardings, ema=False).params
            return convert.restore(folder, "model", abstract), None, f"{folder} (converted release)"

        def frozen(mesh):
            make = lambda: uniflow.FrozenEncoders(cfg, rngs=nnx.Rngs(0))  # noqa: E731
            return convert.restore_module(folder, "frozen", make, mesh, rules)

        def clip_tower(mesh):
            make = lambda: clip.CLIPVisionEncoder(clip_cfg, rngs=nnx.Rngs(0))  # noqa: E731
            return convert.restore_module(folder, "clip", make, mesh, rules)

        model = cls(config, load, resource_dir=folder, frozen=frozen, clip_tower=clip_tower)
        logging.info("loaded %s", model.description)
        return model

    def encode_text(self, sentence: str) -> np.ndarray:
        """An instruction → frozen-T5 features (L, D), as training encodes the instruction bank."""
        if self._encode is None:
            raise ValueError("the run has no data.tokenizer: free-text instructions cannot be encoded")
        if sentence not in self._encoded:
            self._encoded[sentence] = self._encode([sentence])[0]
        return self._encoded[sentence]

    def instruction(self, task: tasks.Task, free_text: str | None, index: int) -> np.ndarray:
        if free_text:
            return self.encode_text(free_text)
        if self._bank is not None:
            return instructions.select(self._bank, task.id, index)
        return self.encode_text(tasks.instructions()[task.id][index])

    def pinyin_table(self, path: str | pathlib.Path | None = None) -> dict[str, list[str]]:
        """The SVS pinyin → phones table: ``path``, else the one in :attr:`resource_dir`."""
        if path is None and self.resource_dir is not None:
            path = self.resource_dir / PINYIN_TABLE
        if path is None:
            raise ValueError(
                "a music score needs the pinyin table: give --pinyin_table m4singer_pinyin2ph.txt (a release "
                f"checkpoint folder has it as {PINYIN_TABLE})"
            )
        return score.read_pinyin_table(path)

    def caption_ids(self, caption: str) -> np.ndarray:
        if self.tokenizer is None:
            raise ValueError("the run has no data.tokenizer: captions (t2a, t2m) cannot be tokenised")
        return self.tokenizer.encode(caption)

    def clip_features(self, frames: np.ndarray) -> np.ndarray:
        """Video frames (N, H, W, 3) uint8 → per-frame features of the frozen CLIP (N, video_dim)."""
        if self._clip is None:
            graphdef, state = self._clip_source(self.mesh)
            forward = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x)[0])
            self._clip = lambda pixels: forward(state, pixels)
        return np.asarray(self._clip(video.clip_preprocess(frames, self.clip_cfg.image_size)))

    def generate(
        self, requests: Sequence[Request], *, num_steps: int, guidance_scale: float, bucketed: bool = True
    ) -> list[np.ndarray]:
        """One waveform per request (24 kHz), at its predicted, forced or exact length; each from its own seed,
        the same whatever its batch (``bucketed`` off: no padding beyond the longest request)."""
        waves = self.generator(
            [r.sample for r in requests],
            num_steps=num_steps,
            guidance_scale=guidance_scale,
            seeds=[r.seed for r in requests],
            frames=[r.frames for r in requests],
            aligned=[r.aligned for r in requests],
            bucketed=bucketed,
        )
        return [wave if r.samples is None else wave[: r.samples] for wave, r in zip(waves, requests, strict=True)]


# ---------------------------------------------------------------------------------------------- requests


@dataclasses.dataclass
class Request:
    """A model sample, its noise seed, its forced length in latent frames (or None: predicted), whether its
    length is its input's (SE/SR/V2A, each output frame conditioned on its own input frame), and its exact
    length in samples (or None: the latent length's)."""

    task: tasks.Task
    sample: dict
    seed: int = 0
    frames: int | None = None
    aligned: bool = False
    samples: int | None = None


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
    if not 0 <= index < NUM_INSTRUCTIONS:
        raise ValueError(f"instruction_idx must be 0..{NUM_INSTRUCTIONS - 1}, got {index}")


MAX_INPUT_SECONDS = generate.BUCKETS.latent[-1] / adapter.LATENT_RATE  # the longest length bucket: 30 s
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


def write_outputs(
    task: tasks.Task, fields: Mapping[str, Any], wave: np.ndarray, path: str | pathlib.Path, sample_rate: int
) -> list[pathlib.Path]:
    """Writes the audio to ``path``; for V2A from a video file, also ``path`` with the suffix .mp4: the input
    video with this sound. Returns the files written. A non-finite sample is an error (nothing is written);
    samples beyond ±1 are clipped: :func:`clipped_samples` counts them."""
    path = pathlib.Path(path)
    if not np.isfinite(wave).all():
        raise FloatingPointError(f"{path}: the generated audio has {int(np.sum(~np.isfinite(wave)))} non-finite "
                                 "samples; nothing was written")  # fmt: skip
    wave = np.clip(wave, -1.0, 1.0)
    audio.write_audio(path, wave, sample_rate)
    if not (task.content == "video" and fields.get("video")):
        return [path]
    mp4 = path.with_suffix(".mp4")
    if not video.mux_audio(fields["video"], wave, sample_rate, mp4):
        logging.info("%s: the video was re-encoded (H.264): mp4 cannot hold its codec", mp4)
    return [path, mp4]


def clipped_samples(wave: np.ndarray) -> int:
    """Samples beyond ±1, which a wav cannot hold (written clipped)."""
    return int(np.sum(np.abs(wave) > 1.0))


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


def _length_hint(line: Line) -> float:
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


def _settings(task: tasks.Task, num_steps: int | None, guidance_scale: float | None) -> tuple[int, float]:
    steps, guidance = task_defaults(task.id)
    return num_steps or steps, guidance if guidance_scale is None else guidance_scale


@dataclasses.dataclass
class TaskSummary:
    count: int = 0
    seconds: float = 0.0
    wall: float = 0.0
    clipped: int = 0  # samples beyond ±1, written clipped
    compiles: list[float] = dataclasses.field(default_factory=list)  # seconds of each XLA compilation

    @property
    def real_time_factor(self) -> float:
        return self.wall / max(self.seconds, 1e-9)


def run_batch(
    model: LoadedModel,
    lines: Sequence[Line],
    out_dir: str | pathlib.Path,
    *,
    batch_size: int = 8,
    num_steps: int | None = None,
    guidance_scale: float | None = None,
    seed: int = 0,
) -> dict[str, TaskSummary]:
    """Generates every request into ``out_dir/<task>/<id>.wav`` (and ``.mp4`` for a V2A video); returns the
    summary per task."""
    out_dir = pathlib.Path(out_dir)
    rate = model.config.model.sample_rate
    groups: dict[str, list[Line]] = {}
    for line in lines:
        groups.setdefault(line.task.short, []).append(line)
    summaries: dict[str, TaskSummary] = {}
    with tqdm(total=len(lines), unit="request", desc="sample") as bar:
        for short in sorted(groups, key=TASK_ORDER.index):
            task = tasks.get(short)
            steps, guidance = _settings(task, num_steps, guidance_scale)
            group = sorted(groups[short], key=_length_hint)
            summary = summaries[short] = TaskSummary(count=len(group))
            start = time.perf_counter()
            with recording_compiles(summary.compiles):
                for k in range(0, len(group), batch_size):
                    chunk = group[k : k + batch_size]
                    requests = []
                    for line in chunk:
                        try:
                            fields = {"seed": line_seed(seed, line), **line.fields}
                            requests.append(build_sample(task, fields, model))
                        except (ValueError, KeyError, OSError) as error:
                            message = error.args[0] if isinstance(error, KeyError) else str(error)
                            raise ValueError(f"{line.where}: {message}") from error
                    waves = model.generate(requests, num_steps=steps, guidance_scale=guidance)
                    for line, wave in zip(chunk, waves, strict=True):
                        write_outputs(task, line.fields, wave, out_dir / short / f"{line.id}.wav", rate)
                        summary.seconds += len(wave) / rate
                        summary.clipped += clipped_samples(wave)
                    bar.update(len(chunk))
                summary.wall = time.perf_counter() - start
    return summaries


_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def recording_compiles(into: list[float]) -> Iterator[None]:
    """Appends the duration of every XLA compilation in the block to ``into``."""

    def record(event: str, seconds: float, **_: Any) -> None:
        if event == _COMPILE_EVENT:
            into.append(seconds)

    jax.monitoring.register_event_duration_secs_listener(record)
    try:
        yield
    finally:
        jax.monitoring.unregister_event_duration_listener(record)


def format_summary(summaries: Mapping[str, TaskSummary]) -> str:
    rows = [f"{'task':<5} {'count':>6} {'audio s':>9} {'wall s':>8} {'RTF':>7} {'clipped':>8}"]
    total = TaskSummary(
        sum(s.count for s in summaries.values()),
        sum(s.seconds for s in summaries.values()),
        sum(s.wall for s in summaries.values()),
        sum(s.clipped for s in summaries.values()),
    )
    for short, s in [*summaries.items(), ("all", total)]:
        rows.append(
            f"{short:<5} {s.count:>6} {s.seconds:>9.2f} {s.wall:>8.2f} {s.real_time_factor:>7.3f} {s.clipped:>8}"
        )
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------- command line


def load_model() -> LoadedModel:
    """The model the flags name: ``--checkpoint`` (converted release), ``--workdir`` (trained) or ``--config``
    (random weights)."""
    if FLAGS.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", FLAGS.compilation_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    shape = [int(x) for x in FLAGS.mesh_shape.split(",")] if FLAGS.mesh_shape else None
    if FLAGS.checkpoint:
        return LoadedModel.from_converted(FLAGS.checkpoint, mesh_shape=shape)
    if FLAGS.workdir:
        return LoadedModel.from_workdir(FLAGS.workdir, kind=FLAGS.checkpoint_kind, mesh_shape=shape)
    logging.info("building the model of --config with RANDOM weights")
    with tempfile.TemporaryDirectory() as tokenizer_dir:
        return LoadedModel.random(FLAGS.config, FLAGS.seed, pathlib.Path(tokenizer_dir))


def input_context() -> InputContext:
    """What the flags' model tells about inputs before it loads (a converted folder's pinyin table and CLIP)."""
    if not FLAGS.checkpoint:
        return InputContext()
    folder = pathlib.Path(FLAGS.checkpoint)
    table = folder / PINYIN_TABLE
    return InputContext(table if table.exists() else None, convert.has_item(folder, "clip"))


def refuse(problems: Sequence[str]) -> None:
    """Reports bad input and exits with status 2, before anything is generated or written."""
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    print(f"{len(problems)} problem(s); nothing was generated", file=sys.stderr)
    sys.exit(2)


def main(argv: Sequence[str]) -> None:
    try:
        _main(argv)
    except InvalidRequests as error:
        refuse(error.problems)


def _main(argv: Sequence[str]) -> None:
    positional = argv[1:]
    if sum(x is not None for x in (FLAGS.checkpoint, FLAGS.workdir, FLAGS.config)) != 1:
        raise flags.ValidationError(
            "give one of --checkpoint DIR (a converted release), --workdir RUN (a training run) or "
            "--config configs/<name>.py (random weights)"
        )
    if FLAGS.batch:
        if positional or FLAGS.task:
            raise flags.ValidationError("--batch reads the task of every request from its line: no TASK argument")
        if not FLAGS.out_dir:
            raise flags.ValidationError("--batch needs --out_dir")
        shared = {name: getattr(FLAGS, name) for name in SHARED_FIELDS if getattr(FLAGS, name)}
        lines = read_requests(FLAGS.batch, shared, input_context())  # every line checked before the model loads
        model = load_model()
        print(f"{len(lines)} requests, {model.description}")
        summaries = run_batch(
            model,
            lines,
            FLAGS.out_dir,
            batch_size=FLAGS.batch_size,
            num_steps=FLAGS.num_steps,
            guidance_scale=FLAGS.guidance_scale,
            seed=FLAGS.seed,
        )
        print(format_summary(summaries))
        compiles = [seconds for s in summaries.values() for seconds in s.compiles]
        print(f"compiled {len(compiles)} programs in {sum(compiles):.1f} s ({model.generator.compiled_programs()} "
              "generation programs: one pair per bucket combination met)")  # fmt: skip
        print(f"wrote {FLAGS.out_dir}/<task>/<id>.wav (24 kHz mono)")
        return
    task_name = FLAGS.task or (positional[0] if positional else None)
    if task_name is None:
        raise flags.ValidationError("usage: python -m uniflow_jax.sample TASK (--workdir RUN | --config FILE) [inputs]")
    task = tasks.get(task_name)
    fields = {name: getattr(FLAGS, name) for name in FIELDS}
    try:
        check_inputs(task, fields, input_context())  # before the model is built
    except (ValueError, OSError, ImportError) as error:
        raise InvalidRequests([str(error)]) from None
    steps, guidance = _settings(task, FLAGS.num_steps, FLAGS.guidance_scale)
    output = pathlib.Path(FLAGS.output or f"{task.short}.wav")
    if output.suffix == ".mp4":  # a V2A output named as the video: the wav goes beside it
        output = output.with_suffix(".wav")
    model = load_model()
    request = build_sample(task, fields, model)
    timings = []
    for _ in range(2):  # the first call compiles; the second shows the steady-state speed
        start = time.perf_counter()
        (wave,) = model.generate([request], num_steps=steps, guidance_scale=guidance)
        timings.append(time.perf_counter() - start)
    written = write_outputs(task, fields, wave, output, model.config.model.sample_rate)
    seconds = len(wave) / model.config.model.sample_rate
    print(
        f"wrote {' and '.join(map(str, written))}: {task.id}, {seconds:.2f} s at 24 kHz ({model.description}) | "
        f"{steps} steps, guidance {guidance} | time to first audio {timings[0]:.2f} s (compile included) | "
        f"steady {timings[1]:.2f} s, real-time factor {timings[1] / max(seconds, 1e-9):.3f}"
        + (f" | {clipped_samples(wave)} samples beyond ±1 written clipped" if clipped_samples(wave) else "")
    )


if __name__ == "__main__":
    cli.run(main)
