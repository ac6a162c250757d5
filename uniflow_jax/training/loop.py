"""The training loop: ``train(config, workdir)`` runs or resumes a training run (``python -m uniflow_jax.train``).

mesh → objective (model + frozen parts) → sharded train state (fresh, fine-tuned or restored)
→ for each global batch: compiled step (one program per bucket shape, compiled before its first use)
→ every log_every: what the step returned, speed and MFU to the console / metrics.jsonl / TensorBoard;
  the configured evaluators when due (``training/evaluators.py``), the best params by ``val/loss`` when
  one reports it; checkpoint_every and at preemption (SIGTERM): an asynchronous save.
"""

from __future__ import annotations

import math
import pathlib
import signal
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils
from tqdm import tqdm

from uniflow_jax import config_lib, hardware, parallel, tasks
from uniflow_jax.data import pipeline
from uniflow_jax.training import checkpoint, flops, objectives, optimizer
from uniflow_jax.training import evaluators as evaluators_lib
from uniflow_jax.training import state as train_state
from uniflow_jax.training import step as train_step
from uniflow_jax.training.metric_writers import MetricWriter, format_console
from uniflow_jax.weights import torch_import

BEST_BY = "val/loss"  # the evaluators' figure that picks the params kept as ``best`` (lowest wins)


class NonFiniteError(RuntimeError):
    """Too many non-finite steps in a row: the run stops instead of spinning on skipped updates."""


class _Preemption:
    """SIGTERM → a save at the next step boundary, then a clean exit.

    One process: our handler sets a flag (it does nothing else: a signal handler must not touch JAX). Several
    processes must agree on the step, so there JAX's preemption service (started by ``jax.distributed``, it
    catches SIGTERM on any host) tells every process at the same step.
    """

    def __init__(self):
        self.local = jax.process_count() == 1
        self.requested = False
        if self.local:
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def reached(self, step: int) -> bool:
        if not self.local:
            self.requested = self.requested or multihost_utils.reached_preemption_sync_point(step)
        return self.requested

    def restore(self) -> None:
        if self.local:
            signal.signal(signal.SIGTERM, self._previous)


def _initial_state(config, objective, make, tx, shardings, ckpt, it) -> tuple[train_state.TrainState, int]:
    """The latest checkpoint of the workdir (data iterator included), else a fresh or fine-tuning state."""
    ema = config.train.ema_decay > 0
    if ckpt.latest_step() is not None:
        abstract = train_state.abstract(make, tx, shardings, ema=ema)
        state, data_state, metadata = ckpt.restore(abstract, train_state.buffers(make, shardings))
        it.set_state(data_state)
        logging.info(
            "resumed from step %d (written by %d process(es) on mesh %s)",
            metadata["step"],
            metadata["process_count"],
            metadata["mesh"],
        )
        return state, metadata["step"]
    state = train_state.create(make, tx, config.seed, shardings, ema=ema)
    if config.train.init_from:
        state = train_state.with_params(state, _pretrained_params(config, objective, make, shardings), shardings)
        logging.info("fine-tuning from %s", config.train.init_from)
    return state, 0


def _pretrained_params(config, objective, make, shardings) -> dict:
    """Params to fine-tune from: a safetensors file with the original names, or a workdir of ours."""
    source = config.train.init_from
    spec = train_state.ModelSpec.of(make)
    if source.endswith(".safetensors"):
        loaded = torch_import.import_state(
            spec.abstract_params, torch_import.read_safetensors(source), objective.export_names, strict=False
        )
        return train_state.pure_values(loaded)
    abstract = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
        train_state.pure_values(spec.abstract_params),
        shardings.params,
    )
    return checkpoint.restore_params(source, abstract, best=(pathlib.Path(source) / "best").exists())[0]


def _metadata(config: ml_collections.ConfigDict, step: int, mesh: jax.sharding.Mesh) -> dict:
    return {
        "step": step,
        "process_count": jax.process_count(),
        "device_count": jax.device_count(),
        "mesh": dict(mesh.shape),
        "objective": config.objective,
        "config": config.to_json(),
    }


def train(
    config: ml_collections.ConfigDict, workdir: str | pathlib.Path, compiled: Sequence[str | pathlib.Path] = ()
) -> dict[str, float]:
    """Runs (or resumes) the training described by ``config`` in ``workdir``; returns the last logged figures.
    ``compiled``: train steps compiled ahead (``aot --save``) for these devices, used instead of compiling."""
    workdir = pathlib.Path(workdir)
    t = config.train
    mesh = parallel.make_mesh(config.mesh.shape)
    rules = config_lib.mesh_rules(config)
    batch_size = t.global_batch_size
    if batch_size % (t.grad_accum_steps * math.prod(mesh.shape[a] for a in ("data", "fsdp"))):
        raise ValueError(
            f"train.global_batch_size {batch_size} must divide into {t.grad_accum_steps} micro-batches over the "
            f"mesh's batch axes (data × fsdp = {mesh.shape['data'] * mesh.shape['fsdp']})"
        )
    with jax.set_mesh(mesh), parallel.axis_rules(rules):
        # The data first: manifests that are refused (file:line) leave no half-made workdir behind.
        it = iter(pipeline.train_dataset(config, batch_size, rows=pipeline.host_rows(mesh, batch_size)))
        if config.data.val and not config.data.cache:
            pipeline.open_datasets(config.data.val, config.data.on_bad_input)
        objective = objectives.make(config, mesh)
        make = lambda: objective.make_model(nnx.Rngs(config.seed))  # noqa: E731
        tx, schedule = optimizer.make(config.optimizer), optimizer.learning_rate(config.optimizer)
        spec = train_state.ModelSpec.of(make)
        ema = t.ema_decay > 0
        shardings = train_state.shardings(spec, tx, mesh, rules, ema=ema)
        fn = train_step.make_train_step(
            objective, spec, tx, schedule, grad_accum_steps=t.grad_accum_steps, ema_decay=t.ema_decay
        )
        steps = train_step.CompiledSteps(fn, shardings, objective.frozen, objective)
        # Steps compiled ahead are checked against the state's shapes before the workdir is touched, too.
        for path in compiled:
            steps.preload(path, train_state.abstract(make, tx, shardings, ema=ema))
        writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
        if jax.process_index() == 0:
            (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
        ckpt = checkpoint.Checkpointer(workdir, keep=t.keep_checkpoints)
        state, step = _initial_state(config, objective, make, tx, shardings, ckpt, it)
        evaluators = evaluators_lib.make(config, objective, spec, mesh)
        peak = hardware.device_peak_flops(jax.devices()[0], t.peak_tflops * 1e12 if t.peak_tflops else None)
        preemption = _Preemption()
        logged: dict[str, float] = {}
        window: list[dict] = []
        frames_seen, data_wait, window_start = 0, 0.0, time.perf_counter()
        bar = tqdm(total=t.num_steps, initial=step, desc="train", disable=jax.process_index() != 0)
        try:
            while step < t.num_steps:
                wait_start = time.perf_counter()
                host = next(it)
                data_wait += time.perf_counter() - wait_start
                batch = pipeline.to_global(host, mesh, batch_size)
                (state, metrics), step_flops = steps(state, batch)
                step += 1
                bar.update()
                window.append({**metrics, "flops": step_flops})
                frames_seen += batch_size * objective.latent_frames(batch)
                if step % t.log_every == 0 or step == t.num_steps:
                    window = jax.device_get(window)  # waits for the dispatched steps: the timing below is real
                    elapsed = time.perf_counter() - window_start
                    logged = _summarise(window, elapsed, frames_seen, data_wait, batch_size, peak)
                    logged["skipped_total"] = int(state.nonfinite)
                    logged.update(pipeline.skip_scalars(host["skips"], host["skipped_rows"]))
                    writer.scalars(step, logged)
                    bar.write(format_console(step, logged))
                    if int(state.streak) >= t.max_nonfinite_in_a_row:
                        raise NonFiniteError(
                            f"{int(state.streak)} steps in a row had a non-finite loss or gradient (limit "
                            f"train.max_nonfinite_in_a_row={t.max_nonfinite_in_a_row}); the params are those of "
                            f"the last finite step, and the last checkpoint is intact. Lower the learning rate "
                            f"or check the data."
                        )
                    window, frames_seen, data_wait, window_start = [], 0, 0.0, time.perf_counter()
                for evaluator in evaluators:
                    if evaluator.due(step):
                        figures = evaluator.run(state, objective.frozen, writer, step)
                        if figures:
                            writer.scalars(step, figures)
                            bar.write(format_console(step, figures, keys_first=(BEST_BY,)))
                            logged.update(figures)
                        if BEST_BY in figures:
                            best = state.ema if state.ema is not None else state.params
                            ckpt.save_best(step, best, figures[BEST_BY], _metadata(config, step, mesh))
                preempted = preemption.reached(step)
                if step % t.checkpoint_every == 0 or step == t.num_steps or preempted:
                    ckpt.save(step, state, it.get_state(), _metadata(config, step, mesh))
                if preempted:
                    logging.warning("preempted (SIGTERM): checkpoint of step %d written, exiting", step)
                    break
        finally:
            bar.close()
            ckpt.wait()
            ckpt.close()
            writer.close()
            preemption.restore()
    return logged


def _summarise(
    window: Sequence[Mapping[str, Any]], elapsed: float, frames: int, data_wait: float, batch_size: int, peak
) -> dict[str, float]:
    """The figures of one logging window: every scalar the step returned (summed or averaged, see
    ``step.SUMMED``), the per-task losses, speed and MFU."""
    n = len(window)
    out: dict[str, float] = {}
    for key in window[0]:
        values = np.asarray([w[key] for w in window])
        if key != "flops" and values.ndim == 1:
            out[key] = float(values.sum() if key in train_step.SUMMED else values.mean())
    sums = np.sum([w["task_loss_sum"] for w in window], axis=0)
    counts = np.sum([w["task_count"] for w in window], axis=0)
    for i, spec in enumerate(tasks.TASKS):
        if counts[i]:
            out[f"loss/{spec.short}"] = float(sums[i] / counts[i])
    step_time = elapsed / n
    step_flops = float(np.mean([w["flops"] for w in window]))
    out.update(
        steps_per_s=n / elapsed,
        samples_per_s=n * batch_size / elapsed,
        latent_frames_per_s=frames / elapsed,
        tflops_per_device=step_flops / step_time / jax.device_count() / 1e12,
        mfu=flops.mfu(step_flops, step_time, jax.device_count(), peak),
        data_wait=data_wait / elapsed,
    )
    return out
