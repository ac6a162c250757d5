"""Mesh construction and the logical-axis rules."""

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import PartitionSpec as P

from uniflow_jax import parallel


def test_make_mesh_fills_minus_one_and_uses_auto_axes():
    mesh = parallel.make_mesh((-1, 2, 1))
    assert dict(mesh.shape) == {"data": 4, "fsdp": 2, "tensor": 1}
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)
    with pytest.raises(ValueError, match="needs 16 devices"):
        parallel.make_mesh((4, 4, 1))
    with pytest.raises(ValueError, match="at most one"):
        parallel.make_mesh((-1, -1, 1))


def test_logical_to_spec_uses_each_mesh_axis_once_and_only_when_it_divides():
    mesh = parallel.make_mesh((2, 2, 2))
    assert parallel.logical_to_spec(("embed", "heads"), (8, 8), mesh) == P("fsdp", "tensor")
    assert parallel.logical_to_spec(("embed", "embed"), (8, 8), mesh) == P("fsdp", None)
    assert parallel.logical_to_spec(("batch", "length"), (8, 5), mesh) == P(("fsdp", "data"), None)
    assert parallel.logical_to_spec(("batch",), (2,), mesh) == P("fsdp")
    assert parallel.logical_to_spec(("heads",), (3,), mesh) == P(None)
    with pytest.raises(KeyError, match="no rule"):
        parallel.logical_to_spec(("nonsense",))


def test_rules_come_from_the_context_and_constrain_is_a_noop_without_mesh():
    with parallel.axis_rules([("batch", None), ("embed", "tensor")]):
        assert parallel.logical_to_spec(("batch", "embed")) == P(None, "tensor")
    x = jnp.ones((4, 4))
    assert parallel.constrain(x, ("batch", "embed")) is x
