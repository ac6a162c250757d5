"""The frozen encoders (VAE, T5, CLIP) from the user's weight files, placed directly on the mesh.

``config.model.frozen_weights``: ``vae`` = the original StableVAE state dict as safetensors (original
names), ``t5`` = a Flan-T5 Hugging Face folder, ``clip`` = a CLIP (vision) Hugging Face folder. A part
left empty gets random weights, with a warning: that is for tests and toy runs only. Their seeds are fixed
here, once, from ``config.seed`` (VAE + T5: seed + 1, CLIP: seed + 2), so training, the latent cache and
sampling all see the same random encoders.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import ml_collections
from absl import logging
from flax import nnx

from uniflow_jax import config_lib, nnx_utils, parallel
from uniflow_jax.models import clip, t5, uniflow, vae
from uniflow_jax.weights import hf, names, torch_import


def _place(make: Callable[[], nnx.Module], tensors, name_map, mesh, rules) -> tuple[nnx.GraphDef, nnx.State]:
    graphdef, state = torch_import.load_module(make, tensors, name_map)
    return graphdef, parallel.shard_state(state, mesh, rules)


ENCODERS_SEED_OFFSET, CLIP_SEED_OFFSET = 1, 2  # random frozen weights: from config.seed + these


def frozen_encoders(
    config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, *, abstract: bool = False
) -> tuple[nnx.GraphDef, nnx.State]:
    """:class:`uniflow.FrozenEncoders` (VAE + T5) with the configured weights; a part without a file gets
    random weights (with a warning): a demo trains its own VAE but has no Flan-T5, for instance. ``abstract``:
    their shapes and shardings only (compiling ahead for other devices)."""
    cfg, rules = config_lib.uniflow_config(config), config_lib.mesh_rules(config)
    paths = config.model.frozen_weights
    make = lambda: uniflow.FrozenEncoders(cfg, rngs=nnx.Rngs(config.seed + ENCODERS_SEED_OFFSET))  # noqa: E731
    if abstract:
        return nnx_utils.abstract_sharded(make, mesh, rules)
    for part in ("vae", "t5"):
        if not paths[part]:
            logging.warning("model.frozen_weights.%s is empty: it has RANDOM weights (tests/toys only)", part)
    with parallel.axis_rules(rules):
        graphdef, state = nnx_utils.create_sharded(make, mesh, rules)
        if paths.vae:
            tensors = torch_import.read_safetensors(paths.vae)
            state["vae"] = _place(lambda: vae.VAE(cfg.vae, rngs=nnx.Rngs(0)), tensors, names.VAE, mesh, rules)[1]
        if paths.t5:
            tensors = hf.t5_encoder_tensors(hf.read_folder(paths.t5)[1])
            state["t5"] = _place(lambda: t5.T5Encoder(cfg.t5, rngs=nnx.Rngs(0)), tensors, names.T5, mesh, rules)[1]
    return graphdef, state


def clip_encoder(
    config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, *, abstract: bool = False
) -> tuple[nnx.GraphDef, nnx.State]:
    """The CLIP vision tower of V2A (video frames → per-frame features); ``abstract``: shapes and shardings."""
    clip_cfg, rules = config_lib.clip_config(config), config_lib.mesh_rules(config)
    make = lambda: clip.CLIPVisionEncoder(clip_cfg, rngs=nnx.Rngs(config.seed + CLIP_SEED_OFFSET))  # noqa: E731
    if abstract:
        return nnx_utils.abstract_sharded(make, mesh, rules)
    with parallel.axis_rules(rules):
        if not config.model.frozen_weights.clip:
            logging.warning("model.frozen_weights.clip is empty: CLIP has RANDOM weights (tests/toys only)")
            return nnx_utils.create_sharded(make, mesh, rules)
        tensors = hf.clip_vision_tensors(hf.read_folder(config.model.frozen_weights.clip)[1])
        return _place(make, tensors, names.CLIP_VISION, mesh, rules)
