"""Original (PyTorch) parameter names of each of our modules, as ``NameMap`` tables."""

import dataclasses

from uniflow_jax.weights.torch_import import NameMap

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
        (r"\.self_attn\.in_proj\.weight$", ".self_attn.in_proj_weight"),
        (r"\.ffn_([12])\.", r".ffn.ffn_\1."),
        (r"^final_norm\.", "layers.layer_norm."),
        (r"^pos_float_tensor$", "pos_encoding._float_tensor"),
    ),
    stacked=("layers",),
)

# StableVAE: the module tree mirrors the original's nesting one to one.
VAE = NameMap()


def with_prefix(names: NameMap, prefix: str) -> NameMap:
    """The same table for a module nested under ``prefix`` (e.g. ``"backbone."``)."""
    return dataclasses.replace(names, prefix=prefix)
