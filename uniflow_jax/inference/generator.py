"""Generation: requests of any tasks → waveforms, through two jitted programs per bucket.

1. ``predict``: content encoders + instruction adapter → per-sample latent lengths (the only host sync);
2. ``render``: noise → sway-Euler ODE with CFG → VAE decoder.
Every padded axis of a batch (rows, latent frames, phonemes, score notes, video frames, caption tokens,
instruction tokens, input-audio frames) is padded to one of a few static sizes (:class:`Buckets`), so a run
compiles at most one program pair per bucket combination it meets, cached per (steps, guidance); JAX's
persistent compilation cache (``--compilation_cache``) keeps them across runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from uniflow_jax import tasks
from uniflow_jax.data import batch_format, collate
from uniflow_jax.models import uniflow


@dataclasses.dataclass(frozen=True)
class Buckets:
    """The static sizes of each padded axis of a generation batch; the last size of each is its maximum."""

    batch: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)  # requests generated together
    latent: tuple[int, ...] = (50, 100, 250, 500, 750, 1000, 1500)  # output latent frames (50/s): 30 s at most
    audio: tuple[int, ...] = (50, 100, 250, 500, 750, 1000, 1500)  # SE/SR input latent frames: 30 s at most
    phoneme: tuple[int, ...] = (16, 32, 64, 128, 256, 512)  # TTS phones
    score: tuple[int, ...] = (16, 32, 64, 128, 256, 512)  # SVS phones (one note each)
    video: tuple[int, ...] = (20, 50, 100, 300)  # V2A frames at 10 fps: 30 s at most
    text: tuple[int, ...] = (16, 32, 64, 128, 256, 512)  # caption tokens
    instruction: tuple[int, ...] = (16, 32, 64, 128, 256)  # instruction tokens

    def size(self, axis: str, n: int) -> int:
        """The smallest size of ``axis`` that holds ``n``; ``ValueError`` beyond the largest."""
        sizes = getattr(self, axis)
        for size in sizes:
            if n <= size:
                return size
        raise ValueError(f"{n} {axis} exceeds the largest {axis} bucket ({sizes[-1]})")


BUCKETS = Buckets()


NOISE, INPUT_POSTERIOR = 0, 1  # the streams of a request's draws


def request_noise(seed: int, stream: int, frames: int, channels: int) -> np.ndarray:
    """A request's standard-normal draws (frames, channels) of one stream from its own seed alone, so that its
    output never depends on its batch companions, its position or the bucket it lands in."""
    return np.random.default_rng([stream, seed]).standard_normal((frames, channels), dtype=np.float32)


@dataclasses.dataclass
class Generator:
    """Holds the split model (trainable + frozen) and generates audio for collated samples.

    Padding never reaches a valid output: the content encoders, the backbone's final convolution and the VAE
    read padded units and frames as zeros (``mask_padding``), attention hides padded keys, and each sample's
    noise comes from its own seed. So a sample generated in a bucketed batch equals the sample generated alone
    at its exact length.
    """

    config: uniflow.UniFlowConfig
    model: tuple[nnx.GraphDef, nnx.State]
    frozen: tuple[nnx.GraphDef, nnx.State]
    buckets: Buckets = BUCKETS

    def __post_init__(self):
        (graphdef, _), (frozen_def, _) = self.model, self.frozen

        @jax.jit
        def predict(state, frozen_state, batch, audio_eps):
            model, frozen = nnx.merge(graphdef, state), nnx.merge(frozen_def, frozen_state)
            return model.predict_lengths(frozen, batch, audio_eps, mask_padding=True)

        self._predict = predict
        self._renders: dict[tuple[int, float, float], Callable] = {}

    def _render(self, num_steps: int, guidance_scale: float, sway_coef: float) -> Callable:
        """The jitted sampler + decoder of one setting (built once per setting)."""
        key = (num_steps, guidance_scale, sway_coef)
        if key not in self._renders:
            self._renders[key] = self._make_render(*key)
        return self._renders[key]

    def _make_render(self, num_steps: int, guidance_scale: float, sway_coef: float) -> Callable:
        (graphdef, _), (frozen_def, _) = self.model, self.frozen

        @jax.jit
        def render(state, frozen_state, prediction, noise):
            model, frozen = nnx.merge(graphdef, state), nnx.merge(frozen_def, frozen_state)
            latent = model.sample(
                prediction,
                noise,
                num_steps=num_steps,
                guidance_scale=guidance_scale,
                sway_coef=sway_coef,
                mask_padding=True,
            )
            return frozen.vae.decode(latent, prediction["lengths"])

        return render

    def plan(
        self,
        samples: Sequence[collate.Sample],
        *,
        seeds: Sequence[int] | None = None,
        frames: Sequence[int | None] | None = None,
        aligned: Sequence[bool] | None = None,
        bucketed: bool = True,
    ) -> tuple[dict[str, jax.Array], np.ndarray]:
        """(prediction with the final per-unit ``counts`` and ``lengths``, noise) of a batch: see :meth:`__call__`."""
        cfg = self.config
        hop, dim = cfg.vae.hop_length, cfg.vae.latent_dim
        seeds = list(range(len(samples))) if seeds is None else list(seeds)
        rows = len(samples)
        if bucketed:  # extra rows repeat the first request; their outputs are dropped
            samples = [*samples, *[samples[0]] * (self.buckets.size("batch", rows) - rows)]
            seeds = seeds + [seeds[0]] * (len(samples) - rows)
            frames = None if frames is None else [*frames, *[frames[0]] * (len(samples) - rows)]
            aligned = None if aligned is None else [*aligned, *[aligned[0]] * (len(samples) - rows)]
        minimum = self.padded_lengths(samples) if bucketed else None
        batch = collate.collate(
            samples, hop=hop, speaker_dim=cfg.phoneme.speaker_dim, video_dim=cfg.video_dim, min_lengths=minimum
        )
        audio_eps = np.zeros((len(samples), batch["audio"].shape[1] // hop, dim), np.float32)
        for i, (seed, length) in enumerate(zip(seeds, batch["audio_lengths"] // hop, strict=True)):
            audio_eps[i, :length] = request_noise(seed, INPUT_POSTERIOR, int(length), dim)
        prediction = dict(self._predict(self.model[1], self.frozen[1], batch, audio_eps))
        counts = np.asarray(prediction["counts"]).copy()
        lengths = np.asarray(prediction["lengths"]).copy()
        content_mask = np.asarray(prediction["content_mask"])
        for i, sample in enumerate(samples):
            task = tasks.get(sample["task"])
            if aligned is not None and aligned[i]:
                if task.unit_seconds is None or not task.time_aligned:
                    raise ValueError(f"{task.short}: only audio and video inputs align with the output")
                counts[i] = round(task.unit_seconds * cfg.vae.latent_rate) * content_mask[i]
                lengths[i] = counts[i].sum()
            if frames is not None and frames[i] is not None:
                lengths[i] = frames[i]
        longest = self.buckets.latent[-1]
        if lengths.max() > longest:
            logging.warning("predicted lengths %s latent frames cut to the longest bucket, %d", lengths, longest)
            lengths = np.minimum(lengths, longest)
        prediction["counts"], prediction["lengths"] = jnp.asarray(counts), jnp.asarray(lengths)
        size = self.buckets.size("latent", int(lengths.max())) if bucketed else int(lengths.max())
        noise = np.zeros((len(samples), size, dim), np.float32)
        for i, (seed, length) in enumerate(zip(seeds, lengths, strict=True)):
            noise[i, :length] = request_noise(seed, NOISE, int(length), dim)
        return prediction, noise

    def __call__(
        self,
        samples: Sequence[collate.Sample],
        *,
        num_steps: int,
        guidance_scale: float,
        seeds: Sequence[int] | None = None,
        sway_coef: float = -1.0,
        frames: Sequence[int | None] | None = None,
        aligned: Sequence[bool] | None = None,
        bucketed: bool = True,
    ) -> list[np.ndarray]:
        """One waveform per sample, trimmed to its length: predicted; ``frames[i]`` latents when given (a
        T2A/T2M duration); or, with ``aligned[i]``, the input's own length with each content unit of fixed
        duration (SE/SR audio frame, V2A video frame) conditioning exactly the output frames it spans.
        ``seeds[i]`` (default i) draws sample i's noise. ``bucketed``: latent frames padded to a length bucket
        (a few compiled programs); off, to the longest sample (the reference of exactness tests)."""
        prediction, noise = self.plan(samples, seeds=seeds, frames=frames, aligned=aligned, bucketed=bucketed)
        render = self._render(num_steps, float(guidance_scale), sway_coef)
        waves = np.asarray(render(self.model[1], self.frozen[1], prediction, noise))
        hop = self.config.vae.hop_length
        lengths = np.asarray(prediction["lengths"])
        return [waves[i, : int(lengths[i]) * hop] for i in range(len(samples))]

    def lower(
        self,
        samples: Sequence[collate.Sample],
        *,
        frames: int,
        num_steps: int,
        guidance_scale: float,
        sharding: jax.sharding.Sharding,
        sway_coef: float = -1.0,
    ) -> jax.stages.Lowered:
        """The render program (sampler + VAE decode) of ``samples`` bucketed as :meth:`__call__` buckets them,
        generating ``frames`` latent frames, lowered without running anything: the states may be abstract
        (shapes and shardings), for compiling ahead of time; the batch's arrays get ``sharding``."""
        cfg, rows = self.config, self.buckets.size("batch", len(samples))
        samples = [*samples, *[samples[0]] * (rows - len(samples))]
        batch = collate.collate(
            samples,
            hop=cfg.vae.hop_length,
            speaker_dim=cfg.phoneme.speaker_dim,
            video_dim=cfg.video_dim,
            min_lengths=self.padded_lengths(samples),
        )
        placed = lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype, sharding=sharding)  # noqa: E731
        audio_eps = np.zeros((rows, batch["audio"].shape[1] // cfg.vae.hop_length, cfg.vae.latent_dim), np.float32)
        prediction = jax.eval_shape(self._predict, self.model[1], self.frozen[1], jax.tree.map(placed, batch),
                                    placed(audio_eps))  # fmt: skip
        prediction = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), prediction)
        noise = jax.ShapeDtypeStruct((rows, self.buckets.size("latent", frames), cfg.vae.latent_dim), jnp.float32,
                                     sharding=sharding)  # fmt: skip
        render = self._render(num_steps, float(guidance_scale), sway_coef)
        return render.lower(self.model[1], self.frozen[1], prediction, noise)

    def padded_lengths(self, samples: Sequence[collate.Sample]) -> dict[str, int]:
        """``collate``'s ``min_lengths``: every padded axis of ``samples`` at its bucket size."""
        hop, b = self.config.vae.hop_length, self.buckets
        longest = lambda key: max((len(s[key]) for s in samples if s.get(key) is not None), default=1)  # noqa: E731
        sizes = {
            kind: b.size(kind, max([1] + [batch_format.content_length(s, kind) for s in samples]))
            for kind in ("phoneme", "score", "video", "text")
        }
        audio = b.size("audio", max(1, longest("audio") // hop))
        sizes["units"] = max(audio, *sizes.values())  # one duration per content unit, whatever the kind
        sizes.update(instruction=b.size("instruction", longest("instruction")), samples=audio * hop)
        return batch_format.min_lengths(sizes)

    def compiled_programs(self) -> int:
        """How many programs the generator has compiled (one per bucket combination met, per setting)."""
        return self._predict._cache_size() + sum(render._cache_size() for render in self._renders.values())
