"""Shared layers: the scanned layer stack agrees with applying each layer in turn, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from uniflow_jax.models import layers


class _Block(nnx.Module):
    """Matrices (sliced by the scan) and vectors (selected by a one-hot contraction) in one layer."""

    def __init__(self, rngs: nnx.Rngs):
        self.norm = layers.LayerNorm(16, "embed", rngs=rngs)
        self.mlp = layers.GEGLUFeedForward(16, 24, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.mlp(self.norm(x))


def test_scan_stack_matches_a_python_loop_over_the_layers():
    stack = layers.create_stack(_Block, 3, nnx.Rngs(0))
    graphdef, state = nnx.split(stack)
    rng = np.random.default_rng(0)
    state = jax.tree.map(lambda p: p + 0.1 * rng.standard_normal(p.shape, np.float32), state)
    x = jax.random.normal(jax.random.key(1), (2, 5, 16))
    layer_def = nnx.graphdef(_Block(nnx.Rngs(0)))

    def scanned(s):
        out, _ = layers.scan_stack(nnx.merge(graphdef, s), lambda blk, h, _: (blk(h), None), x)
        return jnp.sum(out**2)

    def looped(s):
        h = x
        for i in range(3):
            h = nnx.merge(layer_def, jax.tree.map(lambda a, i=i: a[i], s))(h)
        return jnp.sum(h**2)

    (v0, g0), (v1, g1) = jax.value_and_grad(scanned)(state), jax.value_and_grad(looped)(state)
    np.testing.assert_allclose(v0, v1, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1), strict=True):
        assert a.shape == b.shape
        assert np.max(np.abs(a - b)) <= 1e-5 * max(1.0, np.max(np.abs(b)))
    assert np.any(jax.tree.leaves(g0)[0])
