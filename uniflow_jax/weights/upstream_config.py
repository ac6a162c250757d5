"""Translate the original constructor arguments (its yaml names) into our module configs.

Only the options UniFlow-Audio v1 uses are implemented; anything else is refused by name rather than
silently built differently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from uniflow_jax.models.adapter import AdapterConfig
from uniflow_jax.models.clip import CLIPVisionConfig
from uniflow_jax.models.dit import DiTConfig
from uniflow_jax.models.fastspeech2 import FastSpeech2Config
from uniflow_jax.models.t5 import T5Config
from uniflow_jax.models.uniflow import UniFlowConfig
from uniflow_jax.models.vae import VAEConfig


class UnsupportedUpstreamConfig(ValueError):
    """The original configuration asks for a variant this port does not build."""


# LayerFusionAudioDiT options and the only values v1 uses (configs/model/backbone/layer_fusion_dit.yaml).
DIT_OPTIONS = {
    "patch_size": 1,
    "input_type": "1d",
    "qkv_bias": False,
    "qk_scale": None,
    "qk_norm": "layernorm",
    "norm_layer": "layernorm",
    "act_layer": "geglu",
    "context_norm": True,
    "time_fusion": "ada",
    "ta_context_fusion": "add",
    "ta_context_norm": True,
    "context_fusion": "cross",
    "context_pe_method": "none",
    "pe_method": "none",
    "rope_mode": "shared",
    "use_conv": True,
    "skip": True,
    "skip_norm": True,
}


def _check_fixed(kwargs: Mapping[str, Any], fixed: Mapping[str, Any], what: str) -> None:
    wrong = [f"{k}={kwargs[k]!r} (supported: {v!r})" for k, v in fixed.items() if k in kwargs and kwargs[k] != v]
    if wrong:
        raise UnsupportedUpstreamConfig(f"{what}: unsupported options: " + ", ".join(wrong))


def dit_config(kwargs: Mapping[str, Any], **overrides: Any) -> DiTConfig:
    """``LayerFusionAudioDiT(**kwargs)`` → :class:`DiTConfig`."""
    _check_fixed(kwargs, DIT_OPTIONS, "LayerFusionAudioDiT")
    if kwargs.get("in_chans", 128) != kwargs.get("out_chans", 128):
        raise UnsupportedUpstreamConfig("LayerFusionAudioDiT: in_chans must equal out_chans")
    return DiTConfig(
        embed_dim=kwargs["embed_dim"],
        depth=kwargs["depth"],
        num_heads=kwargs["num_heads"],
        mlp_ratio=kwargs.get("mlp_ratio", 4.0),
        latent_dim=kwargs.get("in_chans", 128),
        context_dim=kwargs["context_dim"],
        ta_context_dim=kwargs["ta_context_dim"],
        **overrides,
    )


def vae_config(kwargs: Mapping[str, Any], **overrides: Any) -> VAEConfig:
    """``StableVAE(enc=..., dec=..., ...)`` → :class:`VAEConfig` (encoder and decoder must mirror)."""
    enc, dec = kwargs["enc"], kwargs["dec"]
    _check_fixed(enc, {"use_snake": True}, "OobleckEncoder")
    _check_fixed(dec, {"use_snake": True, "final_tanh": False}, "OobleckDecoder")
    mismatched = [k for k in ("channels", "c_mults", "strides") if enc[k] != dec[k]]
    if mismatched:
        raise UnsupportedUpstreamConfig(f"StableVAE: encoder and decoder differ in {mismatched}")
    if enc["latent_dim"] != 2 * dec["latent_dim"]:
        raise UnsupportedUpstreamConfig("StableVAE: encoder latent_dim must be 2 × decoder latent_dim (VAE bottleneck)")
    return VAEConfig(
        channels=enc["channels"],
        c_mults=tuple(enc["c_mults"]),
        strides=tuple(enc["strides"]),
        latent_dim=dec["latent_dim"],
        io_channels=kwargs.get("io_channels", 1),
        sample_rate=kwargs.get("sample_rate", 24000),
        **overrides,
    )


def fastspeech2_config(kwargs: Mapping[str, Any]) -> FastSpeech2Config:
    """``FastSpeech2PhonemeEncoder`` / ``FastSpeech2MIDIEncoder`` arguments → :class:`FastSpeech2Config`."""
    spk = kwargs.get("spk") or {}
    fmt = spk.get("encoding_format", "embedding")
    if fmt not in ("embedding", "id"):
        raise UnsupportedUpstreamConfig(f"FastSpeech2: speaker encoding_format={fmt!r} (supported: embedding, id)")
    return FastSpeech2Config(
        vocab_size=kwargs["phone_vocab_size"],
        d_model=kwargs["d_model"],
        num_layers=kwargs["num_layers"],
        num_heads=kwargs["num_heads"],
        kernel_size=kwargs["ffn_kernel_size"],
        d_out=kwargs["d_out"],
        speaker_dim=spk.get("spk_embed_dim", 256) if fmt == "embedding" else 0,
        num_speakers=spk["num_spk"] if fmt == "id" else 0,
        midi_vocab_size=kwargs.get("midi_vocab_size", 300),
        slur_vocab_size=kwargs.get("slur_vocab_size", 2),
    )


def adapter_config(kwargs: Mapping[str, Any]) -> AdapterConfig:
    """``CrossAttentionAdapter(content_dim, d_out, prefix_dim, num_heads, ..., dp={...})`` → :class:`AdapterConfig`."""
    dims = {kwargs.get(k, kwargs["content_dim"]) for k in ("content_dim", "d_out", "prefix_dim")}
    if len(dims) != 1:
        raise UnsupportedUpstreamConfig(f"CrossAttentionAdapter: content_dim, d_out and prefix_dim must agree: {dims}")
    dp = kwargs["dp"]
    if dp["in_channels"] != kwargs["content_dim"]:
        raise UnsupportedUpstreamConfig("DurationPredictor: in_channels must equal content_dim")
    return AdapterConfig(
        dim=kwargs["content_dim"],
        num_heads=kwargs["num_heads"],
        duration_grad_scale=kwargs.get("duration_grad_scale", 0.1),
        filter_channels=dp["filter_channels"],
        num_layers=dp["n_layers"],
        kernel_size=dp["kernel_size"],
    )


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


def uniflow_config(kwargs: Mapping[str, Any], *, fusion: str = "dummy", **overrides: Any) -> UniFlowConfig:
    """The complete model's arguments (backbone, vae, phoneme, midi, adapter, t5, video_feat_dim, content_dim)."""
    d = kwargs["content_dim"]
    return UniFlowConfig(
        dit=dit_config(kwargs["backbone"]),
        vae=vae_config(kwargs["vae"]),
        phoneme=fastspeech2_config({"d_out": d, **kwargs["phoneme"]}),
        score=fastspeech2_config({"d_out": d, **kwargs["midi"]}),
        adapter=adapter_config({"content_dim": d, "d_out": d, **kwargs["adapter"]}),
        t5=t5_config(kwargs["t5"]),
        content_dim=d,
        video_dim=kwargs["video_feat_dim"],
        fusion=fusion,
        **overrides,
    )
