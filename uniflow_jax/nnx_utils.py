"""Small glue between nnx modules and plain JAX transformations."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

from uniflow_jax import parallel


def count_parameters(state: nnx.State, variable_type: type = nnx.Variable) -> int:
    """Number of scalars in the variables of ``variable_type`` (``nnx.Param`` for trainable ones)."""
    return sum(math.prod(v.shape) for _, v in nnx.to_flat_state(state) if isinstance(v, variable_type))


def create_sharded(
    make: Callable[[], Any], mesh: jax.sharding.Mesh, rules: parallel.LogicalRules | None = None
) -> tuple[nnx.GraphDef, nnx.State]:
    """Builds ``make()``'s parameters directly on the mesh: abstract shapes → shardings from the logical
    axes → one jitted initialiser with those output shardings (no host copy, no eager op-by-op init).

    The initialiser runs once, so XLA compiles it without backend optimisation (half the compile time).
    """
    graphdef, abstract_state = nnx.split(nnx.eval_shape(make))
    shardings = parallel.state_shardings(abstract_state, mesh, rules)
    init = jax.jit(lambda: nnx.split(make())[1], out_shardings=shardings).lower()
    return graphdef, init.compile(compiler_options={"xla_backend_optimization_level": 0})()
