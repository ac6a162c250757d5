"""The complete UniFlow-Audio v1 model: per-task content → instruction adapter → durations → fusion → DiT.

Batches may mix tasks. Every content kind has its own padded arrays in the batch; each encoder runs on
the whole batch and every sample keeps the output of its task's encoder, zero-padded to the common
content length (the original encodes samples one by one and zero-pads afterwards: same numbers).
Randomness enters only through :class:`Draws`, so recorded runs of the original can be replayed exactly.

Frozen parts (the VAE and the T5 text encoder) live in :class:`FrozenEncoders`, outside the trainable
module and the optimizer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from uniflow_jax import flow, tasks
from uniflow_jax.models import adapter, dit, fastspeech2, layers, t5, vae
from uniflow_jax.models.adapter import FRAME_RESOLUTION
from uniflow_jax.models.layers import Linear

Batch = Mapping[str, jax.Array]

# Per task (in tasks.TASKS order): index of its content kind in tasks.CONTENT_KINDS, and whether it is TA.
_TASK_CONTENT = np.array([tasks.CONTENT_KINDS.index(t.content) for t in tasks.TASKS], np.int32)
_TASK_IS_TA = np.array([t.time_aligned for t in tasks.TASKS])


@dataclasses.dataclass(frozen=True)
class UniFlowConfig:
    dit: dit.DiTConfig
    vae: vae.VAEConfig
    phoneme: fastspeech2.FastSpeech2Config
    score: fastspeech2.FastSpeech2Config
    adapter: adapter.AdapterConfig
    t5: t5.T5Config
    content_dim: int = 1024
    video_dim: int = 1024
    fusion: str = "dummy"  # "dummy" | "hybrid" (upstream Dummy/HybridContentAudioFlowMatching)
    cfg_drop_prob: float = 0.2
    loss_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # diffusion, local duration, global duration
    timestep_sampling: str = "logit_normal"

    def __post_init__(self):
        if self.fusion not in ("dummy", "hybrid"):
            raise ValueError(f"fusion must be 'dummy' or 'hybrid', got {self.fusion!r}")


@dataclasses.dataclass
class Draws:
    """Every random draw of a forward pass (shapes channels-last)."""

    target_eps: jax.Array  # (B, T, latent) posterior ε of the target latents
    audio_eps: jax.Array  # (B, La/hop, latent) posterior ε of SE/SR content latents
    noise: jax.Array  # (B, T, latent) flow noise
    u: jax.Array  # (B,) uniform draw behind the timestep
    cfg_drop: jax.Array  # (B,) bool, classifier-free-guidance dropout


jax.tree_util.register_dataclass(Draws)


class FrozenEncoders(nnx.Module):
    """The frozen VAE and T5 text encoder (float32, never in the optimizer)."""

    def __init__(self, cfg: UniFlowConfig, *, rngs: nnx.Rngs):
        self.vae = vae.VAE(cfg.vae, rngs=rngs)
        self.t5 = t5.T5Encoder(cfg.t5, rngs=rngs)


class ContentEncoder(nnx.Module):
    """The trainable content paths of every task: FastSpeech2 encoders and projections of frozen features."""

    def __init__(self, cfg: UniFlowConfig, *, rngs: nnx.Rngs):
        d = cfg.content_dim
        self.phoneme_encoder = fastspeech2.PhonemeEncoder(cfg.phoneme, rngs=rngs)
        self.midi_encoder = fastspeech2.MidiEncoder(cfg.score, rngs=rngs)
        self.audio_proj = Linear(cfg.vae.latent_dim, d, ("latent", "embed"), rngs=rngs)
        self.video_proj = Linear(cfg.video_dim, d, ("channels", "embed"), rngs=rngs)
        self.text_proj = Linear(cfg.t5.d_model, d, ("channels", "embed"), rngs=rngs)


def latent_moments(
    frozen: FrozenEncoders, batch: Batch, name: str, mask_padding: bool = False
) -> tuple[jax.Array, jax.Array]:
    """VAE posterior (mean, std) of ``batch[name]`` (``waveform`` or ``audio``), or the cached
    ``{name}_mean`` / ``{name}_std`` of a batch read from the latent cache. ``mask_padding``: each row encoded
    as if alone at its length (``batch[f"{name}_lengths"]``)."""
    if f"{name}_mean" in batch:
        return batch[f"{name}_mean"], batch[f"{name}_std"]
    return frozen.vae.encode_moments(batch[name], batch[f"{name}_lengths"] if mask_padding else None)


def latent_frames(batch: Batch, name: str, hop: int) -> int:
    """The padded number of latent frames of ``batch[name]`` (raw audio or cached moments)."""
    return batch[f"{name}_mean"].shape[1] if f"{name}_mean" in batch else batch[name].shape[1] // hop


def context_units(batch: Batch, hop: int) -> int:
    """The padded length of the DiT's content context: the longest padded content of any kind."""
    return max(
        batch["phoneme"].shape[1],
        batch["score_phoneme"].shape[1],
        latent_frames(batch, "audio", hop),
        batch["video_mask"].shape[1],
        batch["text_mask"].shape[1],
    )


def _pad_to(x: jax.Array, length: int) -> jax.Array:
    return jnp.pad(x, [(0, 0), (0, length - x.shape[1])] + [(0, 0)] * (x.ndim - 2))


def expand_units(content: jax.Array, counts: jax.Array, num_frames: int) -> jax.Array:
    """Repeats unit i of each sample ``counts[i]`` times, zero after the last unit, over ``num_frames``.

    Static-shape length regulation: cumulative ends + a per-frame search, then one gather.
    """
    ends = jnp.cumsum(counts, axis=1)
    frames = jnp.arange(num_frames)
    unit = jax.vmap(lambda e: jnp.searchsorted(e, frames, side="right"))(ends)
    unit = jnp.minimum(unit, content.shape[1] - 1)
    gathered = jnp.take_along_axis(content, unit[..., None], axis=1)
    return gathered * (frames[None, :] < ends[:, -1:])[..., None].astype(content.dtype)


@dataclasses.dataclass
class LossOutput:
    total: jax.Array
    diffusion: jax.Array
    local_duration: jax.Array
    global_duration: jax.Array
    per_sample: dict[str, jax.Array]  # (B,) diffusion / local_duration / global_duration
    aux: dict[str, jax.Array]  # intermediates (content, adapter outputs, backbone inputs/outputs) for inspection


jax.tree_util.register_dataclass(LossOutput)


class UniFlow(nnx.Module):
    """The trainable model (content encoders, instruction adapter, DiT, learned dummy embeddings)."""

    def __init__(self, cfg: UniFlowConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d = cfg.content_dim
        self.content_encoder = ContentEncoder(cfg, rngs=rngs)
        self.content_adapter = adapter.CrossAttentionAdapter(cfg.adapter, rngs=rngs)
        self.backbone = dit.DiT(cfg.dit, rngs=rngs)
        self.dummy_ta_embed = nnx.Param(jnp.zeros((d,)), axes=("channels",), torch="plain")
        self.dummy_nta_embed = nnx.Param(jnp.zeros((d,)), axes=("channels",), torch="plain")
        # The original registers an empty parameter; kept so exported checkpoints load strictly in PyTorch.
        self.dummy_param = layers.Buffer(jnp.zeros((0,)), axes=(None,), torch="plain")

    # ----------------------------------------------------------------------------------------- content
    def encode_content(
        self, frozen: FrozenEncoders, batch: Batch, audio_eps: jax.Array, mask_padding: bool = False
    ) -> tuple[jax.Array, jax.Array]:
        """Content (B, Lc, D) and mask (B, Lc): each sample through its task's encoder, zero-padded.
        ``mask_padding``: every kernel that reaches across units reads padding as zeros (inference), so that a
        row's content does not depend on how far its batch pads it."""
        enc, hop = self.content_encoder, self.cfg.vae.hop_length
        mean, std = latent_moments(frozen, batch, "audio", mask_padding)
        audio_mask = jnp.arange(mean.shape[1])[None] < (batch["audio_lengths"] // hop)[:, None]
        audio_latent = jax.lax.stop_gradient(mean + std * audio_eps)
        video = batch["video"] / jnp.maximum(jnp.linalg.norm(batch["video"], axis=-1, keepdims=True), 1e-12)
        if "text_features" in batch:  # cached T5 outputs
            text = batch["text_features"]
        else:
            text = jax.lax.stop_gradient(frozen.t5(batch["text_ids"], batch["text_mask"]))
        outputs = {
            "phoneme": (
                enc.phoneme_encoder(batch["phoneme"], batch["phoneme_mask"], batch["xvector"], mask_padding),
                batch["phoneme_mask"],
            ),
            "score": (
                enc.midi_encoder(
                    batch["score_phoneme"],
                    batch["midi"],
                    batch["midi_duration"],
                    batch["is_slur"],
                    batch["score_mask"],
                    batch["singer"],
                    mask_padding,
                ),
                batch["score_mask"],
            ),
            "audio": (enc.audio_proj(audio_latent), audio_mask),
            "video": (enc.video_proj(video), batch["video_mask"]),
            "text": (enc.text_proj(text), batch["text_mask"].astype(bool)),
        }
        length = max(x.shape[1] for x, _ in outputs.values())
        kind = jnp.asarray(_TASK_CONTENT)[batch["task"]]
        content = jnp.zeros((kind.shape[0], length, self.cfg.content_dim), jnp.float32)
        mask = jnp.zeros((kind.shape[0], length), bool)
        for i, name in enumerate(tasks.CONTENT_KINDS):
            x, m = outputs[name]
            m = _pad_to(m.astype(bool), length)
            mine = (kind == i)[:, None]
            content = jnp.where(mine[..., None], _pad_to(x, length) * m[..., None], content)
            mask = jnp.where(mine, m, mask)
        return content, mask

    def adapt(
        self, frozen: FrozenEncoders, batch: Batch, audio_eps: jax.Array, mask_padding: bool = False
    ) -> tuple[jax.Array, jax.Array, adapter.AdapterOutput]:
        """(encoded content, its mask, the adapter's outputs)."""
        content, mask = self.encode_content(frozen, batch, audio_eps, mask_padding)
        instruction, instruction_mask = batch["instruction"], batch["instruction_mask"]
        return content, mask, self.content_adapter(content, mask, instruction, instruction_mask, mask_padding)

    # ----------------------------------------------------------------------------------------- fusion
    def fuse(
        self, content: jax.Array, mask: jax.Array, ta_stream: jax.Array, is_ta: jax.Array, drop: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(time-aligned stream, context, context mask) for the DiT, after dummy substitution and CFG drop."""
        ta = jnp.where(is_ta[:, None, None], ta_stream, self.dummy_ta_embed[...])
        if self.cfg.fusion == "dummy":
            ctx = jnp.where(is_ta[:, None, None], self.dummy_nta_embed[...], content)
            first_only = jnp.arange(mask.shape[1])[None] == 0
            ctx_mask = jnp.where(is_ta[:, None], first_only, mask)
        else:
            ctx, ctx_mask = content, mask
        keep = (~drop)[:, None, None].astype(ta.dtype)
        return ta * keep, ctx * keep, ctx_mask

    # ----------------------------------------------------------------------------------------- training
    def loss(self, frozen: FrozenEncoders, batch: Batch, draws: Draws, *, reduce: bool = True) -> LossOutput:
        """The original's training objective for one batch; ``reduce=False`` gives per-sample validation losses."""
        cfg, hop = self.cfg, self.cfg.vae.hop_length
        is_ta = jnp.asarray(_TASK_IS_TA)[batch["task"]]
        target_mean, target_std = latent_moments(frozen, batch, "waveform")
        x0 = jax.lax.stop_gradient(target_mean + target_std * draws.target_eps)
        num_frames = x0.shape[1]
        frames = batch["waveform_lengths"] // hop
        x_mask = jnp.arange(num_frames)[None] < frames[:, None]

        content, content_mask, out = self.adapt(frozen, batch, draws.audio_eps)
        lc = content_mask.shape[1]
        seconds = _pad_to(batch["duration"], max(lc, batch["duration"].shape[1]))[:, :lc]
        dur_mask = _pad_to(batch["duration_mask"], max(lc, batch["duration"].shape[1]))[:, :lc]
        seconds = jnp.where(dur_mask, seconds, 0.0)

        counts = adapter.unit_counts(seconds, self.cfg.vae.latent_rate)
        ta_stream = expand_units(out.content, counts, num_frames)
        ta, ctx, ctx_mask = self.fuse(out.content, content_mask, ta_stream, is_ta, draws.cfg_drop)
        sigma, timesteps = flow.timesteps_from_u(draws.u)
        x_t = flow.interpolate(x0, draws.noise, sigma)
        pred = self.backbone(x_t, timesteps, ta, ctx, x_mask, ctx_mask)
        diff = flow.masked_mse(pred, flow.velocity_target(x0, draws.noise), x_mask)

        local_target = jnp.log(jnp.round(seconds / jnp.float32(FRAME_RESOLUTION)) + 1)
        m = dur_mask.astype(jnp.float32)
        local = jnp.sum(jnp.square(out.local_duration - local_target) * m, 1) / jnp.maximum(jnp.sum(m, 1), 1)
        local = local * is_ta
        global_target = jnp.log(frames.astype(jnp.float32) / self.cfg.vae.latent_rate + 1)
        glob = jnp.square(out.global_duration - global_target)

        per_sample = {"diffusion": diff, "local_duration": local, "global_duration": glob}
        aux = {
            "content": content,
            "content_mask": content_mask,
            "counts": counts,
            "adapter_content": out.content,
            "adapter_local_duration": out.local_duration,
            "adapter_global_duration": out.global_duration,
            "x_t": x_t,
            "x_mask": x_mask,
            "timesteps": timesteps,
            "context": ctx,
            "context_mask": ctx_mask,
            "time_aligned_context": ta,
            "prediction": pred,
        }
        if reduce:
            num_ta = jnp.sum(is_ta)
            terms = (
                jnp.mean(diff),
                jnp.where(num_ta > 0, jnp.sum(local) / jnp.maximum(num_ta, 1), 0.0),
                jnp.mean(glob),
            )
        else:
            terms = (diff, local, glob)
        total = sum(w * x for w, x in zip(cfg.loss_weights, terms, strict=True))
        return LossOutput(total, *terms, per_sample, aux)

    def draws(self, key: jax.Array, batch: Batch, *, train: bool = True) -> Draws:
        """Fresh random draws for ``batch``; without ``train``: fixed t = 500 and no CFG dropout."""
        hop, latent = self.cfg.vae.hop_length, self.cfg.vae.latent_dim
        b = batch["waveform_mean" if "waveform_mean" in batch else "waveform"].shape[0]
        frames, audio_frames = latent_frames(batch, "waveform", hop), latent_frames(batch, "audio", hop)
        k = jax.random.split(key, 5)
        if train:
            u = flow.sample_u(k[3], b, self.cfg.timestep_sampling)
            drop = jax.random.uniform(k[4], (b,)) < self.cfg.cfg_drop_prob
        else:
            u, drop = jnp.full((b,), 0.5), jnp.zeros((b,), bool)
        return Draws(
            target_eps=jax.random.normal(k[0], (b, frames, latent)),
            audio_eps=jax.random.normal(k[1], (b, audio_frames, latent)),
            noise=jax.random.normal(k[2], (b, frames, latent)),
            u=u,
            cfg_drop=drop,
        )

    # ----------------------------------------------------------------------------------------- inference
    def predict_lengths(
        self,
        frozen: FrozenEncoders,
        batch: Batch,
        audio_eps: jax.Array,
        *,
        use_given_durations: bool = False,
        mask_padding: bool = False,
    ) -> dict[str, jax.Array]:
        """Adapter outputs, per-unit latent counts and the number of latent frames of every sample.

        TA: Σ round(d̂_i·50) with d̂ = (⌈exp(l̂)·mask⌉ − 1)·5 ms (or the given durations); NTA:
        round((exp(ĝ) − 1)·50).
        """
        _, mask, out = self.adapt(frozen, batch, audio_eps, mask_padding)
        is_ta = jnp.asarray(_TASK_IS_TA)[batch["task"]]
        lengths = adapter.inference_lengths(
            out.local_duration, out.global_duration, mask, is_ta, self.cfg.vae.latent_rate
        )
        if use_given_durations:
            lc = mask.shape[1]
            given = _pad_to(batch["duration"], max(lc, batch["duration"].shape[1]))[:, :lc]
            given_mask = _pad_to(batch["duration_mask"], given.shape[1])[:, :lc]
            counts = adapter.unit_counts(jnp.where(given_mask, given, 0.0), self.cfg.vae.latent_rate)
            lengths["counts"] = counts
            lengths["lengths"] = jnp.where(is_ta, jnp.sum(counts, axis=1), lengths["lengths"])
        return {
            "content": out.content,
            "content_mask": mask,
            "local_duration": out.local_duration,
            "global_duration": out.global_duration,
            **lengths,
            "lengths": jnp.maximum(lengths["lengths"], 1),
            "is_ta": is_ta,
        }

    def conditioning(
        self, prediction: Mapping[str, jax.Array], num_frames: int
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """(ta, context, context mask, latent mask) for generating ``num_frames`` latent frames."""
        ta_stream = expand_units(prediction["content"], prediction["counts"], num_frames)
        no_drop = jnp.zeros_like(prediction["is_ta"])
        ta, ctx, ctx_mask = self.fuse(
            prediction["content"], prediction["content_mask"], ta_stream, prediction["is_ta"], no_drop
        )
        x_mask = jnp.arange(num_frames)[None] < prediction["lengths"][:, None]
        return ta, ctx, ctx_mask, x_mask

    def sample(
        self,
        prediction: Mapping[str, jax.Array],
        noise: jax.Array,
        *,
        num_steps: int,
        guidance_scale: float,
        sway_coef: float | None = -1.0,
        trajectory: bool = False,
        mask_padding: bool = False,
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        """Latents (B, T, latent) from noise (B, T, latent) by the sway-Euler sampler with CFG
        (and, with ``trajectory``, the latent entering every step). ``mask_padding``: a row's latents do not
        depend on the frames past its length (see :meth:`dit.DiT.__call__`)."""
        ta, ctx, ctx_mask, x_mask = self.conditioning(prediction, noise.shape[1])
        velocity = guided_velocity(self.backbone, ta, ctx, x_mask, ctx_mask, guidance_scale, mask_padding)
        return flow.euler_sample(velocity, noise, flow.sigma_schedule(num_steps, sway_coef), trajectory=trajectory)


def guided_velocity(
    backbone: dit.DiT,
    ta: jax.Array,
    context: jax.Array,
    x_mask: jax.Array,
    context_mask: jax.Array,
    guidance_scale: float,
    mask_padding: bool = False,
) -> flow.VelocityFn:
    """The backbone as a velocity field of (x, t). With guidance > 1, one doubled batch
    [unconditional (context and time-aligned stream zeroed, masks kept); conditional]. Every block's share of
    the conditioning (time-aligned projection, cross-attention keys/values) is computed here, once per
    generation, not once per step."""
    if guidance_scale <= 1.0:
        conditioning = backbone.conditioning(ta, context)
        return lambda x, t: backbone(
            x, t, None, None, x_mask, context_mask, conditioning=conditioning, mask_padding=mask_padding
        )
    ta2, context2, x_mask2, context_mask2 = unconditional_first(ta, context, x_mask, context_mask)
    conditioning = backbone.conditioning(ta2, context2)
    velocity = lambda x, t: backbone(  # noqa: E731
        x, t, None, None, x_mask2, context_mask2, conditioning=conditioning, mask_padding=mask_padding
    )
    return flow.classifier_free_guidance(velocity, guidance_scale)


def unconditional_first(
    ta: jax.Array, context: jax.Array, x_mask: jax.Array, context_mask: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The CFG batch [unconditional; conditional]: the streams zeroed in the first half, masks repeated."""
    return (
        jnp.concatenate([jnp.zeros_like(ta), ta]),
        jnp.concatenate([jnp.zeros_like(context), context]),
        jnp.concatenate([x_mask, x_mask]),
        jnp.concatenate([context_mask, context_mask]),
    )


def per_task_means(per_sample: Mapping[str, jax.Array], task: jax.Array) -> dict[str, jax.Array]:
    """``{"<loss>/<task id>": mean over that task's samples}`` (NaN for tasks absent from the batch)."""
    out = {}
    for i, spec in enumerate(tasks.TASKS):
        mine = (task == i).astype(jnp.float32)
        count = jnp.sum(mine)
        for name, values in per_sample.items():
            out[f"{name}/{spec.id}"] = jnp.where(count > 0, jnp.sum(values * mine) / jnp.maximum(count, 1), jnp.nan)
    return out
