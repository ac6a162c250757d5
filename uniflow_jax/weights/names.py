"""Original (PyTorch) parameter names of each of our modules, as ``NameMap`` tables."""

import dataclasses

from uniflow_jax.weights.torch_import import CompositeNameMap, NameMap


def with_prefix(names: NameMap, prefix: str) -> NameMap:
    """The same table for a module nested under ``prefix`` (e.g. ``"backbone."``)."""
    return dataclasses.replace(names, prefix=prefix)


# torch.nn.MultiheadAttention packs q|k|v as in_proj_weight / in_proj_bias.
_TORCH_MHA = (r"\.in_proj\.(weight|bias)$", r".in_proj_\1")

# LayerFusionAudioDiT: our attribute names are the original's except where a torch Sequential put numbers.
DIT = NameMap(
    renames=(
        (r"^patch_embed\.", "patch_embed.proj."),
        (r"^time_embed\.fc1\.", "time_embed.mlp.0."),
        (r"^time_embed\.fc2\.", "time_embed.mlp.2."),
        (r"^context_embed\.fc1\.", "context_embed.0."),
        (r"^context_embed\.fc2\.", "context_embed.2."),
        (r"\.mlp\.proj_in\.", ".mlp.net.0.proj."),
        (r"\.mlp\.proj_out\.", ".mlp.net.2."),
    ),
    stacked=("in_blocks", "out_blocks"),
)

# FastSpeech2PhonemeEncoder / FastSpeech2MIDIEncoder (fairseq-style FFT stack).
FASTSPEECH2 = NameMap(
    renames=(
        (r"^layers\.(\d+)\.", r"layers.layers.\1.op."),
        _TORCH_MHA,
        (r"\.ffn_([12])\.", r".ffn.ffn_\1."),
        (r"^final_norm\.", "layers.layer_norm."),
        (r"^pos_float_tensor$", "pos_encoding._float_tensor"),
    ),
    stacked=("layers",),
)

# CrossAttentionAdapter (with its DurationPredictor: Sequential(pad, conv, ReLU, LayerNorm, dropout) per layer).
ADAPTER = NameMap(
    renames=(
        _TORCH_MHA,
        (r"^duration_predictor\.layers\.(\d+)\.conv\.", r"duration_predictor.conv.\1.1."),
        (r"^duration_predictor\.layers\.(\d+)\.norm\.", r"duration_predictor.conv.\1.3."),
        (r"^global_duration_mlp\.fc1\.", "global_duration_mlp.0."),
        (r"^global_duration_mlp\.fc2\.", "global_duration_mlp.3."),
    ),
)

# transformers T5EncoderModel; the relative-position table lives in block 0 only.
T5 = NameMap(
    renames=(
        (r"^blocks\.(\d+)\.attn_norm\.", r"encoder.block.\1.layer.0.layer_norm."),
        (r"^blocks\.(\d+)\.attn\.", r"encoder.block.\1.layer.0.SelfAttention."),
        (r"^blocks\.(\d+)\.ffn_norm\.", r"encoder.block.\1.layer.1.layer_norm."),
        (r"^blocks\.(\d+)\.ffn\.", r"encoder.block.\1.layer.1.DenseReluDense."),
        (r"^relative_attention_bias\.", "encoder.block.0.layer.0.SelfAttention.relative_attention_bias."),
        (r"^(embed_tokens|final_layer_norm)\.", r"encoder.\1."),
    ),
    stacked=("blocks",),
    aliases=(r"shared\.weight",),  # tied to encoder.embed_tokens.weight
)

# transformers CLIPVisionModel (names inside its ``vision_model``).
CLIP_VISION = NameMap(
    renames=(
        (r"^(class_embedding)$", r"embeddings.\1"),
        (r"^(patch_embedding)$", r"embeddings.\1.weight"),
        (r"^(position_embedding)\.", r"embeddings.\1."),
        (r"^layers\.(\d+)\.(fc[12])\.", r"encoder.layers.\1.mlp.\2."),
        (r"^layers\.(\d+)\.", r"encoder.layers.\1."),
    ),
    stacked=("layers",),
    aliases=(r"embeddings\.position_ids",),  # a non-trainable index buffer in older transformers
)

# StableVAE: the module tree mirrors the original's nesting one to one.
VAE = NameMap()


def _linear(prefix: str) -> NameMap:
    return NameMap(prefix=prefix)


# The trainable UniFlow model (upstream {Dummy,Hybrid}ContentAudioFlowMatching minus its frozen parts).
UNIFLOW = CompositeNameMap(
    parts=(
        (("backbone",), with_prefix(DIT, "backbone.")),
        (("content_encoder", "phoneme_encoder"), with_prefix(FASTSPEECH2, "content_encoder.phoneme_encoder.")),
        (("content_encoder", "midi_encoder"), with_prefix(FASTSPEECH2, "content_encoder.midi_encoder.")),
        (("content_encoder", "audio_proj"), _linear("content_encoder.audio_encoder.proj.")),
        (("content_encoder", "video_proj"), _linear("content_encoder.video_encoder.mlp.")),
        (("content_encoder", "text_proj"), _linear("content_encoder.text_encoder.proj.")),
        (("content_adapter",), with_prefix(ADAPTER, "content_adapter.")),
    )
)

# Its frozen encoders as stored in the same state dict. The VAE also appears, aliased, under
# content_encoder.audio_encoder.model. (the same module registered twice).
VAE_IN_MODEL = with_prefix(VAE, "autoencoder.")
VAE_ALIAS_PREFIX = "content_encoder.audio_encoder.model."
T5_IN_MODEL = with_prefix(T5, "content_encoder.text_encoder.model.")
FROZEN = CompositeNameMap(parts=((("vae",), VAE_IN_MODEL), (("t5",), T5_IN_MODEL)))
