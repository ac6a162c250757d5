"""Small glue between nnx modules and plain JAX transformations."""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator
from typing import Any

import jax
from flax import nnx

from uniflow_jax import parallel


def count_parameters(state: nnx.State, variable_type: type = nnx.Variable) -> int:
    """Number of scalars in the variables of ``variable_type`` (``nnx.Param`` for trainable ones)."""
    return sum(math.prod(v.shape) for _, v in nnx.to_flat_state(state) if isinstance(v, variable_type))


def _shapes_and_shardings(
    make: Callable[[], Any], mesh: jax.sharding.Mesh, rules: parallel.LogicalRules | None
) -> tuple[nnx.GraphDef, nnx.State, Any]:
    """``make()`` traced, not run: its graph, its state as shapes, and the shardings its logical axes give."""
    graphdef, abstract_state = nnx.split(nnx.eval_shape(make))
    return graphdef, abstract_state, parallel.state_shardings(abstract_state, mesh, rules)


def create_sharded(
    make: Callable[[], Any], mesh: jax.sharding.Mesh, rules: parallel.LogicalRules | None = None
) -> tuple[nnx.GraphDef, nnx.State]:
    """Builds ``make()``'s parameters directly on the mesh: abstract shapes → shardings from the logical
    axes → one jitted initialiser with those output shardings (no host copy, no eager op-by-op init).

    The initialiser runs once, so XLA compiles it without backend optimisation (half the compile time).
    """
    graphdef, _, shardings = _shapes_and_shardings(make, mesh, rules)
    init = jax.jit(lambda: nnx.split(make())[1], out_shardings=shardings).lower()
    return graphdef, init.compile(compiler_options={"xla_backend_optimization_level": 0})()


def abstract_sharded(
    make: Callable[[], Any], mesh: jax.sharding.Mesh, rules: parallel.LogicalRules | None = None
) -> tuple[nnx.GraphDef, nnx.State]:
    """``make()``'s parameters as shapes, dtypes and the mesh's shardings, nothing allocated: what a program
    compiled ahead of time for devices this host does not have (``python -m uniflow_jax.aot``) takes."""
    graphdef, abstract_state, shardings = _shapes_and_shardings(make, mesh, rules)
    is_var = lambda v: isinstance(v, nnx.Variable)  # noqa: E731
    state = jax.tree.map(
        lambda v, s: v.replace(jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s)),
        abstract_state,
        shardings,
        is_leaf=is_var,
    )
    return graphdef, state


_UNROLL_LOOPS: contextvars.ContextVar[bool] = contextvars.ContextVar("unroll_loops", default=False)


@contextlib.contextmanager
def loops_unrolled() -> Iterator[None]:
    """Programs traced inside unroll every ``lax.scan`` of ours (layer stacks, sampler steps, micro-batches):
    XLA's cost analysis counts a loop body once, so FLOP and byte counts are read from an unrolled twin."""
    token = _UNROLL_LOOPS.set(True)
    try:
        yield
    finally:
        _UNROLL_LOOPS.reset(token)


def scan_unroll(unroll: int | bool = 1) -> int | bool:
    """``lax.scan``'s ``unroll``: everything inside :func:`loops_unrolled`, else ``unroll``."""
    return True if _UNROLL_LOOPS.get() else unroll
