"""Original (PyTorch) parameter names of each of our modules, as ``NameMap`` tables."""

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

# StableVAE: the module tree mirrors the original's nesting one to one.
VAE = NameMap()


def with_prefix(names: NameMap, prefix: str) -> NameMap:
    """The same table for a module nested under ``prefix`` (e.g. ``"backbone."``)."""
    return NameMap(renames=names.renames, stacked=names.stacked, prefix=prefix)
