"""The training loop's periodic evaluators (big_vision's pattern): each runs every ``every`` steps on the current
state and returns the scalars to log; the loop logs them and keeps the best params by ``val/loss`` when one
reports it, knowing nothing else of what they compute.

    validation       train.eval_every (with data.val): mean loss per task at fixed timesteps and noise
    audio_examples   train.sample_every: generated audio / VAE reconstructions and spectrograms in TensorBoard
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from uniflow_jax import tasks
from uniflow_jax.data import pipeline
from uniflow_jax.training import audio_examples
from uniflow_jax.training import step as train_step
from uniflow_jax.training.metric_writers import MetricWriter
from uniflow_jax.training.objectives import Objective
from uniflow_jax.training.state import ModelSpec, TrainState

Run = Callable[[TrainState, Any, MetricWriter, int], dict[str, float]]


@dataclasses.dataclass(frozen=True)
class Evaluator:
    name: str
    every: int
    run: Run  # (state, frozen, writer, step) -> scalars to log

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0


def validation(config: ml_collections.ConfigDict, objective: Objective, spec: ModelSpec, mesh) -> Run:
    """Mean validation loss per task over ``train.eval_batches`` batches, and their task-balanced mean."""
    t = config.train
    step_fn = jax.jit(train_step.make_validation_step(objective, spec, use_ema=t.ema_decay > 0))
    batch_size = t.global_batch_size

    def run(state: TrainState, frozen: Any, writer: MetricWriter, step: int) -> dict[str, float]:
        del writer, step
        sums, counts = np.zeros(len(tasks.TASKS)), np.zeros(len(tasks.TASKS))
        rows = pipeline.host_rows(mesh, batch_size)
        it = iter(pipeline.train_dataset(config, batch_size, split="val", rows=rows))
        for _ in range(t.eval_batches):
            batch = pipeline.to_global(next(it), mesh, batch_size)
            losses, task = multihost_utils.process_allgather((step_fn(state, frozen, batch), batch["task"]), tiled=True)
            np.add.at(sums, np.asarray(task), np.asarray(losses))
            np.add.at(counts, np.asarray(task), 1)
        out = {f"val/loss/{t.short}": float(sums[i] / counts[i]) for i, t in enumerate(tasks.TASKS) if counts[i]}
        out["val/loss"] = float(np.mean(list(out.values())))  # task-balanced
        return out

    return run


def examples(config: ml_collections.ConfigDict, objective: Objective, spec: ModelSpec) -> Run:
    """Audio and spectrograms of fixed held-out inputs (logged by the writer; no scalars)."""
    log = audio_examples.make(config, objective, spec)

    def run(state: TrainState, frozen: Any, writer: MetricWriter, step: int) -> dict[str, float]:
        log(state, frozen, writer, step)
        return {}

    return run


def make(config: ml_collections.ConfigDict, objective: Objective, spec: ModelSpec, mesh) -> list[Evaluator]:
    """The evaluators the config asks for, in the order they run at a step."""
    t = config.train
    out = []
    if t.eval_every and config.data.val:
        out.append(Evaluator("validation", t.eval_every, validation(config, objective, spec, mesh)))
    if t.sample_every:
        out.append(Evaluator("audio_examples", t.sample_every, examples(config, objective, spec)))
    return out
