"""Synthetic released-checkpoint folders: random values under the real names and shapes.

Conversion must be proven without downloading anything, so tests (tiny sizes) and
``scripts/convert_full_size.sh`` (the real sizes, from the key manifests) build a folder in the released
layout (``../shared/upstream_ref/release/LAYOUT.md``): ``config.yaml``, ``model.safetensors``, the VAE as a
``torch.save``-style zip ``.pt`` (written here without torch), ``instructions/t5_embeddings.h5``, the
resource files, and Hugging Face folders for Flan-T5 and CLIP.
"""

from __future__ import annotations

import io
import json
import pathlib
import pickle
import shutil
import struct
import zipfile
from collections.abc import Mapping
from typing import Any

import ml_collections
import numpy as np
import yaml
from flax import nnx
from safetensors.numpy import save_file

from uniflow_jax import config_lib, instructions, resources, tasks
from uniflow_jax.frontends import text
from uniflow_jax.models import clip, t5, uniflow, vae
from uniflow_jax.weights import names, release, torch_import, upstream_config

_VAE = "models.autoencoder.waveform.stable_vae"
_ENCODERS = "models.content_encoder"

_STORAGE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage"}


def _pickle_tensor_dict(obj: Any, out: io.BytesIO, storages: list[np.ndarray]) -> None:
    """Pickle protocol 2 opcodes for nested dicts of str/int/float/arrays, tensors as torch writes them."""
    if isinstance(obj, Mapping):
        out.write(pickle.EMPTY_DICT + pickle.MARK)
        for key, value in obj.items():
            _pickle_tensor_dict(key, out, storages)
            _pickle_tensor_dict(value, out, storages)
        out.write(pickle.SETITEMS)
    elif isinstance(obj, str):
        data = obj.encode()
        out.write(pickle.BINUNICODE + struct.pack("<I", len(data)) + data)
    elif isinstance(obj, bool):
        out.write(pickle.NEWTRUE if obj else pickle.NEWFALSE)
    elif isinstance(obj, int):
        out.write(pickle.BININT + struct.pack("<i", obj))
    elif isinstance(obj, float):
        out.write(pickle.BINFLOAT + struct.pack(">d", obj))
    elif isinstance(obj, tuple):
        out.write(pickle.MARK)
        for item in obj:
            _pickle_tensor_dict(item, out, storages)
        out.write(pickle.TUPLE)
    elif isinstance(obj, np.ndarray):
        array = np.ascontiguousarray(obj)
        key = str(len(storages))
        storages.append(array)
        strides = tuple(s // array.itemsize for s in array.strides)
        out.write(pickle.GLOBAL + b"torch._utils\n_rebuild_tensor_v2\n" + pickle.MARK)
        out.write(pickle.MARK)  # persistent id ('storage', type, key, location, numel)
        _pickle_tensor_dict("storage", out, storages)
        out.write(pickle.GLOBAL + f"torch\n{_STORAGE_NAMES[array.dtype]}\n".encode())
        for item in (key, "cpu", array.size):
            _pickle_tensor_dict(item, out, storages)
        out.write(pickle.TUPLE + pickle.BINPERSID)
        for item in (0, tuple(array.shape), strides, False):
            _pickle_tensor_dict(item, out, storages)
        out.write(pickle.GLOBAL + b"collections\nOrderedDict\n" + pickle.EMPTY_TUPLE + pickle.REDUCE)
        out.write(pickle.TUPLE + pickle.REDUCE)
    else:
        raise TypeError(f"cannot write {type(obj).__name__}")


def write_torch_zip(obj: Mapping[str, Any], path: str | pathlib.Path) -> None:
    """``obj`` (nested dicts of arrays and scalars) in the ``torch.save`` zip layout."""
    path = pathlib.Path(path)
    out, storages = io.BytesIO(), []
    out.write(pickle.PROTO + bytes([2]))
    _pickle_tensor_dict(obj, out, storages)
    out.write(pickle.STOP)
    root = path.stem
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{root}/data.pkl", out.getvalue())
        archive.writestr(f"{root}/byteorder", "little")
        for key, array in enumerate(storages):
            archive.writestr(f"{root}/data/{key}", array.astype(array.dtype.newbyteorder("<")).tobytes())
        archive.writestr(f"{root}/version", "3\n")


def random_tensors(shapes: Mapping[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    """Small random float32 values for every name; gains and scales near 1 so the nets stay finite."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        value = rng.standard_normal(shape, np.float32) * np.float32(0.02)
        if name.endswith(("weight_g", "norm.weight", "layer_norm.weight", "norm1.weight", "norm2.weight")):
            value += 1
        out[name] = value
    return out


def write_release(
    folder: str | pathlib.Path,
    config_yaml: Mapping[str, Any],
    model_tensors: Mapping[str, np.ndarray],
    vae_tensors: Mapping[str, np.ndarray],
    instruction_dim: int,
    seed: int = 0,
) -> pathlib.Path:
    """A released checkpoint folder: the VAE goes where ``model.autoencoder.pretrained_ckpt`` says, wrapped
    as a training checkpoint (``state_dict`` with ``autoencoder.`` names, plus a discriminator to drop)."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(dict(config_yaml), sort_keys=False))
    save_file(dict(model_tensors), str(folder / "model.safetensors"), metadata={"format": "pt"})
    vae_path = folder / config_yaml["model"]["autoencoder"]["pretrained_ckpt"]
    vae_path.parent.mkdir(parents=True, exist_ok=True)
    wrapped = {f"autoencoder.{k}": v for k, v in vae_tensors.items()}
    wrapped["discriminator.conv.weight"] = np.zeros((2, 1, 3), np.float32)
    write_torch_zip({"state_dict": wrapped, "global_step": 1_000_000, "epoch": 7}, vae_path)
    rng = np.random.default_rng(seed)
    bank = {
        instructions.key(task, k): rng.standard_normal((5 + k, instruction_dim), np.float32)
        for task, texts in tasks.instructions().items()
        for k in range(len(texts))
    }
    (folder / "instructions").mkdir(exist_ok=True)
    instructions.write_h5(bank, folder / "instructions/t5_embeddings.h5")
    copies = {"mfa_g2p/phone_set.json": "tts_phone_set.json", "svs/phone_set.json": "svs_phone_set.json",
              "svs/spk_set.json": "svs_spk_set.json"}  # fmt: skip
    for name, resource in copies.items():
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text(resources.read_text(resource))
    (folder / "svs/m4singer_pinyin2ph.txt").write_text("| ni | n i |\n| hao | h ao |\n| wo | uo |\n")
    (folder / "mfa_g2p/english_us_arpa.zip").write_bytes(b"")  # the MFA model: unused by the network
    return folder


def write_hf_folder(
    folder: str | pathlib.Path, hf_config: Mapping[str, Any], tensors: Mapping[str, np.ndarray]
) -> None:
    """A Hugging Face model folder: ``config.json`` + ``model.safetensors`` (shared tensors written once)."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(dict(hf_config), indent=1))
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(folder / "model.safetensors"))


def release_yaml(config: ml_collections.ConfigDict, vae_file: str = "vae/1m.pt") -> dict[str, Any]:
    """The released ``config.yaml`` (hydra ``_target_`` tree, the original's names) of our model config."""
    m = config.model
    d, dit, vae_cfg = m.content_dim, m.dit, m.vae
    coders = dict(
        channels=vae_cfg.channels, c_mults=list(vae_cfg.c_mults), strides=list(vae_cfg.strides), use_snake=True
    )
    spk_tts = {"_target_": f"{_ENCODERS}.midi_encoder.SpkConfig", "encoding_format": "embedding",
               "spk_embed_dim": m.phoneme.speaker_dim}  # fmt: skip
    spk_svs = {"_target_": f"{_ENCODERS}.midi_encoder.SpkConfig", "encoding_format": "id",
               "num_spk": m.score.num_speakers}  # fmt: skip
    fastspeech = lambda c: dict(d_model=c.d_model, num_layers=c.num_layers, num_heads=c.num_heads,  # noqa: E731
                                ffn_kernel_size=c.kernel_size, d_out=d)  # fmt: skip
    target = {"dummy": "DummyContentAudioFlowMatching", "hybrid": "HybridContentAudioFlowMatching"}[m.fusion]
    model = {
        "autoencoder": {
            "_target_": f"{_VAE}.StableVAE",
            "encoder": {
                "_target_": f"{_VAE}.OobleckEncoder",
                "in_channels": 1,
                **coders,
                "latent_dim": 2 * vae_cfg.latent_dim,
            },
            "decoder": {
                "_target_": f"{_VAE}.OobleckDecoder",
                "out_channels": 1,
                **coders,
                "latent_dim": vae_cfg.latent_dim,
                "final_tanh": False,
            },
            "io_channels": 1,
            "latent_dim": vae_cfg.latent_dim,
            "downsampling_ratio": int(np.prod(vae_cfg.strides)),
            "sample_rate": m.sample_rate,
            "pretrained_ckpt": vae_file,
            "bottleneck": {"_target_": f"{_VAE}.VAEBottleneck"},
        },
        "backbone": {
            "_target_": "models.dit.audio_dit.LayerFusionAudioDiT",
            "img_size": 1000,
            "in_chans": vae_cfg.latent_dim,
            "out_chans": vae_cfg.latent_dim,
            "embed_dim": dit.embed_dim,
            "depth": dit.depth,
            "num_heads": dit.num_heads,
            "mlp_ratio": dit.mlp_ratio,
            **upstream_config.DIT_OPTIONS,
            "ta_context_dim": d,
            "context_dim": d,
        },
        "content_adapter": {
            "_target_": "models.content_adapter.CrossAttentionAdapter",
            "content_dim": d,
            "d_out": d,
            "prefix_dim": d,
            "num_heads": m.adapter.num_heads,
            "dropout": 0.2,
            "duration_grad_scale": m.adapter.duration_grad_scale,
            "duration_predictor": {
                "_target_": "models.content_adapter.DurationPredictor",
                "in_channels": d,
                "filter_channels": m.adapter.filter_channels,
                "n_layers": m.adapter.num_layers,
                "kernel_size": m.adapter.kernel_size,
                "p_dropout": 0.5,
            },
        },
        "content_dim": d,
        "frame_resolution": 0.005,
        "duration_offset": 1.0,
        "cfg_drop_ratio": m.cfg_drop_prob,
        "_target_": f"models.flow_matching.{target}",
        "content_encoder": {
            "_target_": f"{_ENCODERS}.content_encoder.ContentEncoder",
            "embed_dim": d,
            "text_encoder": {
                "_target_": f"{_ENCODERS}.text_encoder.T5TextEncoder",
                "model_name": "google/flan-t5-large",
                "embed_dim": d,
            },
            "midi_encoder": {
                "_target_": f"{_ENCODERS}.midi_encoder.FastSpeech2MIDIEncoder",
                "phone_vocab_size": m.score.vocab_size,
                "midi_vocab_size": 300,
                "slur_vocab_size": 2,
                "spk_config": spk_svs,
                **fastspeech(m.score),
            },
            "audio_encoder": {
                "_target_": f"{_VAE}.StableVAEProjectorWrapper",
                "vae_dim": vae_cfg.latent_dim,
                "embed_dim": d,
            },
            "video_encoder": {
                "_target_": f"{_ENCODERS}.vision_encoder.MlpVideoEncoder",
                "video_feat_dim": m.video_dim,
                "embed_dim": d,
            },
            "phoneme_encoder": {
                "_target_": f"{_ENCODERS}.midi_encoder.FastSpeech2PhonemeEncoder",
                "phone_vocab_size": m.phoneme.vocab_size,
                **fastspeech(m.phoneme),
                "spk_config": spk_tts,
            },
        },
    }
    return {"sample_rate": m.sample_rate, "model": model}


def hf_configs(config: ml_collections.ConfigDict) -> tuple[dict[str, Any], dict[str, Any]]:
    """Hugging Face ``config.json`` contents of the Flan-T5 encoder and the CLIP vision tower of ``config``."""
    t5, vision = config.model.t5, config.model.clip
    t5_hf = dict(vocab_size=t5.vocab_size, d_model=t5.d_model, d_kv=t5.d_kv, d_ff=t5.d_ff, num_layers=t5.num_layers,
                 num_heads=t5.num_heads, feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
                 relative_attention_max_distance=128, layer_norm_epsilon=1e-6)  # fmt: skip
    clip_hf = dict(image_size=vision.image_size, patch_size=vision.patch_size, hidden_size=vision.hidden_size,
                   intermediate_size=vision.intermediate_size, num_hidden_layers=vision.num_layers,
                   num_attention_heads=vision.num_heads, hidden_act="quick_gelu", layer_norm_eps=1e-5)  # fmt: skip
    return t5_hf, clip_hf


def model_shapes(config: ml_collections.ConfigDict) -> dict[str, dict[str, tuple[int, ...]]]:
    """Original names and shapes of every file's tensors for ``config``'s model (from our modules, which the
    tests prove equal to the real-size manifests)."""
    cfg, clip_cfg = config_lib.uniflow_config(config), config_lib.clip_config(config)
    shapes = lambda make, name_map: torch_import.original_shapes(nnx.state(nnx.eval_shape(make)), name_map)  # noqa: E731
    return {
        "model": shapes(lambda: uniflow.UniFlow(cfg, rngs=nnx.Rngs(0)), names.UNIFLOW),
        "vae": shapes(lambda: vae.VAE(cfg.vae, rngs=nnx.Rngs(0)), names.VAE),
        "t5": shapes(lambda: t5.T5Encoder(cfg.t5, rngs=nnx.Rngs(0)), names.T5),
        "clip": shapes(lambda: clip.CLIPVisionEncoder(clip_cfg, rngs=nnx.Rngs(0)), names.CLIP_VISION),
    }


def build(
    root: str | pathlib.Path,
    config: ml_collections.ConfigDict,
    shapes: Mapping[str, Mapping[str, tuple[int, ...]]] | None = None,
    seed: int = 0,
) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    """``root/release``, ``root/flan-t5``, ``root/clip`` for ``config``'s model; ``shapes`` (per file, e.g.
    read from the key manifests) instead of the ones our modules give. Buffers get their true values."""
    root = pathlib.Path(root)
    shapes = shapes or model_shapes(config)
    model_tensors = random_tensors(shapes["model"], seed)
    model_tensors.update(_buffers(config))
    t5_hf, clip_hf = hf_configs(config)
    vae_tensors = random_tensors(shapes["vae"], seed + 1)
    release = write_release(
        root / "release", release_yaml(config), model_tensors, vae_tensors, config.model.t5.d_model, seed
    )
    write_hf_folder(root / "flan-t5", t5_hf, random_tensors(shapes["t5"], seed + 2))
    shutil.copyfile(_tokenizer(root), root / "flan-t5/spiece.model")
    write_hf_folder(root / "clip", clip_hf, random_tensors(shapes["clip"], seed + 3))
    return release, root / "flan-t5", root / "clip"


def _buffers(config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
    """The model's buffers (RoPE frequencies, ...) under their original names, as the original saves them."""
    cfg = config_lib.uniflow_config(config)
    buffers = release.computed_buffers(lambda: uniflow.UniFlow(cfg, rngs=nnx.Rngs(0)))
    return torch_import.export_state(buffers, names.UNIFLOW)


def _tokenizer(root: pathlib.Path) -> pathlib.Path:
    """A small SentencePiece model trained on the task instructions (the real one ships with Flan-T5)."""
    return text.train_tokenizer(instructions.all_texts(), root / "spiece", 256)
