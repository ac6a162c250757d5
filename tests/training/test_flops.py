"""Analytic DiT and VAE-decoder FLOPs against XLA's cost analysis; peak-FLOP table lookups."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from uniflow_jax import config_lib
from uniflow_jax.models import vae
from uniflow_jax.models.dit import DiT
from uniflow_jax.training import flops

BATCH, FRAMES, CONTEXT = 4, 64, 16


@pytest.fixture(scope="module")
def xla_counts():
    """(cfg, XLA forward FLOPs, XLA value_and_grad FLOPs) of the tiny DiT at width 128 (so matmuls dominate).

    XLA's cost analysis counts a while loop's body once, not once per iteration, so the scanned layer stacks
    are unrolled here (``scan_unroll`` = the stack depth) to get the whole network into the count.
    """
    cfg = config_lib.dit_config(config_lib.load_config_file("configs/tiny.py"))
    cfg = dataclasses.replace(cfg, embed_dim=128, scan_unroll=cfg.depth // 2)
    # Abstract parameters are enough to compile: no time spent initialising weights.
    graphdef, state = nnx.split(nnx.eval_shape(lambda: DiT(cfg, rngs=nnx.Rngs(0))))
    x = jnp.zeros((BATCH, FRAMES, cfg.latent_dim))
    timesteps = jnp.full((BATCH,), 500.0)
    ta_context = jnp.zeros((BATCH, FRAMES, cfg.ta_context_dim))
    context = jnp.zeros((BATCH, CONTEXT, cfg.context_dim))
    x_mask = jnp.ones((BATCH, FRAMES), bool)
    context_mask = jnp.ones((BATCH, CONTEXT), bool)

    def forward(state):
        return nnx.merge(graphdef, state)(x, timesteps, ta_context, context, x_mask, context_mask)

    def loss(state):
        return jnp.mean(forward(state) ** 2)

    fwd = flops.xla_flops(jax.jit(forward).lower(state).compile())
    train = flops.xla_flops(jax.jit(jax.value_and_grad(loss)).lower(state).compile())
    return cfg, fwd, train


def test_forward_flops_match_xla(xla_counts):
    cfg, xla_forward, _ = xla_counts
    analytic = flops.dit_forward_flops(cfg, BATCH, FRAMES, CONTEXT)
    assert xla_forward is not None
    # XLA also counts elementwise work (norms, GELU, softmax, RoPE), hence a few percent above the matmul count.
    assert analytic == pytest.approx(xla_forward, rel=0.10)


def test_train_step_flops_match_xla(xla_counts):
    cfg, _, xla_train = xla_counts
    analytic = flops.train_step_flops(cfg, BATCH, FRAMES, CONTEXT)
    assert analytic == 3 * flops.dit_forward_flops(cfg, BATCH, FRAMES, CONTEXT)
    assert analytic == pytest.approx(xla_train, rel=0.10)


@pytest.mark.parametrize("strides", [(2, 4, 6, 10), (3, 5)])
def test_vae_decode_flops_match_xla(strides, monkeypatch):
    """The decoder's convolutions (Snake replaced by the identity, so XLA counts little else: biases and the
    weight norms) against the analytic count, odd strides and edge taps included."""
    monkeypatch.setattr(vae.SnakeBeta, "__call__", lambda self, x: x)
    cfg = vae.VAEConfig(channels=16, c_mults=(1, 2, 4, 8)[: len(strides)], strides=strides, latent_dim=8)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: vae.VAE(cfg, rngs=nnx.Rngs(0))))
    latent = jnp.zeros((2, 40, cfg.latent_dim))
    compiled = jax.jit(lambda s: nnx.merge(graphdef, s).decode(latent)).lower(state).compile()
    assert flops.vae_decode_flops(cfg, 2, 40) == pytest.approx(flops.xla_flops(compiled), rel=0.02)


def test_forward_flops_scaling():
    cfg = config_lib.dit_config(config_lib.load_config_file("configs/tiny.py"))
    f = functools.partial(flops.dit_forward_flops, cfg)
    # Linear in batch; attention makes it super-linear in frames.
    assert f(8, 64, 16) == pytest.approx(2 * f(4, 64, 16))
    assert f(4, 128, 16) > 2 * f(4, 64, 16)
    # Per-sample terms: the timestep embedding's first Linear costs 2·B·freq·D, independent of the frames.
    wider_freq = dataclasses.replace(cfg, time_freq_dim=cfg.time_freq_dim + 100)
    delta = flops.dit_forward_flops(wider_freq, 4, 64, 16) - f(4, 64, 16)
    assert delta == 2 * 4 * 100 * cfg.embed_dim
    # Each extra in/out block pair adds one plain block and one skip block.
    deeper = dataclasses.replace(cfg, depth=cfg.depth + 2)
    assert flops.dit_forward_flops(deeper, 4, 64, 16) > f(4, 64, 16)


def test_mfu():
    assert flops.mfu(1e12, 1.0, 2, 1e12) == pytest.approx(0.5)
    assert jnp.isnan(flops.mfu(1e12, 1.0, 2, None))


def test_xla_flops_formats():
    class Compiled:
        def __init__(self, cost):
            self.cost = cost

        def cost_analysis(self):
            if isinstance(self.cost, Exception):
                raise self.cost
            return self.cost

    assert flops.xla_flops(Compiled({"flops": 12.0})) == 12.0
    assert flops.xla_flops(Compiled([{"flops": 7.0, "bytes accessed": 1.0}])) == 7.0
    assert flops.xla_flops(Compiled([])) is None
    assert flops.xla_flops(Compiled(None)) is None
    assert flops.xla_flops(Compiled({"bytes accessed": 1.0})) is None
    assert flops.xla_flops(Compiled(NotImplementedError())) is None


def test_measure_matmul_flops():
    measured = flops.measure_matmul_flops(n=256, seconds=0.1)
    assert 1e8 < measured < 1e15
