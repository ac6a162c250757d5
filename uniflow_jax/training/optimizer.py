"""The optimizer of a run: AdamW with the original's warm-up-then-constant schedule and norm clipping."""

from __future__ import annotations

import ml_collections
import optax


def learning_rate(cfg: ml_collections.ConfigDict) -> optax.Schedule:
    """Linear warm-up from 0 over ``warmup_steps``, then constant (HF ``constant_with_warmup``, the original's);
    with ``decay_steps`` > 0, a cosine decay after the warm-up reaching 1 % of the peak at step ``decay_steps``
    (a codec trained from scratch keeps improving as its step size falls)."""
    if cfg.get("decay_steps", 0) > 0:
        return optax.warmup_cosine_decay_schedule(
            0.0, cfg.learning_rate, cfg.warmup_steps, cfg.decay_steps, end_value=0.01 * cfg.learning_rate
        )
    if cfg.warmup_steps <= 0:
        return optax.constant_schedule(cfg.learning_rate)
    return optax.join_schedules(
        [
            optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps),
            optax.constant_schedule(cfg.learning_rate),
        ],
        [cfg.warmup_steps],
    )


def make(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """``config.optimizer``: clip by global norm, then AdamW (decoupled weight decay on every parameter, as
    torch.optim.AdamW over all trainable parameters)."""
    return optax.chain(
        optax.clip_by_global_norm(cfg.clip_norm),
        optax.adamw(learning_rate(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay),
    )
