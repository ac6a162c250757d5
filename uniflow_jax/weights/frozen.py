"""The frozen encoders (VAE, T5, CLIP) from the user's weight files, placed directly on the mesh.

``config.model.frozen_weights``: ``vae`` = the original StableVAE state dict as safetensors (original
names), ``t5`` = a Flan-T5 Hugging Face folder, ``clip`` = a CLIP (vision) Hugging Face folder. A part
left empty gets random weights from the seed, with a warning: that is for tests and toy runs only.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from uniflow_jax import config_lib, nnx_utils, parallel
from uniflow_jax.models import clip, uniflow
from uniflow_jax.weights import hf, names, torch_import


def _place(make: Callable[[], nnx.Module], tensors, name_map, mesh, rules) -> tuple[nnx.GraphDef, nnx.State]:
    graphdef, state = torch_import.load_module(make, tensors, name_map)
    return graphdef, parallel.shard_state(state, mesh, rules)


def frozen_encoders(
    config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, seed: int = 0
) -> tuple[nnx.GraphDef, nnx.State]:
    """:class:`uniflow.FrozenEncoders` (VAE + T5) with the configured weights."""
    cfg, rules = config_lib.uniflow_config(config), config_lib.mesh_rules(config)
    paths = config.model.frozen_weights
    make = lambda: uniflow.FrozenEncoders(cfg, rngs=nnx.Rngs(seed))  # noqa: E731
    if not paths.vae and not paths.t5:
        logging.warning("model.frozen_weights is empty: the VAE and T5 have RANDOM weights (tests/toys only)")
        with parallel.axis_rules(rules):
            return nnx_utils.create_sharded(make, mesh, rules)
    if not (paths.vae and paths.t5):
        raise ValueError("model.frozen_weights needs both vae (safetensors) and t5 (folder), or neither")
    tensors: dict[str, np.ndarray] = {}
    for key, value in torch_import.read_safetensors(paths.vae).items():
        tensors[f"autoencoder.{key}"] = value
    for key, value in hf.t5_encoder_tensors(hf.read_folder(paths.t5)[1]).items():
        tensors[f"content_encoder.text_encoder.model.{key}"] = value
    with parallel.axis_rules(rules):
        return _place(make, tensors, names.FROZEN, mesh, rules)


def clip_encoder(
    config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, seed: int = 0
) -> tuple[nnx.GraphDef, nnx.State]:
    """The CLIP vision tower of V2A (video frames → per-frame features)."""
    clip_cfg, rules = config_lib.clip_config(config), config_lib.mesh_rules(config)
    make = lambda: clip.CLIPVisionEncoder(clip_cfg, rngs=nnx.Rngs(seed))  # noqa: E731
    with parallel.axis_rules(rules):
        if not config.model.frozen_weights.clip:
            logging.warning("model.frozen_weights.clip is empty: CLIP has RANDOM weights (tests/toys only)")
            return nnx_utils.create_sharded(make, mesh, rules)
        tensors = hf.clip_vision_tensors(hf.read_folder(config.model.frozen_weights.clip)[1])
        return _place(make, tensors, names.CLIP_VISION, mesh, rules)
