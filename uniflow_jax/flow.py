"""Rectified flow matching as the original trains and samples it.

Path x_σ = (1 − σ)·x₀ + σ·ε (σ_min = 0, σ = 1 is noise), target velocity ε − x₀. The network sees the
timestep on the 0..1000 scale. Sampling integrates dx/dσ = v from σ = 1 to 0 with Euler steps on the
"sway" grid σ_k = cos(π/2·k/N) (or a linear grid), the whole loop inside one jit.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from uniflow_jax import nnx_utils

NUM_TRAIN_TIMESTEPS = 1000
# σ = t/1000 for t = 0..1000, divided in numpy: XLA may rewrite a division by a constant into a
# multiplication by its reciprocal, which is off by one ulp for some t (511/1000 among them).
_SIGMA_OF_T = np.arange(NUM_TRAIN_TIMESTEPS + 1, dtype=np.float32) / np.float32(NUM_TRAIN_TIMESTEPS)

VelocityFn = Callable[[jax.Array, jax.Array], jax.Array]


def sample_u(key: jax.Array, batch: int, strategy: str = "logit_normal") -> jax.Array:
    """The uniform-in-[0, 1) draw behind a training timestep: sigmoid(N(0,1)) ("logit_normal", the v1
    default) or U(0,1) ("uniform")."""
    if strategy == "logit_normal":
        return jax.nn.sigmoid(jax.random.normal(key, (batch,), jnp.float32))
    if strategy == "uniform":
        return jax.random.uniform(key, (batch,), jnp.float32)
    raise ValueError(f"unknown timestep sampling {strategy!r}; use 'logit_normal' or 'uniform'")


def training_timesteps(key: jax.Array, batch: int, strategy: str = "logit_normal") -> tuple[jax.Array, jax.Array]:
    """Draws (σ, network timestep) per sample exactly as the original (diffusers' discrete schedule).

    index = ⌊1000·u⌋; t = 1000 − index ∈ {1..1000}; σ = float32(t/1000); the network input is
    float32(σ·1000), which is *not* always an integer (e.g. t = 511 gives 510.99997) — reproduced on purpose.
    """
    return timesteps_from_u(sample_u(key, batch, strategy))


def timesteps_from_u(u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(σ, network timestep) for given uniform draws u ∈ [0, 1) — the deterministic half of the draw."""
    index = jnp.clip(jnp.floor(u * NUM_TRAIN_TIMESTEPS), 0, NUM_TRAIN_TIMESTEPS - 1)
    t = (NUM_TRAIN_TIMESTEPS - index).astype(jnp.int32)
    sigma = jnp.asarray(_SIGMA_OF_T)[t]
    return sigma, sigma * jnp.float32(NUM_TRAIN_TIMESTEPS)


def interpolate(x0: jax.Array, noise: jax.Array, sigma: jax.Array) -> jax.Array:
    """x_σ = (1 − σ)·x₀ + σ·ε with a per-sample σ (B,)."""
    s = sigma.reshape((-1,) + (1,) * (x0.ndim - 1))
    return (1 - s) * x0 + s * noise


def velocity_target(x0: jax.Array, noise: jax.Array) -> jax.Array:
    return noise - x0


def masked_mse(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """Per-sample mean squared error over valid (frame, channel) entries: pred/target (B,T,C), mask (B,T)."""
    m = mask.astype(jnp.float32)[..., None]
    sq = jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32)) * m
    count = jnp.maximum(jnp.sum(m, axis=(1, 2)) * pred.shape[-1], 1.0)
    return jnp.sum(sq, axis=(1, 2)) / count


def sigma_schedule(num_steps: int, sway_coef: float | None = -1.0) -> np.ndarray:
    """The σ grid from 1 to 0 (num_steps + 1 points, float32, computed as the original does).

    With sway coefficient s: τ = linspace(0, 1), τ += s·(cos(π/2·τ) − 1 + τ), σ = 1 − τ — for s = −1
    this is σ_k = cos(π/2·k/N) and its last point is exactly 0 in float32. Without sway: the linear grid
    1, …, 1/N followed by 0. The original evaluates the network once more at σ = 0 with a zero step; that
    call cannot change the result and is not made here (N network calls for N steps).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if sway_coef:
        tau = np.linspace(0, 1, num_steps + 1, dtype=np.float32)
        # cos correctly rounded to float32 (as PyTorch's is; numpy's float32 cos can be one ulp off)
        cos = np.cos(np.pi / 2 * tau.astype(np.float64)).astype(np.float32)
        tau = tau + np.float32(sway_coef) * (cos - 1 + tau)
        sigmas = (1 - tau).astype(np.float32)
        sigmas[-1] = 0.0  # exact in float32 for s = -1; pins the end point for other coefficients
        return sigmas
    sigmas = np.linspace(1.0, 1.0 / num_steps, num_steps, dtype=np.float32)
    return np.append(sigmas, np.float32(0.0))


def classifier_free_guidance(velocity_fn: VelocityFn, guidance_scale: float) -> VelocityFn:
    """Wraps a velocity function over a doubled batch [unconditional; conditional] into one over x.

    v = v_u + g·(v_c − v_u). ``velocity_fn`` receives x concatenated with itself; its conditioning
    must already be laid out unconditional-first.
    """

    def guided(x: jax.Array, t: jax.Array) -> jax.Array:
        v = velocity_fn(jnp.concatenate([x, x], axis=0), jnp.concatenate([t, t], axis=0))
        v_uncond, v_cond = jnp.split(v, 2, axis=0)
        return v_uncond + guidance_scale * (v_cond - v_uncond)

    return guided


def euler_sample(
    velocity_fn: VelocityFn, noise: jax.Array, sigmas: jax.Array, *, trajectory: bool = False
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Integrates from σ_0 = 1 (``noise``) down the grid with Euler steps x ← x + (σ_{k+1} − σ_k)·v.

    One network call per step, all inside a ``lax.scan`` (trace once, no host round-trips).
    ``velocity_fn(x, t)`` gets the (B,) timestep on the 0..1000 scale, truncated to an integer.
    With ``trajectory`` the latents entering each step, (N, B, ...), are returned too.
    """
    sigmas = jnp.asarray(sigmas, jnp.float32)
    timesteps = jnp.trunc(sigmas[:-1] * jnp.float32(NUM_TRAIN_TIMESTEPS))
    batch = noise.shape[0]

    def step(x, xs):
        sigma, sigma_next, t = xs
        v = velocity_fn(x, jnp.full((batch,), t, jnp.float32))
        return x + (sigma_next - sigma) * v.astype(x.dtype), x if trajectory else None

    x, steps = jax.lax.scan(step, noise, (sigmas[:-1], sigmas[1:], timesteps), unroll=nnx_utils.scan_unroll())
    return (x, steps) if trajectory else x
