"""The train and validation steps: pure functions of (state, frozen arrays, batch), jitted by the loop.

A step whose loss or gradient norm is not finite leaves params, optimizer state and EMA untouched and is
counted (``nonfinite``, ``streak``), so a bad batch can never put a NaN into a checkpoint.
"""

from __future__ import annotations

import dataclasses
import pathlib
import pickle
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from absl import logging

from uniflow_jax import nnx_utils, parallel
from uniflow_jax.training import flops
from uniflow_jax.training.objectives import Objective
from uniflow_jax.training.state import ModelSpec, TrainState

Metrics = dict[str, jax.Array]
# Metrics that add up over micro-batches and logging windows (per-task sums and counts, skipped steps); the
# others are averaged.
SUMMED = ("task_loss_sum", "task_count", "skipped")


def make_train_step(
    objective: Objective,
    spec: ModelSpec,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    *,
    grad_accum_steps: int = 1,
    ema_decay: float = 0.0,
) -> Callable[[TrainState, Any, dict], tuple[TrainState, Metrics]]:
    def loss_and_grads(params, buffers, frozen, batch, key):
        def loss_fn(p):
            return objective.loss(spec.module(p, buffers), frozen, batch, key)

        return jax.value_and_grad(loss_fn, has_aux=True)(params)

    def accumulated(state: TrainState, frozen, batch, key):
        """Mean gradient over ``grad_accum_steps`` micro-batches (one scan, so memory is one micro-batch's).

        Micro-batch m is rows m, m + n, m + 2n, ... (n = ``grad_accum_steps``): each device holds its share of
        every micro-batch and no row moves. Consecutive blocks of rows would each sit on a few devices, and the
        compiler then moves them or runs the other devices' share replicated."""
        if grad_accum_steps == 1:
            return loss_and_grads(state.params, state.buffers, frozen, batch, key)

        def split(x):
            x = x.reshape(-1, grad_accum_steps, *x.shape[1:]).swapaxes(0, 1)
            return parallel.constrain(x, (None, "batch") + (None,) * (x.ndim - 2))

        micro = jax.tree.map(split, batch)

        def body(carry, inputs):
            index, mb = inputs
            (loss, metrics), grads = loss_and_grads(
                state.params, state.buffers, frozen, mb, jax.random.fold_in(key, index)
            )
            return jax.tree.map(jnp.add, carry, ((loss, metrics), grads)), None

        zeros = jax.eval_shape(
            loss_and_grads, state.params, state.buffers, frozen, jax.tree.map(lambda x: x[0], micro), key
        )
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zeros)
        ((loss, metrics), grads), _ = jax.lax.scan(
            body, zeros, (jnp.arange(grad_accum_steps), micro), unroll=nnx_utils.scan_unroll()
        )
        mean = lambda x: x / grad_accum_steps  # noqa: E731
        metrics = {k: v if k in SUMMED else mean(v) for k, v in metrics.items()}
        return (mean(loss), metrics), jax.tree.map(mean, grads)

    def train_step(state: TrainState, frozen: Any, batch: dict) -> tuple[TrainState, Metrics]:
        key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        (loss, metrics), grads = accumulated(state, frozen, batch, key)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
        ema = state.ema
        if ema is not None:
            ema = keep(jax.tree.map(lambda e, p: ema_decay * e + (1 - ema_decay) * p, ema, params), ema)
        skipped = (~finite).astype(jnp.int32)
        new_state = dataclasses.replace(
            state,
            step=state.step + 1,
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
            ema=ema,
            nonfinite=state.nonfinite + skipped,
            streak=(state.streak + 1) * skipped,
        )
        metrics = {
            **metrics,
            "loss": loss,
            "grad_norm": grad_norm,
            "lr": schedule(state.step - state.nonfinite),  # the optimizer counts applied updates only
            "skipped": skipped,
        }
        return new_state, metrics

    return train_step


def make_validation_step(objective: Objective, spec: ModelSpec, *, use_ema: bool = False):
    """Per-sample validation losses of a batch (with the EMA params when the run keeps them and asks)."""

    def validation_step(state: TrainState, frozen: Any, batch: dict) -> jax.Array:
        params = state.ema if use_ema and state.ema is not None else state.params
        return objective.validation_losses(spec.module(params, state.buffers), frozen, batch)

    return validation_step


def shape_key(batch: Mapping[str, jax.Array]) -> tuple:
    return tuple(sorted((k, tuple(v.shape), str(v.dtype)) for k, v in batch.items()))


def _devices_of(devices: Any) -> list:
    """[count, device kind] of the devices a program runs on."""
    devices = list(devices)
    return [len(devices), devices[0].device_kind]


def _describe_devices(devices: list) -> str:
    return f"{devices[0]} x {devices[1]}"


def save_program(compiled: jax.stages.Compiled, path: str | pathlib.Path) -> None:
    """A compiled train step, serialised by ``jax.experimental.serialize_executable`` with what
    :meth:`CompiledSteps.preload` checks before using it: the devices and the batch shapes."""
    from jax.experimental import serialize_executable

    payload, in_tree, out_tree = serialize_executable.serialize(compiled)
    batch = compiled.args_info[0][2]  # the step's arguments: (state, frozen arrays, batch)
    meta = {
        "devices": _devices_of(jax.tree.leaves(compiled.input_shardings)[0].device_set),
        "batch": shape_key(batch),
        "batch_rows": next(iter(batch.values())).shape[0],
    }
    with open(path, "wb") as f:
        pickle.dump({"executable": payload, "in_tree": in_tree, "out_tree": out_tree, "meta": meta}, f)


def load_program(path: str | pathlib.Path) -> tuple[jax.stages.Compiled, dict]:
    """The train step :func:`save_program` wrote, loaded onto this process's devices, and its metadata; refused
    before loading when it was compiled for other devices."""
    from jax.experimental import serialize_executable

    with open(path, "rb") as f:
        saved = pickle.load(f)
    meta, here = saved["meta"], _devices_of(jax.devices())
    if meta["devices"] != here:
        raise ValueError(
            f"{path} was compiled for {_describe_devices(meta['devices'])}; this run has {_describe_devices(here)}"
        )
    compiled = serialize_executable.deserialize_and_load(saved["executable"], saved["in_tree"], saved["out_tree"])
    return compiled, meta


class CompiledSteps:
    """One compiled train step per batch shape (buckets), compiled ahead with its costs logged: what
    ``python -m uniflow_jax.train`` runs and what the benchmark times. ``steps(state, batch)`` →
    ``((state, metrics), FLOPs per step)``; ``compile_seconds`` and ``programs`` per batch shape."""

    def __init__(self, fn, state_shardings, frozen, objective):
        self.jitted = jax.jit(fn, donate_argnums=0, out_shardings=(state_shardings, None))
        self.frozen, self.objective = frozen, objective
        self.programs: dict[tuple, Any] = {}
        self.flops: dict[tuple, float] = {}
        self.compile_seconds: dict[tuple, float] = {}
        self.preloaded: dict[tuple, str] = {}  # batch shapes → the file of their step compiled ahead

    def preload(self, path: str | pathlib.Path, state: TrainState) -> None:
        """Takes a train step compiled ahead of time (``python -m uniflow_jax.aot --save``) for its batch shape,
        so that shape is not compiled again; refuses, naming what differs, one made for other devices, another
        model or optimizer (the state's shapes) or another mesh (the state's shardings). ``state``: the run's
        state, or its abstract shapes with their shardings."""
        compiled, meta = load_program(path)
        batch = {name: jax.ShapeDtypeStruct(shape, dtype) for name, shape, dtype in meta["batch"]}
        aval = lambda x: f"{x.dtype}{list(x.shape)}"  # noqa: E731
        expected = jax.tree.map(aval, ((state, self.frozen, batch), {}))
        compiled_for = jax.tree.map(aval, compiled.args_info)
        if jax.tree.structure(expected) != jax.tree.structure(compiled_for):
            raise ValueError(f"{path} was compiled for another model, optimizer or EMA setting (its inputs' "
                             "structure differs from this run's state)")  # fmt: skip
        differ = [
            f"{jax.tree_util.keystr(where)}: compiled {ours} / here {theirs}"
            for (where, ours), theirs in zip(jax.tree_util.tree_leaves_with_path(compiled_for),
                                             jax.tree.leaves(expected), strict=True)
            if ours != theirs
        ]  # fmt: skip
        if differ:
            raise ValueError(f"{path} was compiled for other shapes than this run's state: " + "; ".join(differ[:5]))
        placed = [
            jax.tree_util.keystr(where)
            for (where, compiled_sharding), leaf in zip(
                jax.tree_util.tree_leaves_with_path(compiled.input_shardings[0][0]), jax.tree.leaves(state), strict=True
            )
            if not compiled_sharding.is_equivalent_to(leaf.sharding, len(leaf.shape))
        ]
        if placed:
            raise ValueError(f"{path} was compiled for another mesh or sharding rules: " + ", ".join(placed[:5]))
        key = shape_key(batch)
        self.programs[key], self.compile_seconds[key], self.preloaded[key] = compiled, 0.0, str(path)
        self.flops[key] = self.objective.step_flops(batch) or float("nan")
        logging.info("loaded the train step compiled ahead for %s x %s latent frames from %s (not compiled here)",
                     meta["batch_rows"], self.objective.latent_frames(batch), path)  # fmt: skip

    def __call__(self, state, batch):
        key = shape_key(batch)
        if key not in self.programs:
            if self.preloaded:
                shapes = ", ".join(f"{name} {shape}" for name, shape, _ in key)
                logging.warning("no step compiled ahead (%s) is for this batch's shapes (%s): compiling it here",
                                ", ".join(self.preloaded.values()), shapes)  # fmt: skip
            start = time.perf_counter()
            compiled = self.jitted.lower(state, self.frozen, batch).compile()
            analytic = self.objective.step_flops(batch)
            xla = flops.xla_flops(compiled)
            xla_total = xla * jax.device_count() if xla is not None else None
            self.flops[key] = analytic or xla_total or float("nan")
            memory = compiled.memory_analysis()
            logging.info(
                "compiled the train step for %s in %.1f s | FLOPs/step analytic %s, XLA %s | memory per device: "
                "arguments %.1f MB, outputs %.1f MB, temporaries %.1f MB",
                f"{batch['task'].shape[0]} x {self.objective.latent_frames(batch)} latent frames",
                time.perf_counter() - start,
                f"{analytic:.3e}" if analytic else "n/a",
                f"{xla_total:.3e}" if xla_total else "n/a",
                getattr(memory, "argument_size_in_bytes", 0) / 1e6,
                getattr(memory, "output_size_in_bytes", 0) / 1e6,
                getattr(memory, "temp_size_in_bytes", 0) / 1e6,
            )
            self.programs[key] = compiled
            self.compile_seconds[key] = time.perf_counter() - start
        return self.programs[key](state, self.frozen, batch), self.flops[key]
