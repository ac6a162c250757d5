"""The complete model: parity, sizes, content paths per task, durations, length rules, CFG, sharding."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from uniflow_jax import config_lib, nnx_utils, parallel, parity, tasks
from uniflow_jax.data import collate
from uniflow_jax.models import adapter, uniflow
from uniflow_jax.weights import key_manifest, names, torch_import

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = config_lib.uniflow_config(config_lib.load_config_file(str(REPO / "configs/tiny.py")))
HOP = TINY.vae.hop_length


def test_matches_original_fixture_both_fusion_variants(ref_dir):
    outputs = parity.check_flow_model(ref_dir)
    assert any(k.startswith("dummy/") for k in outputs) and any(k.startswith("hybrid/") for k in outputs)
    assert len(outputs) > 200
    bad = {k: parity.relative_error(*v) for k, v in outputs.items() if parity.relative_error(*v) > 1e-4}
    assert not bad
    # The variants really differ where the original's do.
    a = outputs["dummy/train_mixed/out_backbone_in_context"][0]
    b = outputs["hybrid/train_mixed/out_backbone_in_context"][0]
    assert a.shape != b.shape or np.abs(a - b).max() > 1e-3


@pytest.mark.parametrize("size", ["small", "base", "large"])
def test_trainable_parameters_equal_the_manifest(ref_dir, size):
    cfg = config_lib.uniflow_config(config_lib.base_config(size))
    state = nnx.state(nnx.eval_shape(lambda: uniflow.UniFlow(cfg, rngs=nnx.Rngs(0))))
    shapes = key_manifest.read_manifest(ref_dir / f"state_dict_flow_matching_{size}.txt")
    assert torch_import.original_shapes(state, names.UNIFLOW) == shapes  # every name, every shape
    buffers = {k: v for k, v in shapes.items() if k.endswith(("inv_freq", "_float_tensor")) or k == "dummy_param"}
    assert nnx_utils.count_parameters(state, nnx.Param) == key_manifest.count_elements(
        shapes
    ) - key_manifest.count_elements(buffers)
    expected = {"small": 394_505_986, "base": 846_547_202, "large": 1_435_917_186}[size]
    assert nnx_utils.count_parameters(state, nnx.Param) == expected


def test_expand_units_by_hand():
    content = jnp.arange(2 * 3 * 1, dtype=jnp.float32).reshape(2, 3, 1) + 1  # units 1,2,3 and 4,5,6
    counts = jnp.array([[2, 0, 3], [1, 1, 0]])
    out = uniflow.expand_units(content, counts, 6)[..., 0]
    np.testing.assert_array_equal(out, [[1, 1, 3, 3, 3, 0], [4, 5, 0, 0, 0, 0]])
    np.testing.assert_array_equal(uniflow.expand_units(content, counts, 3)[..., 0], [[1, 1, 3], [4, 5, 0]])


def test_duration_counts_round_half_to_even():
    # 0.03 s -> 1.5 -> 2, 0.05 s -> 2.5 -> 2, 0.07 s -> 3.5 -> 4 (the original's torch.round).
    np.testing.assert_array_equal(adapter.unit_counts(jnp.array([0.03, 0.05, 0.07, 0.02, 0.0]), 50.0), [2, 2, 4, 1, 0])


def _sample(task: str, rng: np.random.Generator, *, waveform_frames: int | None = None) -> dict:
    t = tasks.get(task)
    s = {"task": t.id, "instruction": rng.standard_normal((int(rng.integers(2, 6)), TINY.t5.d_model))}
    n = int(rng.integers(3, 7))
    if t.content == "phoneme":
        s.update(phoneme=rng.integers(1, 92, n), xvector=rng.standard_normal(256), duration=np.full(n, 0.04))
    elif t.content == "score":
        s.update(
            score_phoneme=rng.integers(1, 61, n), midi=rng.integers(0, 100, n), midi_duration=rng.uniform(0.1, 0.5, n),
            is_slur=rng.integers(0, 2, n), singer=3, duration=np.full(n, 0.06),
        )  # fmt: skip
    elif t.content == "audio":
        s["audio"] = rng.uniform(-0.3, 0.3, n * HOP)
    elif t.content == "video":
        s["video"] = rng.standard_normal((n, TINY.video_dim))
    else:
        s["text_ids"] = np.append(rng.integers(3, 100, n), 1)
    if waveform_frames:
        s["waveform"] = rng.uniform(-0.3, 0.3, waveform_frames * HOP)
    return s


def _batch(task_names, seed=0):
    rng = np.random.default_rng(seed)
    samples = [_sample(t, rng, waveform_frames=int(rng.integers(8, 12))) for t in task_names]
    return collate.collate(samples, hop=HOP, speaker_dim=256, video_dim=TINY.video_dim)


@pytest.fixture(scope="module")
def tiny_model():
    mesh = parallel.make_mesh((1, 1, 1), jax.devices()[:1])
    model = nnx_utils.create_sharded(lambda: uniflow.UniFlow(TINY, rngs=nnx.Rngs(0)), mesh)
    frozen = nnx_utils.create_sharded(lambda: uniflow.FrozenEncoders(TINY, rngs=nnx.Rngs(1)), mesh)
    # Non-zero dummies and cross-attention outputs so that every path shows in the outputs.
    rng = np.random.default_rng(0)
    state = jax.tree.map(lambda p: p + 0.02 * rng.standard_normal(p.shape, np.float32), model[1])
    return model[0], state, frozen[0], frozen[1]


ALL_TASKS = ["tts", "svs", "se", "sr", "v2a", "t2a", "t2m"]


def test_each_task_content_path_shapes_and_masks(tiny_model):
    graphdef, state, frozen_def, frozen_state = tiny_model
    batch = _batch(ALL_TASKS)
    eps = np.zeros((7, batch["audio"].shape[1] // HOP, 128), np.float32)

    @jax.jit
    def encode(s, f, b, e):
        return nnx.merge(graphdef, s).encode_content(nnx.merge(frozen_def, f), b, e)

    content, mask = encode(state, frozen_state, batch, eps)
    expected_lengths = [
        batch["phoneme_mask"][0].sum(), batch["score_mask"][1].sum(), batch["audio_lengths"][2] // HOP,
        batch["audio_lengths"][3] // HOP, batch["video_mask"][4].sum(), batch["text_mask"][5].sum(),
        batch["text_mask"][6].sum(),
    ]  # fmt: skip
    np.testing.assert_array_equal(np.asarray(mask).sum(1), expected_lengths)
    assert content.shape == (7, mask.shape[1], TINY.content_dim)
    assert np.all(np.asarray(content)[~np.asarray(mask)] == 0)  # zero-padded, as the per-sample original
    assert np.all(np.abs(np.asarray(content)[np.asarray(mask)]).sum(-1) > 0)


def test_mixed_task_batch_loss_and_its_parts(tiny_model):
    graphdef, state, frozen_def, frozen_state = tiny_model
    batch = _batch(ALL_TASKS)

    @jax.jit
    def loss(s, f, b, key):
        model = nnx.merge(graphdef, s)
        return model.loss(nnx.merge(frozen_def, f), b, model.draws(key, b))

    out = loss(state, frozen_state, batch, jax.random.key(0))
    assert np.isfinite(out.total)
    np.testing.assert_allclose(out.total, out.diffusion + out.local_duration + out.global_duration, rtol=1e-6)
    local = np.asarray(out.per_sample["local_duration"])
    assert np.all(local[:5] > 0) and np.all(local[5:] == 0)  # TA tasks only
    np.testing.assert_allclose(out.local_duration, local[:5].mean(), rtol=1e-6)
    np.testing.assert_allclose(out.diffusion, np.mean(out.per_sample["diffusion"]), rtol=1e-6)


def test_cfg_dropout_and_timestep_statistics(tiny_model):
    graphdef, state, _, _ = tiny_model
    model = nnx.merge(graphdef, state)
    batch = {"waveform": np.zeros((20000, HOP)), "audio": np.zeros((20000, HOP))}
    train = model.draws(jax.random.key(1), batch)
    assert abs(float(np.mean(train.cfg_drop)) - 0.2) < 0.01
    assert 0.45 < float(np.median(train.u)) < 0.55 and float(np.std(train.u)) < 0.25  # logit-normal
    val = model.draws(jax.random.key(1), batch, train=False)
    assert not np.any(val.cfg_drop) and np.all(val.u == 0.5)


def test_cfg_drop_zeroes_both_streams_and_keeps_masks(tiny_model):
    graphdef, state, _, _ = tiny_model
    model = nnx.merge(graphdef, state)
    content, mask = jnp.ones((2, 3, TINY.content_dim)), jnp.array([[1, 1, 0], [1, 0, 0]], bool)
    ta_stream = jnp.ones((2, 5, TINY.content_dim))
    ta, ctx, ctx_mask = model.fuse(content, mask, ta_stream, jnp.array([True, False]), jnp.array([True, False]))
    assert not np.any(ta[0]) and not np.any(ctx[0])
    np.testing.assert_array_equal(ctx_mask[0], [True, False, False])  # dummy context: first position only
    np.testing.assert_allclose(ta[1], np.broadcast_to(model.dummy_ta_embed[...], (5, TINY.content_dim)))
    np.testing.assert_array_equal(ctx_mask[1], mask[1])


@pytest.mark.parametrize("fusion", ["dummy", "hybrid"])
def test_the_expanded_content_of_a_non_time_aligned_row_reaches_no_output(tiny_model, fusion):
    """Why parity reports ``out_expanded_content``'s NTA rows apart: whatever they hold, the backbone's inputs are
    the same (the dummy stream replaces them), so the latents and waveforms cannot depend on them."""
    import dataclasses

    graphdef, state, _, _ = tiny_model
    model = nnx.merge(graphdef, state)
    model.cfg = dataclasses.replace(model.cfg, fusion=fusion)
    rng = np.random.default_rng(1)
    content = jnp.asarray(rng.standard_normal((2, 4, TINY.content_dim)), jnp.float32)
    mask, is_ta, keep = jnp.ones((2, 4), bool), jnp.array([True, False]), jnp.array([False, False])
    ta_stream = jnp.asarray(rng.standard_normal((2, 6, TINY.content_dim)), jnp.float32)
    other = ta_stream.at[1].set(jnp.asarray(rng.standard_normal((6, TINY.content_dim)), jnp.float32) * 100)
    for ours, theirs in zip(model.fuse(content, mask, ta_stream, is_ta, keep),
                            model.fuse(content, mask, other, is_ta, keep), strict=True):  # fmt: skip
        np.testing.assert_array_equal(ours, theirs)
    assert ("flow_model", parity.NTA_EXPANDED) in parity.INFORMATIONAL


@pytest.mark.parametrize(
    "task,local,global_,expected",
    [
        # TA: Σ round(((⌈exp(l)⌉ − 1)·5 ms)·50) over valid units: exp = 3.5 → 3 frames of 5 ms → 0.015 s → 1 latent
        ("tts", [np.log(3.5), np.log(9.0), 5.0], 0.0, 1 + 2),
        ("se", [np.log(5.0)] * 3, 0.0, 2),  # 4 × 5 ms = 0.02 s = 1 latent per valid unit
        # NTA: round((exp(g) − 1)·50): 0.451452 s → 22.57 → 23
        ("t2a", [9.0, 9.0, 9.0], np.log(1.451452), 23),
    ],
)
def test_length_rules_per_task(task, local, global_, expected):
    mask = jnp.array([[True, True, False]])
    out = adapter.inference_lengths(
        jnp.array([local], jnp.float32),
        jnp.array([global_], jnp.float32),
        mask,
        jnp.array([tasks.get(task).time_aligned]),
        50.0,  # latent frames per second of the released VAE
    )
    assert int(out["lengths"][0]) == expected


@pytest.mark.parametrize("mesh_shape", [(8, 1, 1), (2, 4, 1), (2, 2, 2)])
def test_sharded_loss_equals_single_device(tiny_model, mesh_shape):
    graphdef, state, frozen_def, frozen_state = tiny_model
    batch = _batch([*ALL_TASKS, "tts"], seed=3)

    def loss(s, f, b):
        model = nnx.merge(graphdef, s)
        return model.loss(nnx.merge(frozen_def, f), b, model.draws(jax.random.key(5), b)).total

    reference = jax.jit(loss)(state, frozen_state, batch)
    mesh = parallel.make_mesh(mesh_shape)
    with jax.set_mesh(mesh), parallel.axis_rules(parallel.DEFAULT_RULES):
        sharded = (parallel.shard_state(state, mesh), parallel.shard_state(frozen_state, mesh))
        inputs = {k: jax.device_put(v, parallel.batch_sharding(mesh, np.ndim(v))) for k, v in batch.items()}
        out = jax.jit(loss)(*sharded, inputs)
    np.testing.assert_allclose(out, reference, rtol=1e-5)


def test_per_task_means():
    per_sample = {"diffusion": jnp.array([1.0, 3.0, 5.0])}
    task = jnp.array([tasks.index("tts"), tasks.index("tts"), tasks.index("t2a")])
    out = uniflow.per_task_means(per_sample, task)
    assert float(out["diffusion/text_to_speech"]) == 2.0 and float(out["diffusion/text_to_audio"]) == 5.0
    assert np.isnan(out["diffusion/video_to_audio"])


def test_given_durations_override_predicted_lengths(tiny_model):
    graphdef, state, frozen_def, frozen_state = tiny_model
    batch = _batch(["tts", "svs", "t2a"])
    eps = np.zeros((3, batch["audio"].shape[1] // HOP, 128), np.float32)

    @jax.jit
    def predict(s, f, b, e):
        return nnx.merge(graphdef, s).predict_lengths(nnx.merge(frozen_def, f), b, e, use_given_durations=True)

    out = predict(state, frozen_state, batch, eps)
    expected = [round(batch["duration"][i][batch["duration_mask"][i]].sum() * 50) for i in range(2)]
    np.testing.assert_array_equal(np.asarray(out["lengths"])[:2], expected)  # TTS 0.04 s, SVS 0.06 s per unit
