"""Generate audio: ``python -m uniflow_jax.sample --config configs/tiny.py --output out.wav``.

At this stage of the project the command runs the complete sampling path — noise → jitted sway-Euler
ODE with classifier-free guidance through the DiT → VAE decoder → 24 kHz wav — with **randomly
initialised** weights and a random conditioning, as a smoke test of the machinery and a speed probe. It
prints the time to first audio (compilation included) and the steady-state real-time factor.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import soundfile as sf
from absl import flags, logging
from flax import nnx
from ml_collections import config_flags

from uniflow_jax import cli, config_lib, flow, nnx_utils, parallel
from uniflow_jax.models import dit, uniflow, vae


def make_generate(graphdef: nnx.GraphDef, num_steps: int, sway_coef: float, guidance_scale: float):
    """A jitted ``generate(state, noise, ta, ctx, x_mask, ctx_mask) -> waveform`` (one XLA program)."""
    sigmas = flow.sigma_schedule(num_steps, sway_coef)

    @jax.jit
    def generate(state, noise, ta_context, context, x_mask, context_mask):
        backbone, autoencoder = nnx.merge(graphdef, state)
        velocity = uniflow.guided_velocity(backbone, ta_context, context, x_mask, context_mask, guidance_scale)
        latent = flow.euler_sample(velocity, noise, sigmas)
        return autoencoder.decode(latent)

    return generate


def random_model_smoke(config: ml_collections.ConfigDict, duration: float, output: str, seed: int) -> dict[str, float]:
    """Samples ``duration`` seconds with random weights; writes ``output``; returns timing figures."""
    mesh = parallel.make_mesh(config.mesh.shape)
    rules = config_lib.mesh_rules(config)
    dit_cfg, vae_cfg = config_lib.dit_config(config), config_lib.vae_config(config)
    with jax.set_mesh(mesh), parallel.axis_rules(rules):
        graphdef, state = nnx_utils.create_sharded(
            lambda: (dit.DiT(dit_cfg, rngs=nnx.Rngs(seed)), vae.VAE(vae_cfg, rngs=nnx.Rngs(seed + 1))), mesh, rules
        )
        frames = round(duration * vae_cfg.sample_rate / vae_cfg.hop_length)
        keys = jax.random.split(jax.random.key(seed), 3)
        noise = jax.random.normal(keys[0], (1, frames, dit_cfg.latent_dim))
        ta = jax.random.normal(keys[1], (1, frames, dit_cfg.ta_context_dim))
        ctx = jax.random.normal(keys[2], (1, 8, dit_cfg.context_dim))
        x_mask, ctx_mask = jnp.ones((1, frames), bool), jnp.ones((1, 8), bool)
        generate = make_generate(graphdef, config.flow.num_steps, config.flow.sway_coef, config.flow.guidance_scale)
        start = time.perf_counter()
        wave = np.asarray(generate(state, noise, ta, ctx, x_mask, ctx_mask))
        first = time.perf_counter() - start
        start = time.perf_counter()
        wave = np.asarray(generate(state, noise, ta, ctx, x_mask, ctx_mask))
        steady = time.perf_counter() - start
    audio_seconds = wave.shape[-1] / vae_cfg.sample_rate
    peak = float(np.max(np.abs(wave))) or 1.0
    sf.write(output, (wave[0] / peak * 0.9).astype(np.float32), vae_cfg.sample_rate)
    return {
        "audio_seconds": audio_seconds,
        "first_audio_seconds": first,
        "steady_seconds": steady,
        "real_time_factor": steady / audio_seconds,
    }


FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Model config file (configs/<name>.py).", lock_config=False)
flags.DEFINE_string("output", "sample.wav", "Where to write the 24 kHz wav.")
flags.DEFINE_float("duration", 2.0, "Seconds of audio to generate.")
flags.DEFINE_integer("seed", 0, "Random seed (weights, noise and conditioning).")
flags.DEFINE_integer("num_steps", None, "Euler steps (default: the config's flow.num_steps).")
flags.DEFINE_float("guidance_scale", None, "Classifier-free guidance (default: the config's).")


def main(argv: Sequence[str]) -> None:
    del argv
    config = FLAGS.config
    if config is None:
        raise flags.ValidationError("--config is required, e.g. --config configs/tiny.py")
    if FLAGS.num_steps is not None:
        config.flow.num_steps = FLAGS.num_steps
    if FLAGS.guidance_scale is not None:
        config.flow.guidance_scale = FLAGS.guidance_scale
    logging.info("sampling with RANDOM weights (smoke test of the sampler, VAE decoder and wav output)")
    figures = random_model_smoke(config, FLAGS.duration, FLAGS.output, FLAGS.seed)
    print(
        f"wrote {FLAGS.output}: {figures['audio_seconds']:.2f} s at 24 kHz with random weights | "
        f"{config.flow.num_steps} steps, guidance {config.flow.guidance_scale} | "
        f"time to first audio {figures['first_audio_seconds']:.2f} s (compile included) | "
        f"steady {figures['steady_seconds']:.2f} s, real-time factor {figures['real_time_factor']:.3f}"
    )


if __name__ == "__main__":
    cli.run(main)
