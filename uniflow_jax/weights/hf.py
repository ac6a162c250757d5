"""Hugging Face model folders (T5 encoder, CLIP vision): ``config.json`` → our configs, tensors → our names.

Loads the real Flan-T5-large and CLIP ViT-L/14 folders a user downloaded (``model.safetensors``), as
well as the encoder-only / vision-only state dicts the fixtures use.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from uniflow_jax.models.clip import CLIPVisionConfig
from uniflow_jax.models.t5 import T5Config
from uniflow_jax.weights import torch_import
from uniflow_jax.weights.upstream_config import UnsupportedUpstreamConfig


def t5_config(hf: Mapping[str, Any]) -> T5Config:
    """A transformers ``T5Config`` dict → :class:`T5Config` (gated-GELU T5 v1.1 / Flan-T5 only)."""
    ff = hf.get("feed_forward_proj", "relu")
    if ff != "gated-gelu":
        raise UnsupportedUpstreamConfig(f"T5: feed_forward_proj={ff!r} (supported: 'gated-gelu', as in Flan-T5)")
    return T5Config(
        vocab_size=hf["vocab_size"],
        d_model=hf["d_model"],
        d_kv=hf["d_kv"],
        d_ff=hf["d_ff"],
        num_layers=hf["num_layers"],
        num_heads=hf["num_heads"],
        num_buckets=hf.get("relative_attention_num_buckets", 32),
        max_distance=hf.get("relative_attention_max_distance", 128),
        eps=hf.get("layer_norm_epsilon", 1e-6),
    )


def clip_vision_config(hf: Mapping[str, Any]) -> CLIPVisionConfig:
    """A transformers ``CLIPVisionConfig`` (or the ``vision_config`` of a ``CLIPConfig``) → ours."""
    hf = hf.get("vision_config", hf)
    if hf.get("hidden_act", "quick_gelu") != "quick_gelu":
        raise UnsupportedUpstreamConfig(f"CLIP: hidden_act={hf['hidden_act']!r} (supported: 'quick_gelu')")
    return CLIPVisionConfig(
        image_size=hf["image_size"],
        patch_size=hf["patch_size"],
        hidden_size=hf["hidden_size"],
        intermediate_size=hf["intermediate_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"],
        eps=hf.get("layer_norm_eps", 1e-5),
    )


def t5_encoder_tensors(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The encoder part of a T5 / T5EncoderModel state dict (a full seq2seq checkpoint has a decoder too)."""
    return {k: v for k, v in tensors.items() if k.startswith("encoder.") or k == "shared.weight"}


def clip_vision_tensors(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The vision tower of a CLIPModel / CLIPVisionModel state dict, without its ``vision_model.`` prefix."""
    prefix = "vision_model."
    if any(k.startswith(prefix) for k in tensors):
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    return dict(tensors)


def read_folder(folder: str | pathlib.Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``config.json`` and the tensors of every ``*.safetensors`` file in a Hugging Face model folder."""
    folder = pathlib.Path(folder)
    files = sorted(folder.glob("*.safetensors"))
    if not (folder / "config.json").exists() or not files:
        raise FileNotFoundError(f"{folder}: expected config.json and *.safetensors (a Hugging Face model folder)")
    tensors: dict[str, np.ndarray] = {}
    for file in files:
        tensors.update(torch_import.read_safetensors(str(file)))
    return json.loads((folder / "config.json").read_text()), tensors
