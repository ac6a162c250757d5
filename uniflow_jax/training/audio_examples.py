"""Audio examples in TensorBoard during training: what the model currently makes of fixed held-out inputs.

Flow model: one validation input per task, generated with the configured steps and guidance (the same
jitted programs as ``python -m uniflow_jax.sample``). VAE: reconstructions of fixed validation clips.
Each example is logged as audio and as a log-mel spectrogram image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from uniflow_jax import tasks
from uniflow_jax.data import batch_format, pipeline
from uniflow_jax.inference.generator import Generator
from uniflow_jax.training.metric_writers import MetricWriter
from uniflow_jax.training.objectives import FlowObjective, Objective
from uniflow_jax.training.state import ModelSpec, TrainState

Logger = Callable[[TrainState, Any, MetricWriter, int], None]


def validation_samples(config: ml_collections.ConfigDict, per_task: int = 1) -> list[dict]:
    """The first ``per_task`` loadable validation samples of every task present (fixed across calls)."""
    inputs = pipeline.open_inputs(config, "val")
    out = []
    for task, rows in inputs.rows.items():
        found = 0
        for i in range(len(rows)):
            sample = inputs.loader(rows[i], np.random.default_rng(i))
            if "skip" not in sample:
                out.append({**sample, "task": task})
                found += 1
            if found == per_task:
                break
    return out


def _flow_logger(config, objective: FlowObjective, spec: ModelSpec) -> Logger:
    samples = validation_samples(config)
    bank = np.asarray(objective.frozen["bank"])
    bank_mask = np.asarray(objective.frozen["bank_mask"])
    if any(batch_format.VIDEO_PIXELS in s for s in samples):
        clip_graphdef = objective.clip_graphdef
        clip = jax.jit(lambda state, x: nnx.merge(clip_graphdef, state)(x)[0])
    for sample in samples:
        sample.pop("waveform", None)  # the target: not an input
        row = tasks.instruction_id(sample["task"], sample["instruction_index"])
        sample["instruction"] = bank[row][bank_mask[row]]
        if batch_format.VIDEO_PIXELS in sample:
            sample["video"] = np.asarray(clip(objective.frozen["clip"], sample.pop(batch_format.VIDEO_PIXELS)))
    generator = Generator(objective.cfg, (spec.graphdef, None), (objective.frozen_graphdef, None))

    def log(state: TrainState, frozen: Any, writer: MetricWriter, step: int) -> None:
        params = state.ema if state.ema is not None else state.params
        # The generator's jitted programs take the states as arguments: swap in the current ones.
        generator.model = (spec.graphdef, nnx.merge_state(nnx.State(params), nnx.State(state.buffers)))
        generator.frozen = (objective.frozen_graphdef, frozen["encoders"])
        # SE/SR/V2A at their input's length (the sample CLI's default length rule).
        aligned = [tasks.get(s["task"]).content in ("audio", "video") for s in samples]
        # One batch of every task: one compiled program pair; guidance as the task defaults of the CLI.
        for guidance in sorted({tasks.get(s["task"]).guidance_scale for s in samples}):
            chosen = [i for i, s in enumerate(samples) if tasks.get(s["task"]).guidance_scale == guidance]
            waves = generator(
                [samples[i] for i in chosen],
                num_steps=config.flow.num_steps,
                guidance_scale=guidance,
                aligned=[aligned[i] for i in chosen],
            )
            for i, wave in zip(chosen, waves, strict=True):
                tag = f"samples/{tasks.get(samples[i]['task']).short}"
                writer.audio(step, tag, wave, config.model.sample_rate)
                writer.spectrogram(step, tag, wave, config.model.sample_rate)

    return log


def _vae_logger(config, objective: Objective, spec: ModelSpec) -> Logger:
    clips = [s["waveform"] for s in validation_samples(config)][:4]
    decode = jax.jit(lambda model, w: model.decode(model.encode_moments(w)[0]))

    def log(state: TrainState, frozen: Any, writer: MetricWriter, step: int) -> None:
        model = spec.module(state.params, state.buffers)
        for i, clip in enumerate(clips):
            wave = np.asarray(decode(model, clip[None]))[0, : len(clip)]
            writer.audio(step, f"reconstruction/{i}", wave, config.model.sample_rate)
            writer.spectrogram(step, f"reconstruction/{i}", wave, config.model.sample_rate)
            if step == config.train.sample_every:
                writer.spectrogram(step, f"original/{i}", clip, config.model.sample_rate)

    return log


def make(config: ml_collections.ConfigDict, objective: Objective, spec: ModelSpec) -> Logger:
    if isinstance(objective, FlowObjective):
        return _flow_logger(config, objective, spec)
    return _vae_logger(config, objective, spec)
