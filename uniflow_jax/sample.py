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

import pathlib
import sys
import tempfile
import time
from collections.abc import Sequence

import jax
from absl import flags, logging
from jax.experimental.compilation_cache import compilation_cache
from ml_collections import config_flags

from uniflow_jax import cli, tasks
from uniflow_jax.inference.batch import clipped_samples, format_summary, run_batch, write_outputs
from uniflow_jax.inference.model import LoadedModel
from uniflow_jax.inference.requests import (
    FIELDS,
    LENGTH_RULES,
    SHARED_FIELDS,
    InputContext,
    InvalidRequests,
    build_sample,
    check_inputs,
    read_requests,
    settings,
)

FLAGS = flags.FLAGS


def _define_flags() -> None:
    """The command's flags (defined when run as a program, or by tests that drive ``main``; importing the
    module defines none)."""
    config_flags.DEFINE_config_file(
        "config", None, "Model config file (random weights), or --workdir.", lock_config=False
    )
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
    flags.DEFINE_string(
        "speaker_model", None, "TTS: ONNX speaker model, fbank (B, T, 80) -> x-vector (e.g. WeSpeaker)."
    )
    flags.DEFINE_string(
        "music_score", None, "SVS: 'lyrics<sep>notes<sep>durations', notes and durations per word by |."
    )
    flags.DEFINE_string("pinyin_table", None, "SVS --music_score: m4singer_pinyin2ph.txt (default: the checkpoint's).")
    flags.DEFINE_string("score_phonemes", None, "SVS: M4Singer phones, space separated.")
    flags.DEFINE_string("score_notes", None, "SVS: one note per phone (C4, G#3, rest).")
    flags.DEFINE_string("score_durations", None, "SVS: note duration in seconds per phone.")
    flags.DEFINE_string("score_slurs", None, "SVS: 0/1 slur flag per phone (default all 0).")
    flags.DEFINE_string(
        "singer", "Alto-1", "SVS: singer name (the original's svs_spk_set.json, in uniflow_jax/resources)."
    )
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

# ---------------------------------------------------------------------------------------------- command line


def use_compilation_cache(folder: str | None, min_compile_seconds: float = 1.0) -> None:
    """Keeps compiled programs in ``folder`` (JAX's persistent cache) from now on. JAX opens that cache once per
    process, so it is reset: a process that compiled before (a notebook, a test calling main) switches too."""
    compilation_cache.set_cache_dir(folder)
    compilation_cache.reset_cache()
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)


def load_model() -> LoadedModel:
    """The model the flags name: ``--checkpoint`` (converted release), ``--workdir`` (trained) or ``--config``
    (random weights)."""
    if FLAGS.compilation_cache:
        use_compilation_cache(str(FLAGS.compilation_cache))
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
    return InputContext.of_converted(FLAGS.checkpoint) if FLAGS.checkpoint else InputContext()


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
    steps, guidance = settings(task, FLAGS.num_steps, FLAGS.guidance_scale)
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
    _define_flags()
    cli.run(main)
