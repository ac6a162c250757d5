"""A released UniFlow-Audio v1 folder (``config.yaml``, ``model.safetensors``, the VAE checkpoint, the
instruction HDF5, resource files) plus Flan-T5 and CLIP folders → our config and parameters.

Everything is checked by name and shape against the model the config builds: every tensor of every file
must map to exactly one of our parameters (the original would silently keep random values for a missing
one), and every problem is listed at once. The layout is ``../shared/upstream_ref/release/LAYOUT.md``.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
import yaml
from flax import nnx

from uniflow_jax import config_lib, nnx_utils
from uniflow_jax.models import clip, t5, uniflow, vae
from uniflow_jax.weights import hf, names, torch_import, torch_pickle, upstream_config
from uniflow_jax.weights.upstream_config import UnsupportedUpstreamConfig

FUSION_TARGETS = {"DummyContentAudioFlowMatching": "dummy", "HybridContentAudioFlowMatching": "hybrid"}
# Flow-model options of v1 that this port hard-codes (spec section 3.8).
FIXED_OPTIONS = {"frame_resolution": 0.005, "duration_offset": 1.0}
# Resource files copied next to the converted weights (the sampler's front ends read them from there).
PINYIN_TABLE = "svs/m4singer_pinyin2ph.txt"  # the SVS front end's pinyin → phones table
RESOURCE_FILES = ("mfa_g2p/phone_set.json", "svs/phone_set.json", "svs/spk_set.json", PINYIN_TABLE)
INSTRUCTIONS_FILE = "instructions/t5_embeddings.h5"


def read_config_yaml(path: str | pathlib.Path) -> dict[str, Any]:
    """A release's ``config.yaml`` (the file, or the folder holding it)."""
    path = pathlib.Path(path)
    path = path / "config.yaml" if path.is_dir() else path
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {path.parent} a released UniFlow-Audio folder?")
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict) or "model" not in config:
        raise ValueError(f"{path}: expected a mapping with a 'model' key")
    return config


def _class_name(node: Mapping[str, Any]) -> str:
    return str(node.get("_target_", "")).rsplit(".", 1)[-1]


def _expect(node: Mapping[str, Any], cls: str, where: str) -> Mapping[str, Any]:
    if _class_name(node) != cls:
        raise UnsupportedUpstreamConfig(f"{where}: _target_ {node.get('_target_')!r} (supported: {cls})")
    return node


def upstream_kwargs(model: Mapping[str, Any]) -> dict[str, Any]:
    """The yaml ``model`` node (hydra ``_target_`` tree) → the flat arguments :mod:`upstream_config` reads."""
    encoders = _expect(model["content_encoder"], "ContentEncoder", "content_encoder")
    autoencoder = _expect(model["autoencoder"], "StableVAE", "autoencoder")
    adapter = _expect(model["content_adapter"], "CrossAttentionAdapter", "content_adapter")
    backbone = _expect(model["backbone"], "LayerFusionAudioDiT", "backbone")
    phoneme = _expect(encoders["phoneme_encoder"], "FastSpeech2PhonemeEncoder", "phoneme_encoder")
    midi = _expect(encoders["midi_encoder"], "FastSpeech2MIDIEncoder", "midi_encoder")
    d = model["content_dim"]
    widths = {
        "content_encoder.embed_dim": encoders["embed_dim"],
        "text_encoder.embed_dim": encoders["text_encoder"]["embed_dim"],
        "audio_encoder.embed_dim": encoders["audio_encoder"]["embed_dim"],
        "video_encoder.embed_dim": encoders["video_encoder"]["embed_dim"],
        "backbone.context_dim": backbone["context_dim"],
        "backbone.ta_context_dim": backbone["ta_context_dim"],
    }
    wrong = {k: v for k, v in widths.items() if v != d}
    if wrong:
        raise UnsupportedUpstreamConfig(f"every content width must equal content_dim {d}: {wrong}")
    if encoders["audio_encoder"]["vae_dim"] != autoencoder["latent_dim"]:
        raise UnsupportedUpstreamConfig("audio_encoder.vae_dim must equal the VAE latent_dim")
    for key, value in FIXED_OPTIONS.items():
        if model.get(key, value) != value:
            raise UnsupportedUpstreamConfig(f"model.{key}={model[key]!r} (supported: {value!r})")
    return {
        "content_dim": d,
        "backbone": backbone,
        "vae": {
            "enc": autoencoder["encoder"],
            "dec": autoencoder["decoder"],
            "io_channels": autoencoder.get("io_channels", 1),
            "sample_rate": autoencoder.get("sample_rate", 24000),
        },
        "phoneme": {**phoneme, "spk": phoneme.get("spk_config")},
        "midi": {**midi, "spk": midi.get("spk_config")},
        "adapter": {**adapter, "dp": adapter["duration_predictor"]},
        "video_feat_dim": encoders["video_encoder"]["video_feat_dim"],
    }


def fusion_of(model: Mapping[str, Any]) -> str:
    name = _class_name(model)
    if name not in FUSION_TARGETS:
        raise UnsupportedUpstreamConfig(
            f"model._target_ {model.get('_target_')!r} (supported: {sorted(FUSION_TARGETS)})"
        )
    return FUSION_TARGETS[name]


def our_config(
    release_config: Mapping[str, Any], t5_config: Mapping[str, Any], clip_config: Mapping[str, Any] | None
) -> ml_collections.ConfigDict:
    """Our experiment config for a release (``config.yaml`` contents) and the HF configs of T5 and CLIP (None:
    converted without CLIP; ``model.clip`` keeps the ViT-L/14 defaults, unused). The CLIP's width must be the
    model's video feature width."""
    model = release_config["model"]
    kwargs = {**upstream_kwargs(model), "t5": t5_config}
    typed = upstream_config.uniflow_config(
        kwargs, fusion=fusion_of(model), cfg_drop_prob=model.get("cfg_drop_ratio", 0.2)
    )
    config = config_lib.base_config("small")
    if clip_config is None:
        clip_cfg = config_lib.clip_config(config)
    else:
        clip_cfg = upstream_config.clip_vision_config(clip_config)
        if clip_cfg.hidden_size != typed.video_dim:
            raise upstream_config.UnsupportedUpstreamConfig(
                f"CLIP: its features are {clip_cfg.hidden_size} wide, the model's video features "
                f"{typed.video_dim} (config.yaml video_feat_dim): give the CLIP the release was trained with"
            )
    config.model.sample_rate = release_config.get("sample_rate", 24000)
    m, dit = config.model, typed.dit
    m.dit.update(embed_dim=dit.embed_dim, depth=dit.depth, num_heads=dit.num_heads, mlp_ratio=dit.mlp_ratio,
                 latent_dim=dit.latent_dim, context_dim=dit.context_dim, ta_context_dim=dit.ta_context_dim)  # fmt: skip
    m.vae.update({f.name: getattr(typed.vae, f.name) for f in dataclasses.fields(typed.vae) if f.name in m.vae})
    for ours, part in ((m.phoneme, typed.phoneme), (m.score, typed.score)):
        ours.update({k: getattr(part, k) for k in ours})
    m.adapter.update({k: getattr(typed.adapter, k) for k in m.adapter})
    m.t5 = ml_collections.ConfigDict(dataclasses.asdict(typed.t5))
    m.clip = ml_collections.ConfigDict(dataclasses.asdict(clip_cfg))
    m.content_dim, m.video_dim, m.fusion, m.cfg_drop_prob = (
        typed.content_dim,
        typed.video_dim,
        typed.fusion,
        typed.cfg_drop_prob,
    )
    built = config_lib.uniflow_config(config)
    # Fields the release does not decide: how the backbone executes (compute dtype, rematerialisation, scan
    # unrolling), the VAE's compute dtype, and the x-vector width of the singer-id encoder.
    replace = dataclasses.replace
    run_fields = {k: getattr(built.dit, k) for k in ("dtype", "remat", "scan_unroll")}
    expected = replace(typed, dit=replace(typed.dit, **run_fields),
                       vae=replace(typed.vae, dtype=built.vae.dtype),
                       score=replace(typed.score, speaker_dim=built.score.speaker_dim))  # fmt: skip
    if built != expected:  # every field of the release must have landed in our config
        raise AssertionError(f"config mapping lost a field:\n  release {expected}\n  ours    {built}")
    return config


# ------------------------------------------------------------------------------------------------ weights


def vae_state_dict(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """The StableVAE tensors of a VAE checkpoint, as the original loader keeps them: ``.safetensors`` as is,
    a ``torch.save`` file through the safe reader — its ``state_dict`` entries under ``autoencoder.``,
    prefix stripped (a training wrapper's discriminator and other entries are dropped)."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"VAE checkpoint {path} not found (config.yaml model.autoencoder.pretrained_ckpt)")
    if path.suffix == ".safetensors":
        return torch_import.read_safetensors(str(path))
    tensors = torch_pickle.state_dict(torch_pickle.load(path))
    prefix = "autoencoder."
    kept = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not kept:
        raise ValueError(f"{path}: no 'autoencoder.' tensors in its state_dict (found e.g. {sorted(tensors)[:5]})")
    return kept


def _hf_config(folder: str | pathlib.Path) -> dict[str, Any]:
    path = pathlib.Path(folder) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: expected a Hugging Face model folder")
    return json.loads(path.read_text())


def _import(
    make: Callable[[], nnx.Module], read: Callable[[], Mapping[str, np.ndarray]], name_map, what: str
) -> nnx.State:
    """Concrete state of ``make()``'s module from the tensors ``read()`` returns (strict: every key used, every
    shape right). The file's tensors live only while they are converted, which bounds the peak memory."""
    abstract = nnx.state(nnx.eval_shape(make))
    try:
        return torch_import.import_state(abstract, read(), name_map)
    except torch_import.WeightLoadError as error:
        raise torch_import.WeightLoadError(f"{what}: {error}") from None


def computed_buffers(make: Callable[[], nnx.Module]) -> nnx.State:
    """The buffers (non-parameter constants) ``make()``'s module computes; jitted, so the unused parameter
    initialisation is compiled away."""
    return jax.jit(lambda: nnx.split_state(nnx.state(make()), nnx.Param, ...)[1])()


def buffer_mismatches(state: nnx.State, fresh: nnx.State) -> list[str]:
    """Buffers (constants such as RoPE frequencies) whose stored values differ from the ones we compute."""
    ours = dict(nnx.to_flat_state(fresh))
    bad = []
    for path, var in nnx.to_flat_state(state):
        value, expected = np.asarray(var.get_value()), np.asarray(ours[path].get_value())
        if value.shape == expected.shape and value.size and not np.allclose(value, expected, rtol=1e-6, atol=1e-7):
            bad.append("/".join(map(str, path)))
    return bad


@dataclasses.dataclass
class Converted:
    """Our parameters of a release: the trainable model and the frozen encoders, as nnx states."""

    config: ml_collections.ConfigDict
    model: nnx.State  # Params of uniflow.UniFlow
    frozen: nnx.State  # uniflow.FrozenEncoders (VAE + T5)
    clip: nnx.State | None  # the CLIP vision tower (None: converted without one)
    counts: dict[str, int]


def convert(
    release: str | pathlib.Path, t5_folder: str | pathlib.Path, clip_folder: str | pathlib.Path | None
) -> Converted:
    """Reads and checks every tensor of a release and the T5/CLIP folders (values in float32); without a CLIP
    folder, V2A needs precomputed video features."""
    release = pathlib.Path(release)
    release_config = read_config_yaml(release)
    t5_hf = _hf_config(t5_folder)
    clip_hf = None if clip_folder is None else _hf_config(clip_folder)
    config = our_config(release_config, t5_hf, clip_hf)
    cfg, clip_cfg = config_lib.uniflow_config(config), config_lib.clip_config(config)

    model_file = release / "model.safetensors"
    if not model_file.exists():
        raise FileNotFoundError(f"{model_file} not found")
    make_model = lambda: uniflow.UniFlow(cfg, rngs=nnx.Rngs(0))  # noqa: E731
    model_state = _import(
        make_model, lambda: torch_import.read_safetensors(str(model_file)), names.UNIFLOW, str(model_file)
    )
    params, buffers = nnx.split_state(model_state, nnx.Param, ...)
    stale = buffer_mismatches(buffers, computed_buffers(make_model))
    if stale:
        raise torch_import.WeightLoadError(f"{model_file}: buffers differ from the original's constants: {stale}")

    vae_file = release / release_config["model"]["autoencoder"]["pretrained_ckpt"]
    vae_state = _import(
        lambda: vae.VAE(cfg.vae, rngs=nnx.Rngs(0)), lambda: vae_state_dict(vae_file), names.VAE, str(vae_file)
    )
    t5_state = _import(
        lambda: t5.T5Encoder(cfg.t5, rngs=nnx.Rngs(0)),
        lambda: hf.t5_encoder_tensors(hf.read_folder(t5_folder)[1]),
        names.T5,
        str(t5_folder),
    )
    frozen = nnx.State({"vae": vae_state, "t5": t5_state})
    counts = {
        "model": nnx_utils.count_parameters(params),
        "vae": nnx_utils.count_parameters(vae_state),
        "t5": nnx_utils.count_parameters(t5_state),
    }
    clip_state = None
    if clip_folder is not None:
        clip_state = _import(
            lambda: clip.CLIPVisionEncoder(clip_cfg, rngs=nnx.Rngs(0)),
            lambda: hf.clip_vision_tensors(hf.read_folder(clip_folder)[1]),
            names.CLIP_VISION,
            str(clip_folder),
        )
        counts["clip"] = nnx_utils.count_parameters(clip_state)
    return Converted(config, params, frozen, clip_state, counts)
