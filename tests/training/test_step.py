"""The train step on a toy objective: gradient accumulation, non-finite skipping, EMA, learning-rate report."""

import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from uniflow_jax import parallel, tasks
from uniflow_jax.training import optimizer, state, step

OPTIMIZER = ml_collections.ConfigDict(
    dict(learning_rate=0.1, warmup_steps=2, clip_norm=1.0, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01)
)


class Toy:
    """Least squares of a linear model; the key is unused, so micro-batching can be compared exactly."""

    def make_model(self, rngs: nnx.Rngs) -> nnx.Module:
        return nnx.Linear(3, 1, rngs=rngs)

    def loss(self, model, frozen, batch, key):
        del frozen, key
        loss = jnp.mean(jnp.square(model(batch["x"])[:, 0] - batch["y"]))
        zeros = jnp.zeros(len(tasks.TASKS))
        return loss, {"task_loss_sum": zeros, "task_count": zeros}


def setup(**kwargs):
    toy, tx = Toy(), optimizer.make(OPTIMIZER)
    make = lambda: toy.make_model(nnx.Rngs(0))  # noqa: E731
    spec = state.ModelSpec.of(make)
    fn = jax.jit(step.make_train_step(toy, spec, tx, optimizer.learning_rate(OPTIMIZER), **kwargs))
    return fn, state.initializer(make, tx, seed=0, ema="ema_decay" in kwargs)()


def batch(seed: int = 0, size: int = 8):
    rng = np.random.default_rng(seed)
    return {
        "x": jnp.asarray(rng.normal(size=(size, 3)), jnp.float32),
        "y": jnp.asarray(rng.normal(size=size), jnp.float32),
    }


def test_accumulated_micro_batches_give_the_full_batch_update():
    full, s = setup()
    accumulated, _ = setup(grad_accum_steps=4)
    for _ in range(3):  # past the warm-up's zero learning rate
        a, ma = full(s, {}, batch())
        b, mb = accumulated(s, {}, batch())
        s = a
    np.testing.assert_allclose(ma["loss"], mb["loss"], rtol=1e-6)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)


def test_micro_batches_stay_on_the_devices_that_hold_their_rows():
    """Accumulating over a batch sharded on 8 devices moves no rows between them: the compiled step's only
    collective is the gradient's all-reduce (a micro-batch of consecutive rows sat on a few devices, and the
    compiler gathered and permuted the batch every micro-step), and the update is the full batch's."""
    mesh = parallel.make_mesh((8, 1, 1), jax.devices()[:8])
    full, s = setup()
    accumulated, _ = setup(grad_accum_steps=4)
    data = jax.device_put(batch(size=64), parallel.batch_sharding(mesh, 1))
    with jax.set_mesh(mesh):
        program = accumulated.lower(s, {}, data).compile().as_text()
        a, _ = accumulated(s, {}, data)
    assert not re.findall(r"all-gather|all-to-all|collective-permute", program)
    b, _ = full(s, {}, batch(size=64))
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)


def test_a_non_finite_step_changes_nothing_and_is_counted():
    fn, s = setup(ema_decay=0.5)
    s, _ = fn(s, {}, batch())
    s, _ = fn(s, {}, batch(1))
    bad = batch(2)
    bad["y"] = bad["y"].at[0].set(jnp.nan)
    after, metrics = fn(s, {}, bad)
    assert int(metrics["skipped"]) == 1 and int(after.nonfinite) == 1 and int(after.streak) == 1
    assert int(after.step) == int(s.step) + 1
    for name in ("params", "opt_state", "ema"):
        for x, y in zip(jax.tree.leaves(getattr(after, name)), jax.tree.leaves(getattr(s, name)), strict=True):
            np.testing.assert_array_equal(x, y)
    again, _ = fn(after, {}, bad)
    assert int(again.streak) == 2
    good, _ = fn(again, {}, batch(3))
    assert int(good.streak) == 0 and int(good.nonfinite) == 2


def test_ema_and_learning_rate_follow_the_applied_updates():
    fn, s = setup(ema_decay=0.5)
    lrs = []
    for i in range(3):
        new, metrics = fn(s, {}, batch(i))
        lrs.append(float(metrics["lr"]))
        for e, old, p in zip(
            jax.tree.leaves(new.ema), jax.tree.leaves(s.ema), jax.tree.leaves(new.params), strict=True
        ):
            np.testing.assert_allclose(e, 0.5 * old + 0.5 * p, rtol=1e-6)
        s = new
    assert lrs == pytest.approx([0.0, 0.05, 0.1])  # linear warm-up over 2 steps, then constant
