"""Hugging Face model folders (T5 encoder, CLIP vision): reading them and selecting the tensors we load.

Reads folders as the Hub and ``save_pretrained`` publish them: one ``model.safetensors``, sharded
safetensors with ``model.safetensors.index.json``, or only ``pytorch_model.bin`` (sharded too; read without
torch and without unpickling code); T5's tied embedding stored once as ``shared.weight``.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from uniflow_jax.weights import torch_import, torch_pickle


def t5_encoder_tensors(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The encoder part of a T5 / T5EncoderModel state dict (a full seq2seq checkpoint has a decoder too).
    Current ``transformers`` saves the tied input embedding once, as ``shared.weight``: it is the encoder's."""
    encoder = {k: v for k, v in tensors.items() if k.startswith("encoder.") or k == "shared.weight"}
    if "encoder.embed_tokens.weight" not in encoder and "shared.weight" in encoder:
        encoder["encoder.embed_tokens.weight"] = encoder["shared.weight"]
    return encoder


def clip_vision_tensors(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The vision tower of a CLIPModel / CLIPVisionModel state dict, without its ``vision_model.`` prefix."""
    prefix = "vision_model."
    if any(k.startswith(prefix) for k in tensors):
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    return dict(tensors)


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # in order of preference, each maybe sharded


def weight_files(folder: str | pathlib.Path) -> list[pathlib.Path]:
    """The files holding a Hugging Face folder's weights: ``NAME`` or the shards its ``NAME.index.json`` lists
    (every one present), safetensors before ``pytorch_model.bin``."""
    folder = pathlib.Path(folder)
    for name in WEIGHT_FILES:
        index = folder / f"{name}.index.json"
        if index.exists():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (ValueError, KeyError, AttributeError) as error:
                raise ValueError(f"{index}: not a weight index (a JSON object with a 'weight_map'): {error}") from None
            missing = [shard for shard in shards if not (folder / shard).exists()]
            if missing:
                raise FileNotFoundError(f"{index} lists shards that are not in {folder}: {', '.join(missing)}")
            return [folder / shard for shard in shards]
        if (folder / name).exists():
            return [folder / name]
    raise FileNotFoundError(
        f"{folder}: no weights (expected model.safetensors, pytorch_model.bin, or a sharded one with its "
        ".index.json, as a Hugging Face model folder has)"
    )


def read_folder(folder: str | pathlib.Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``config.json`` and every tensor of a Hugging Face model folder (see :func:`weight_files`)."""
    folder = pathlib.Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder}: no config.json (expected a Hugging Face model folder)")
    tensors: dict[str, np.ndarray] = {}
    for file in weight_files(folder):
        if file.suffix == ".safetensors":
            tensors.update(torch_import.read_safetensors(str(file)))
        else:
            tensors.update(torch_pickle.state_dict(torch_pickle.load(file)))
    return json.loads((folder / "config.json").read_text()), tensors
