"""Hugging Face model folders (T5 encoder, CLIP vision): reading them and selecting the tensors we load.

Loads the real Flan-T5-large and CLIP ViT-L/14 folders a user downloaded (``model.safetensors``), as
well as the encoder-only / vision-only state dicts the fixtures use.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from uniflow_jax.weights import torch_import


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
