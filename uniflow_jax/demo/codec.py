"""How well the demo's codec (its frozen VAE) reconstructs: held-out clips of every task, encoded and decoded.

    python -m uniflow_jax.demo.codec --config configs/demo.py:DEMO_DIR --vae VAE.safetensors --json codec.json

The flow model generates latents and a listener hears their decoding, so no task can sound better than its
references passed through the codec: this round trip is the ceiling of every generated figure. Per task and
clip: log-mel distance (``metrics.audio.SETTINGS["log_mel"]``), loudness error (RMS, dB) and, for speech, wide-band
PESQ of the round trip against the original. The VAE's posterior mean is decoded (no sampling noise).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags
from flax import nnx
from ml_collections import config_flags

from uniflow_jax import cli, config_lib, tasks
from uniflow_jax.demo import report
from uniflow_jax.frontends.audio import SAMPLE_RATE
from uniflow_jax.metrics import audio as metrics
from uniflow_jax.models import vae
from uniflow_jax.weights import names, torch_import

SPEECH_TASKS = ("tts", "se")  # clean speech targets: PESQ applies
PAD_HOPS = 16  # zeros after a clip, beyond the encoder's reach (as the latent cache encodes)
LENGTH_STEP_HOPS = 50  # padded lengths are whole multiples of this: clips of similar length share one program


def load_vae(config: ml_collections.ConfigDict, path: str) -> Codec:
    """The VAE of ``config.model.vae`` with the weights of a safetensors file (the original's names)."""
    cfg = config_lib.vae_config(config)
    tensors = torch_import.read_safetensors(path)
    graphdef, state = torch_import.load_module(lambda: vae.VAE(cfg, rngs=nnx.Rngs(0)), tensors, names.VAE)

    def decode(state: nnx.State, wave: jax.Array) -> jax.Array:
        model = nnx.merge(graphdef, state)
        return model.decode(model.encode_moments(wave)[0])

    return Codec(cfg.hop_length, jax.jit(decode), state)


@dataclasses.dataclass(frozen=True)
class Codec:
    hop: int
    decode: Callable  # (state, (1, samples) waveform) -> the decoded posterior mean
    state: nnx.State

    def round_trip(self, audio: np.ndarray) -> np.ndarray:
        """One clip encoded and decoded, padded with at least PAD_HOPS hops of silence up to a whole length step
        (not one compiled program per clip length); trimmed to its length."""
        step = LENGTH_STEP_HOPS * self.hop
        length = -(-(len(audio) + PAD_HOPS * self.hop) // step) * step
        padded = np.pad(audio, (0, length - len(audio))).astype(np.float32)
        return np.asarray(self.decode(self.state, jnp.asarray(padded[None])))[0, : len(audio)]


def clip_figures(original: np.ndarray, decoded: np.ndarray, speech: bool) -> dict[str, float]:
    figures = {
        "log_mel_distance": metrics.log_mel_distance(decoded, original, SAMPLE_RATE),
        "rms_db": metrics.rms_db_difference(decoded, original),
    }
    if speech:
        from uniflow_jax.metrics import speech as speech_metrics

        figures["pesq_wb"] = speech_metrics.pesq_wb(report.to_16k(original), report.to_16k(decoded))
    return figures


def evaluate(codec: Codec, corpus: str | pathlib.Path, per_task: int = 4, out_dir: pathlib.Path | None = None) -> dict:
    """{task: {"clips": [{id, figures}], "mean": {figure: mean}}} over the first ``per_task`` held-out clips;
    with ``out_dir``, the round trips are written there as ``<task>/<id>.wav``."""
    from uniflow_jax.frontends.audio import write_audio

    out: dict[str, dict] = {}
    for task in tasks.REPORT_ORDER:
        clips = []
        for item in report.load_items(corpus, task, per_task=per_task):
            original = report.read_wav(item.target)
            decoded = codec.round_trip(original)
            clips.append({"id": item.id, **clip_figures(original, decoded, task in SPEECH_TASKS)})
            if out_dir is not None:
                write_audio(out_dir / task / f"{item.id}.wav", decoded, SAMPLE_RATE)
        keys = [k for k in clips[0] if k != "id"]
        out[task] = {"clips": clips, "mean": {k: float(np.nanmean([c[k] for c in clips])) for k in keys}}
    return out


FLAGS = flags.FLAGS


def _define_flags() -> None:
    config_flags.DEFINE_config_file("config", None, "The demo's config (configs/demo.py:DEMO_DIR).", lock_config=False)
    flags.DEFINE_string("vae", None, "The codec: a VAE safetensors file (original names).", required=True)
    flags.DEFINE_string("corpus", None, "The demo corpus (default: the config's).")
    flags.DEFINE_integer("per_task", 4, "Held-out clips per task.")
    flags.DEFINE_string("json", None, "Write the figures here.")
    flags.DEFINE_string("out_dir", None, "Write the round trips here (<task>/<id>.wav).")
    flags.mark_flag_as_required("config")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = FLAGS.config
    corpus = FLAGS.corpus or str(pathlib.Path(config.data.tokenizer).parent)
    codec = load_vae(config, FLAGS.vae)
    figures = evaluate(codec, corpus, FLAGS.per_task, pathlib.Path(FLAGS.out_dir) if FLAGS.out_dir else None)
    for task, entry in figures.items():
        print(f"{task:4s} " + "  ".join(f"{k} {v:.3f}" for k, v in entry["mean"].items()))
    if FLAGS.json:
        pathlib.Path(FLAGS.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    _define_flags()
    cli.run(main)
