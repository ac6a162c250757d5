"""Generate audio for any task: ``python -m uniflow_jax.sample TASK [inputs] --output out.wav``.

TASK is t2a, t2m, tts, svs, se, sr or v2a (or the long ids). Inputs follow the original CLI:

    t2a/t2m  --caption "a dog barks twice" [--duration SECONDS]
    tts      --phonemes "HH AH0 L OW1" --speaker_embedding xvector.npy
    svs      --score_phonemes "n i h ao" --score_notes "C4 C4 D4 D4" --score_durations "0.3 0.3 0.4 0.4"
             [--score_slurs "0 0 0 0"] --singer Alto-1
    se       --noisy_speech noisy.wav          sr  --low_sr_audio low.wav
    v2a      --video clip.mp4 (or --video_features frames.npy)
    every task: --instruction TEXT | --instruction_idx K, --guidance_scale, --num_steps, --seed, --output

Weights: this version builds the model of ``--config`` with **random** weights (a smoke test of the whole
path: front ends, content encoders, adapter, lengths, jitted sampler, VAE decoder); with random weights
the audio is noise-like. The SentencePiece tokenizer of the random model is trained on the task
instructions. Prints the time to first audio (compilation included) and the real-time factor.
"""

from __future__ import annotations

import pathlib
import tempfile
import time
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
from absl import flags, logging
from flax import nnx
from ml_collections import config_flags

from uniflow_jax import cli, config_lib, instructions, nnx_utils, parallel, tasks
from uniflow_jax.data import audio
from uniflow_jax.frontends import symbols, text
from uniflow_jax.generate import Generator, task_defaults
from uniflow_jax.models import clip, uniflow

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Model config file (configs/<name>.py).", lock_config=False)
flags.DEFINE_string("task", None, "Task (or give it as the first argument): t2a t2m tts svs se sr v2a.")
flags.DEFINE_string("output", None, "Output wav (default: <task>.wav).")
flags.DEFINE_string("caption", None, "T2A/T2M caption.")
flags.DEFINE_float("duration", None, "T2A/T2M: seconds to generate instead of the predicted length.")
flags.DEFINE_string("phonemes", None, "TTS: ARPAbet phones with stress, space separated.")
flags.DEFINE_string("speaker_embedding", None, "TTS: speaker x-vector (.npy, 256 values).")
flags.DEFINE_string("score_phonemes", None, "SVS: M4Singer phones, space separated.")
flags.DEFINE_string("score_notes", None, "SVS: one note per phone (C4, G#3, rest).")
flags.DEFINE_string("score_durations", None, "SVS: note duration in seconds per phone.")
flags.DEFINE_string("score_slurs", None, "SVS: 0/1 slur flag per phone (default all 0).")
flags.DEFINE_string("singer", "Alto-1", "SVS: singer name (data/svs_spk_set.json).")
flags.DEFINE_string("noisy_speech", None, "SE: noisy speech file (any rate/channels).")
flags.DEFINE_string("low_sr_audio", None, "SR: band-limited audio file (any rate/channels).")
flags.DEFINE_string("video", None, "V2A: video file (frames read at 10 fps).")
flags.DEFINE_string("video_features", None, "V2A: per-frame CLIP features (.npy, frames x dim) instead of --video.")
flags.DEFINE_string("instruction", None, "Free-text instruction (encoded by T5) instead of a stock one.")
flags.DEFINE_integer("instruction_idx", 0, "Which of the task's 10 stock instructions to use.")
flags.DEFINE_integer("num_steps", None, "Euler steps (default 25).")
flags.DEFINE_float("guidance_scale", None, "Classifier-free guidance (default 5; SE/SR 1).")
flags.DEFINE_integer("seed", 0, "Random seed (weights of the random model, noise).")


class RandomModel:
    """A model of ``config`` with random weights, its T5/CLIP front ends and a trained tokenizer."""

    def __init__(self, config: ml_collections.ConfigDict, seed: int, workdir: pathlib.Path):
        self.config = config
        cfg = config_lib.uniflow_config(config)
        mesh = parallel.make_mesh(config.mesh.shape)
        rules = config_lib.mesh_rules(config)
        with jax.set_mesh(mesh), parallel.axis_rules(rules):
            model = nnx_utils.create_sharded(lambda: uniflow.UniFlow(cfg, rngs=nnx.Rngs(seed)), mesh, rules)
            frozen = nnx_utils.create_sharded(lambda: uniflow.FrozenEncoders(cfg, rngs=nnx.Rngs(seed + 1)), mesh, rules)
        self.generator = Generator(cfg, model, frozen)
        self.cfg = cfg
        texts = list(instructions.all_texts())
        self.tokenizer = text.T5Tokenizer(
            text.train_tokenizer(texts, workdir / "spiece", cfg.t5.vocab_size), max_length=512
        )
        graphdef, state = frozen
        t5_def, t5_state = nnx.split(nnx.merge(graphdef, state).t5)
        self.encode_text = instructions.text_encoder(t5_def, t5_state, self.tokenizer)
        self.clip_cfg = config_lib.clip_config(config)
        self._clip = None

    def clip_features(self, frames: np.ndarray) -> np.ndarray:
        from uniflow_jax.frontends import video

        if self._clip is None:
            mesh = parallel.make_mesh(self.config.mesh.shape)
            graphdef, state = nnx_utils.create_sharded(
                lambda: clip.CLIPVisionEncoder(self.clip_cfg, rngs=nnx.Rngs(7)), mesh
            )
            self._clip = (graphdef, state, jax.jit(lambda s, x: nnx.merge(graphdef, s)(x)[0]))
        pixels = video.clip_preprocess(frames, self.clip_cfg.image_size)
        return np.asarray(self._clip[2](self._clip[1], pixels))


def build_sample(task: tasks.Task, model: RandomModel) -> tuple[dict, int | None]:
    """The request of the command line as a model sample, and a forced length in latent frames (or None)."""
    hop = model.cfg.vae.hop_length
    instruction = (
        model.encode_text(FLAGS.instruction)
        if FLAGS.instruction
        else model.encode_text(tasks.instructions()[task.id][FLAGS.instruction_idx])
    )
    sample: dict = {"task": task.id, "instruction": instruction}
    frames = None
    need = lambda name: _required(name, task)  # noqa: E731
    if task.content == "text":
        sample["text_ids"] = model.tokenizer.encode(need("caption"))
        if FLAGS.duration:
            frames = round(FLAGS.duration * 50)
    elif task.content == "phoneme":
        sample["phoneme"] = symbols.tts_phone_ids(need("phonemes"))
        if FLAGS.speaker_embedding:
            sample["xvector"] = np.load(FLAGS.speaker_embedding).reshape(-1).astype(np.float32)
        else:
            logging.warning("no --speaker_embedding: using a zero x-vector")
            sample["xvector"] = np.zeros(model.cfg.phoneme.speaker_dim, np.float32)
    elif task.content == "score":
        phones = need("score_phonemes").split()
        notes = need("score_notes").split()
        seconds = [float(x) for x in need("score_durations").split()]
        slurs = [int(x) for x in FLAGS.score_slurs.split()] if FLAGS.score_slurs else [0] * len(phones)
        if not len(phones) == len(notes) == len(seconds) == len(slurs):
            raise flags.ValidationError("SVS: phones, notes, durations and slurs need one entry per phone")
        sample.update(
            score_phoneme=symbols.svs_phone_ids(phones),
            midi=np.array([symbols.note_to_midi(n) for n in notes], np.int32),
            midi_duration=np.array(seconds, np.float32),
            is_slur=np.array(slurs, np.int32),
            singer=symbols.singer_id(FLAGS.singer),
        )
    elif task.content == "audio":
        wave = audio.load_audio(need("noisy_speech" if task.short == "se" else "low_sr_audio"))
        frames = max(1, -(-len(wave) // hop))
        sample["audio"] = np.pad(wave, (0, frames * hop - len(wave)))
    elif task.content == "video":
        if FLAGS.video_features:
            sample["video"] = np.load(FLAGS.video_features).astype(np.float32)
        else:
            from uniflow_jax.frontends import video

            sample["video"] = model.clip_features(video.read_frames(need("video"), max_seconds=10.0))
    return sample, frames


def _required(name: str, task: tasks.Task) -> str:
    value = getattr(FLAGS, name)
    if not value:
        raise flags.ValidationError(f"{task.short} needs --{name}")
    return value


def main(argv: Sequence[str]) -> None:
    positional = argv[1:]
    task_name = FLAGS.task or (positional[0] if positional else None)
    if task_name is None or FLAGS.config is None:
        raise flags.ValidationError("usage: python -m uniflow_jax.sample TASK --config configs/<name>.py [inputs]")
    task = tasks.get(task_name)
    steps, guidance = task_defaults(task.id)
    steps = FLAGS.num_steps or steps
    guidance = FLAGS.guidance_scale if FLAGS.guidance_scale is not None else guidance
    output = FLAGS.output or f"{task.short}.wav"
    logging.info("building %s with RANDOM weights", task.id)
    with tempfile.TemporaryDirectory() as workdir:
        model = RandomModel(FLAGS.config, FLAGS.seed, pathlib.Path(workdir))
        sample, frames = build_sample(task, model)
    timings = []
    for _ in range(2):  # the first call compiles; the second shows the steady-state speed
        start = time.perf_counter()
        (wave,) = model.generator([sample], num_steps=steps, guidance_scale=guidance, seed=FLAGS.seed, frames=[frames])
        timings.append(time.perf_counter() - start)
    if task.content == "audio":
        wave = wave[: len(sample["audio"])]
    audio.write_audio(output, wave)
    seconds = len(wave) / audio.SAMPLE_RATE
    print(
        f"wrote {output}: {task.id}, {seconds:.2f} s at 24 kHz (RANDOM weights) | {steps} steps, guidance {guidance} | "
        f"time to first audio {timings[0]:.2f} s (compile included) | steady {timings[1]:.2f} s, "
        f"real-time factor {timings[1] / max(seconds, 1e-9):.3f}"
    )


if __name__ == "__main__":
    cli.run(main)
