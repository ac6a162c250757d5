"""The train state — params, optimizer state, step, RNG, skip counters, optional EMA — created on the mesh.

Parameters are plain nested dicts of arrays (``nnx.to_pure_dict``): what optax, orbax and safetensors
export all want. The model's graph (``nnx.GraphDef``) and the abstract state with its logical-axis
metadata stay in :class:`ModelSpec`; ``spec.module(params, buffers)`` rebuilds the module inside a trace.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from uniflow_jax import parallel


@dataclasses.dataclass
class TrainState:
    step: jax.Array  # () int32: optimizer steps taken (skipped non-finite ones included)
    params: dict
    buffers: dict  # non-trainable model variables (RoPE tables, ...)
    opt_state: Any
    rng: jax.Array  # (2,) uint32 key data; the step's key is fold_in(rng, step), so a resumed run redraws the same
    nonfinite: jax.Array  # () int32: updates skipped because the loss or gradient was not finite
    streak: jax.Array  # () int32: of which in a row, up to this step
    ema: dict | None = None

    def to_dict(self) -> dict:
        """The checkpointed tree (plain containers for orbax). Buffers are left out: they are a function of
        the config (:func:`buffers`), and some are empty arrays, which orbax refuses."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "buffers"}
        return out if self.ema is not None else {k: v for k, v in out.items() if k != "ema"}

    @classmethod
    def from_dict(cls, tree: dict, buffers: dict) -> TrainState:
        return cls(**tree, buffers=buffers)


jax.tree_util.register_dataclass(TrainState)


def pure_values(state: nnx.State) -> dict:
    """Variables → their values (arrays, ShapeDtypeStructs or shardings), as nested plain dicts."""
    is_var = lambda v: isinstance(v, nnx.Variable)  # noqa: E731
    values = jax.tree.map(lambda v: v.get_value() if is_var(v) else v, state, is_leaf=is_var)
    return nnx.to_pure_dict(values)


@dataclasses.dataclass
class ModelSpec:
    """How to rebuild the trained module from pure params: its graph and abstract (annotated) state."""

    graphdef: nnx.GraphDef
    abstract_params: nnx.State
    abstract_buffers: nnx.State

    @classmethod
    def of(cls, make: Callable[[], nnx.Module]) -> ModelSpec:
        graphdef, params, buffers = nnx.split(nnx.eval_shape(make), nnx.Param, ...)
        return cls(graphdef, params, buffers)

    def module(self, params: dict, buffers: dict) -> nnx.Module:
        return nnx.merge(self.graphdef, nnx.State(params), nnx.State(buffers))

    def annotated(self, params: dict) -> nnx.State:
        """``params`` as an nnx state with its metadata (logical axes, original layouts) for export."""
        state = jax.tree.map(lambda v: v, self.abstract_params, is_leaf=lambda v: isinstance(v, nnx.Variable))
        nnx.replace_by_pure_dict(state, params)
        return state


def shardings(
    spec: ModelSpec, tx: optax.GradientTransformation, mesh: jax.sharding.Mesh, rules, *, ema: bool
) -> TrainState:
    """Shardings of every leaf of the train state: parameters (and their Adam moments and EMA) from their
    logical axes, everything else replicated."""
    replicated = NamedSharding(mesh, PartitionSpec())
    params = pure_values(parallel.state_shardings(spec.abstract_params, mesh, rules))
    buffers = pure_values(parallel.state_shardings(spec.abstract_buffers, mesh, rules))
    abstract_opt = jax.eval_shape(tx.init, pure_values(spec.abstract_params))
    opt = optax.tree_map_params(tx, lambda _, s: s, abstract_opt, params, transform_non_params=lambda _: replicated)
    return TrainState(
        step=replicated,
        params=params,
        buffers=buffers,
        opt_state=opt,
        rng=replicated,
        nonfinite=replicated,
        streak=replicated,
        ema=params if ema else None,
    )


def initializer(
    make: Callable[[], nnx.Module], tx: optax.GradientTransformation, seed: int, *, ema: bool
) -> Callable[[], TrainState]:
    """A pure function creating a fresh train state (to be jitted with the state's out_shardings)."""

    def init() -> TrainState:
        _, params, buffers = nnx.split(make(), nnx.Param, ...)
        params, buffers = nnx.to_pure_dict(params), nnx.to_pure_dict(buffers)
        zero = jnp.zeros((), jnp.int32)
        return TrainState(
            step=zero,
            params=params,
            buffers=buffers,
            opt_state=tx.init(params),
            rng=jax.random.key_data(jax.random.key(seed)),
            nonfinite=zero,
            streak=zero,
            ema=params if ema else None,
        )

    return init


def create(
    make: Callable[[], nnx.Module],
    tx: optax.GradientTransformation,
    seed: int,
    state_shardings: TrainState,
    *,
    ema: bool,
) -> TrainState:
    """A fresh state built directly sharded (one jitted initialiser, compiled without optimisation)."""
    init = jax.jit(initializer(make, tx, seed, ema=ema), out_shardings=state_shardings).lower()
    return init.compile(compiler_options={"xla_backend_optimization_level": 0})()


def abstract(
    make: Callable[[], nnx.Module], tx: optax.GradientTransformation, state_shardings: TrainState, *, ema: bool
) -> TrainState:
    """Shapes, dtypes and the current mesh's shardings of the state: the target a checkpoint is restored into,
    whatever mesh it was written on."""
    shapes = jax.eval_shape(initializer(make, tx, 0, ema=ema))
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, state_shardings)


def buffers(make: Callable[[], nnx.Module], state_shardings: TrainState) -> dict:
    """The model's non-trainable variables alone (XLA drops the unused parameter initialisers)."""
    fn = jax.jit(lambda: nnx.to_pure_dict(nnx.split(make(), nnx.Param, ...)[2]), out_shardings=state_shardings.buffers)
    return fn()


def with_params(state: TrainState, params: dict, state_shardings: TrainState) -> TrainState:
    """The state with ``params`` (e.g. converted released weights) placed on their shardings; the EMA
    starts from them too."""
    placed = jax.tree.map(lambda p, s: jax.device_put(np.asarray(p), s), params, state_shardings.params)
    return dataclasses.replace(state, params=placed, ema=placed if state.ema is not None else None)
