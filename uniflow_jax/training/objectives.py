"""What a run trains: the UniFlow flow model (frozen VAE/T5/CLIP beside it) or the Oobleck VAE itself.

An objective owns the model to build, the frozen arrays its loss reads (passed to the jitted step as an
argument, never baked in as constants), the training loss, per-sample validation losses at fixed draws,
audio examples for the logs, and the original parameter names used for safetensors export.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from uniflow_jax import config_lib, instructions, tasks
from uniflow_jax.data import batch_format
from uniflow_jax.frontends.text import T5Tokenizer
from uniflow_jax.models import uniflow, vae
from uniflow_jax.training import flops, vae_objective
from uniflow_jax.weights import frozen as frozen_weights
from uniflow_jax.weights import names

Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]

# Validation draws: fixed timesteps (the u of flow.timesteps_from_u) and a fixed key: comparable losses.
VALIDATION_U = (0.25, 0.5, 0.75)


class Objective(Protocol):
    name: str
    export_names: Any

    def make_model(self, rngs: nnx.Rngs) -> nnx.Module: ...

    def loss(self, model: nnx.Module, frozen: Any, batch: Batch, key: jax.Array) -> tuple[jax.Array, Metrics]: ...

    def validation_losses(self, model: nnx.Module, frozen: Any, batch: Batch) -> jax.Array: ...

    def latent_frames(self, batch: Batch) -> int: ...

    def step_flops(self, batch: Batch) -> float | None: ...


def task_sums(per_sample: jax.Array, task: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-task (sum, count) of a per-sample value: sums add up over steps and hosts, means do not."""
    onehot = jax.nn.one_hot(task, len(tasks.TASKS), dtype=jnp.float32)
    return per_sample @ onehot, jnp.sum(onehot, axis=0)


class FlowObjective:
    """UniFlow's flow-matching + duration losses; the frozen VAE, T5, instruction bank and CLIP beside it."""

    name = "uniflow"
    export_names = names.UNIFLOW

    def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, *, abstract: bool = False):
        """``abstract``: the frozen arrays as shapes and shardings only, for a step compiled ahead of time for
        devices this host does not have (``python -m uniflow_jax.aot``)."""
        self.cfg = config_lib.uniflow_config(config)
        self.frozen_graphdef, encoders = frozen_weights.frozen_encoders(config, mesh, abstract=abstract)
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        if abstract:
            shape = (len(tasks.TASKS) * tasks.NUM_INSTRUCTIONS, instruction_tokens(config), self.cfg.t5.d_model)
            bank = jax.ShapeDtypeStruct(shape, jnp.float32, sharding=replicated)
            bank_mask = jax.ShapeDtypeStruct(shape[:2], jnp.bool_, sharding=replicated)
        else:
            bank, bank_mask = instruction_bank(config, self.frozen_graphdef, encoders)
            bank, bank_mask = jax.device_put(bank, replicated), jax.device_put(bank_mask, replicated)
        self.frozen = {"encoders": encoders, "bank": bank, "bank_mask": bank_mask}
        self.clip_graphdef = None
        if config.data.video_input == "frames" and not config.data.cache:
            self.clip_graphdef, self.frozen["clip"] = frozen_weights.clip_encoder(config, mesh, abstract=abstract)

    def make_model(self, rngs: nnx.Rngs) -> uniflow.UniFlow:
        return uniflow.UniFlow(self.cfg, rngs=rngs)

    def inputs(self, frozen: Any, batch: Batch) -> tuple[uniflow.FrozenEncoders, dict[str, jax.Array]]:
        """The frozen encoders and the model's batch: instructions gathered from the bank, frames → CLIP."""
        batch = dict(batch)
        ids = batch.pop("instruction_id")
        batch["instruction"], batch["instruction_mask"] = frozen["bank"][ids], frozen["bank_mask"][ids]
        if batch_format.VIDEO_PIXELS in batch:
            frames = batch.pop(batch_format.VIDEO_PIXELS)
            b, f = frames.shape[:2]
            clip = nnx.merge(self.clip_graphdef, frozen["clip"])
            batch["video"] = jax.lax.stop_gradient(clip(frames.reshape(b * f, *frames.shape[2:]))[0]).reshape(b, f, -1)
        return nnx.merge(self.frozen_graphdef, frozen["encoders"]), batch

    def loss(self, model: uniflow.UniFlow, frozen: Any, batch: Batch, key: jax.Array) -> tuple[jax.Array, Metrics]:
        encoders, batch = self.inputs(frozen, batch)
        out = model.loss(encoders, batch, model.draws(key, batch))
        w = self.cfg.loss_weights
        per_sample = sum(
            wi * out.per_sample[k] for wi, k in zip(w, ("diffusion", "local_duration", "global_duration"), strict=True)
        )
        sums, counts = task_sums(per_sample, batch["task"])
        metrics = {
            "diffusion": out.diffusion,
            "local_duration": out.local_duration,
            "global_duration": out.global_duration,
            "task_loss_sum": sums,
            "task_count": counts,
        }
        return out.total, metrics

    def latent_frames(self, batch: Batch) -> int:
        return uniflow.latent_frames(batch, "waveform", self.cfg.vae.hop_length)

    def step_flops(self, batch: Batch) -> float:
        """Analytic backbone FLOPs of one train step on this batch shape (context = the longest content)."""
        context = uniflow.context_units(batch, self.cfg.vae.hop_length)
        return flops.train_step_flops(self.cfg.dit, batch["task"].shape[0], self.latent_frames(batch), context)

    def validation_losses(self, model: uniflow.UniFlow, frozen: Any, batch: Batch) -> jax.Array:
        """Per-sample total loss, averaged over the fixed validation timesteps (no CFG dropout)."""
        encoders, batch = self.inputs(frozen, batch)
        draws = model.draws(jax.random.key(0), batch, train=False)
        totals = []
        for u in VALIDATION_U:
            draws.u = jnp.full_like(draws.u, u)
            totals.append(model.loss(encoders, batch, draws, reduce=False).total)
        return jnp.mean(jnp.stack(totals), axis=0)


class VAEObjective:
    """The Oobleck VAE from scratch: L1 + multi-resolution STFT + KL on random crops of the targets."""

    name = "vae"
    export_names = names.VAE

    def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, *, abstract: bool = False):
        del mesh, abstract  # nothing frozen
        self.cfg = config_lib.vae_config(config)
        # A stride-s block convolves with kernel 2s, padding ceil(s/2): decode(encode(x)) keeps x's length only
        # when every stride is even (odd ones decode fine, but the reconstruction loss needs equal lengths).
        if any(s % 2 for s in self.cfg.strides):
            raise ValueError(f"training the VAE needs even strides (model.vae.strides = {self.cfg.strides})")
        t = config.vae_training
        hop = self.cfg.hop_length
        self.segment = round(t.segment_seconds * config.model.sample_rate) // hop * hop
        self.weights = dict(
            kl_weight=t.kl_weight, stft_weight=t.stft_weight, l1_weight=t.l1_weight, mel_weight=t.mel_weight
        )
        self.frozen = {}

    def make_model(self, rngs: nnx.Rngs) -> vae.VAE:
        return vae.VAE(self.cfg, rngs=rngs)

    def crops(self, batch: Batch, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One random ``segment`` of every target (from its start when shorter), and its valid length."""
        wave, lengths = batch["waveform"], batch["waveform_lengths"]
        if wave.shape[1] < self.segment:
            wave = jnp.pad(wave, ((0, 0), (0, self.segment - wave.shape[1])))
        room = jnp.maximum(lengths - self.segment, 0)
        hop = self.cfg.hop_length
        start = (jax.random.uniform(key, lengths.shape) * (room // hop + 1)).astype(jnp.int32) * hop
        crop = jax.vmap(lambda w, s: jax.lax.dynamic_slice(w, (s,), (self.segment,)))(wave, start)
        return crop, jnp.minimum(lengths - start, self.segment)

    def loss(self, model: vae.VAE, frozen: Any, batch: Batch, key: jax.Array) -> tuple[jax.Array, Metrics]:
        crop_key, noise_key = jax.random.split(key)
        wave, lengths = self.crops(batch, crop_key)
        total, terms = vae_objective.vae_loss(model, wave, lengths, noise_key, **self.weights)
        sums, counts = task_sums(jnp.full(lengths.shape, total), batch["task"])
        return total, {**terms, "task_loss_sum": sums, "task_count": counts}

    def latent_frames(self, batch: Batch) -> int:
        return self.segment // self.cfg.hop_length

    def step_flops(self, batch: Batch) -> None:
        """No analytic count for the VAE: the loop reports XLA's."""
        return None

    def validation_losses(self, model: vae.VAE, frozen: Any, batch: Batch) -> jax.Array:
        """Per-sample loss on the sample's first segment, with fixed posterior noise."""
        wave, lengths = batch["waveform"][:, : self.segment], jnp.minimum(batch["waveform_lengths"], self.segment)
        per_sample = jax.vmap(
            lambda w, n: vae_objective.vae_loss(model, w[None], n[None], jax.random.key(0), **self.weights)[0]
        )
        return per_sample(wave, lengths)


def trained_module(config: ml_collections.ConfigDict) -> tuple[Callable[[nnx.Rngs], nnx.Module], Any]:
    """The module a run of ``config`` trains (as a function of its rngs) and its original parameter names,
    without building the frozen parts (for export and sampling)."""
    if config.objective == "vae":
        cfg = config_lib.vae_config(config)
        return (lambda rngs: vae.VAE(cfg, rngs=rngs)), names.VAE
    cfg = config_lib.uniflow_config(config)
    return (lambda rngs: uniflow.UniFlow(cfg, rngs=rngs)), names.UNIFLOW


def make(
    config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, *, abstract: bool = False
) -> FlowObjective | VAEObjective:
    """``config.objective``: "uniflow" (the flow model) or "vae"; ``abstract``: frozen arrays as shapes only."""
    objectives = {"uniflow": FlowObjective, "vae": VAEObjective}
    if config.objective not in objectives:
        raise ValueError(f"unknown objective {config.objective!r}; known: {', '.join(objectives)}")
    return objectives[config.objective](config, mesh, abstract=abstract)


# Tokens of the longest stock instruction when neither the released bank nor a tokenizer is at hand (the longest
# text has 40 words, 309 characters; Flan-T5's SentencePiece gives about one token per 4 characters, + EOS).
INSTRUCTION_TOKENS_BOUND = 96


def instruction_tokens(config: ml_collections.ConfigDict) -> int:
    """The instruction bank's padded length: the released bank's longest row, else the configured tokenizer's
    longest encoding, else :data:`INSTRUCTION_TOKENS_BOUND`."""
    if config.model.instructions:
        import h5py

        with h5py.File(config.model.instructions, "r") as f:
            return max(f[name].shape[0] for name in f)
    if config.data.tokenizer:
        tokenizer = T5Tokenizer(config.data.tokenizer)
        return max(len(tokenizer.encode(text)) for text in instructions.all_texts())
    return INSTRUCTION_TOKENS_BOUND


def instruction_bank(
    config: ml_collections.ConfigDict, graphdef: nnx.GraphDef, encoders: nnx.State
) -> tuple[np.ndarray, np.ndarray]:
    """The 70 instructions (task-major, as ``instruction_id`` indexes them) padded into (70, L, D) + mask:
    the released ``t5_embeddings.h5`` when ``model.instructions`` names one, else encoded by our frozen T5
    with the configured tokenizer."""
    if config.model.instructions:
        bank = instructions.read_h5(config.model.instructions)
    else:
        if not config.data.tokenizer:
            raise ValueError("set model.instructions (t5_embeddings.h5) or data.tokenizer to encode instructions")
        logging.info("encoding the task instructions with the frozen T5")
        t5_def, t5_state = nnx.split(nnx.merge(graphdef, encoders).t5)
        bank = instructions.encode_all(instructions.text_encoder(t5_def, t5_state, T5Tokenizer(config.data.tokenizer)))
    # Row tasks.instruction_id(task, k) holds the task's k-th instruction.
    rows = [instructions.select(bank, t.id, k) for t in tasks.TASKS for k in range(tasks.NUM_INSTRUCTIONS)]
    length = max(len(r) for r in rows)
    padded = np.zeros((len(rows), length, rows[0].shape[1]), np.float32)
    mask = np.zeros((len(rows), length), bool)
    for i, r in enumerate(rows):
        padded[i, : len(r)], mask[i, : len(r)] = r, True
    return padded, mask
