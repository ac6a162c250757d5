"""Generation: requests of any tasks → waveforms, through two jitted programs per length bucket.

1. ``predict``: content encoders + instruction adapter → per-sample latent lengths (the only host sync);
2. ``render``: noise → sway-Euler ODE with CFG → VAE decoder, at the smallest length bucket that fits.
Compiled programs are cached per (batch, bucket, steps, guidance); JAX's persistent compilation cache
(``--compilation_cache``) keeps them across runs.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from uniflow_jax import tasks
from uniflow_jax.data import collate
from uniflow_jax.models import uniflow

# Latent-frame buckets (50 frames per second); longer requests round up to a multiple of the last step.
LENGTH_BUCKETS = (50, 100, 250, 500, 750, 1000, 1500)


def bucket(frames: int) -> int:
    for size in LENGTH_BUCKETS:
        if frames <= size:
            return size
    return -(-frames // 500) * 500


@dataclasses.dataclass
class Generator:
    """Holds the split model (trainable + frozen) and generates audio for collated samples."""

    config: uniflow.UniFlowConfig
    model: tuple[nnx.GraphDef, nnx.State]
    frozen: tuple[nnx.GraphDef, nnx.State]

    def __post_init__(self):
        (graphdef, _), (frozen_def, _) = self.model, self.frozen

        @jax.jit
        def predict(state, frozen_state, batch, audio_eps):
            model, frozen = nnx.merge(graphdef, state), nnx.merge(frozen_def, frozen_state)
            return model.predict_lengths(frozen, batch, audio_eps)

        self._predict = predict
        self._render = functools.cache(self._make_render)

    def _make_render(self, num_steps: int, guidance_scale: float, sway_coef: float):
        (graphdef, _), (frozen_def, _) = self.model, self.frozen

        @jax.jit
        def render(state, frozen_state, prediction, noise):
            model, frozen = nnx.merge(graphdef, state), nnx.merge(frozen_def, frozen_state)
            latent = model.sample(
                prediction, noise, num_steps=num_steps, guidance_scale=guidance_scale, sway_coef=sway_coef
            )
            return frozen.vae.decode(latent)

        return render

    def __call__(
        self,
        samples: Sequence[collate.Sample],
        *,
        num_steps: int,
        guidance_scale: float,
        seed: int = 0,
        sway_coef: float = -1.0,
        frames: Sequence[int | None] | None = None,
    ) -> list[np.ndarray]:
        """One waveform per sample, trimmed to its predicted length (or to ``frames[i]`` latents when given,
        e.g. an SE/SR input's own length or a T2A/T2M duration override)."""
        cfg = self.config
        hop = cfg.vae.hop_length
        batch = collate.collate(samples, hop=hop, speaker_dim=cfg.phoneme.speaker_dim, video_dim=cfg.video_dim)
        key_eps, key_noise = jax.random.split(jax.random.key(seed))
        audio_eps = jax.random.normal(key_eps, (len(samples), batch["audio"].shape[1] // hop, cfg.vae.latent_dim))
        prediction = dict(self._predict(self.model[1], self.frozen[1], batch, audio_eps))
        lengths = np.asarray(prediction["lengths"]).copy()
        for i, forced in enumerate(frames or []):
            if forced is not None:
                lengths[i] = forced
        prediction["lengths"] = jnp.asarray(lengths)
        size = bucket(int(lengths.max()))
        noise = jax.random.normal(key_noise, (len(samples), size, cfg.vae.latent_dim))
        render = self._render(num_steps, float(guidance_scale), sway_coef)
        waves = np.asarray(render(self.model[1], self.frozen[1], prediction, noise))
        return [waves[i, : int(n) * hop] for i, n in enumerate(lengths)]


def task_defaults(task: str) -> tuple[int, float]:
    """(steps, guidance) of the original CLI: 25 steps; guidance 5, or 1 for SE/SR."""
    t = tasks.get(task)
    return t.num_steps, t.guidance_scale
