"""Content encoders, adapter and frozen T5/CLIP: parity with the original and real-size name coverage."""

import math

import pytest
from flax import nnx

from uniflow_jax import parity
from uniflow_jax.models import clip, t5
from uniflow_jax.weights import key_manifest, names, torch_import


@pytest.mark.parametrize("component", ["phoneme_encoder", "midi_encoder", "adapter", "t5_encoder", "clip_vision"])
def test_matches_original_fixture(ref_dir, component):
    outputs = parity.COMPONENTS[component](ref_dir)
    assert outputs
    for name, (ours, original) in outputs.items():
        if (component, name) in parity.INFORMATIONAL:
            assert parity.relative_error(ours, original) < 1e-3, name
        else:
            assert parity.relative_error(ours, original) <= 1e-4, name


@pytest.mark.parametrize(
    "make,table,file,aliases",
    [
        (
            lambda: t5.T5Encoder(t5.T5Config(), rngs=nnx.Rngs(0)),
            names.T5,
            "state_dict_flan_t5_large_encoder.txt",
            {"shared.weight"},
        ),
        (
            lambda: clip.CLIPVisionEncoder(clip.CLIPVisionConfig(), rngs=nnx.Rngs(0)),
            names.CLIP_VISION,
            "state_dict_clip_vit_large_patch14_vision.txt",
            set(),
        ),
    ],
    ids=["flan_t5_large", "clip_vit_large_patch14"],
)
def test_real_size_names_and_shapes_match_the_manifest(ref_dir, make, table, file, aliases):
    ours = torch_import.original_shapes(nnx.state(nnx.eval_shape(make)), table)
    expected = {k: v for k, v in key_manifest.read_manifest(ref_dir / file).items() if k not in aliases}
    assert ours == expected
    assert sum(math.prod(s) for s in ours.values()) == key_manifest.count_elements(expected)
