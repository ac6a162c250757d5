"""Conversion of released checkpoints: the safe .pt reader, config.yaml mapping, strict name/shape checks,
the real-size manifests, the fixtures through the same path, and the converted folder's contents."""

import dataclasses
import json
import pathlib
import pickle
import shutil
import subprocess
import sys
import zipfile

import jax
import numpy as np
import pytest
import soundfile as sf
from absl import flags
from flax import nnx

from uniflow_jax import config_lib, sample
from uniflow_jax.models import t5, uniflow
from uniflow_jax.weights import converted as converted_folder
from uniflow_jax.weights import hf, key_manifest, names, release, synthetic, torch_import, torch_pickle, upstream_config

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_release(tmp_path_factory):
    config = config_lib.load_config_file(str(REPO / "configs/tiny.py"))
    root = tmp_path_factory.mktemp("tiny_release")
    return (config, *synthetic.build(root, config, seed=3))


def test_torch_zip_round_trip_keeps_values_dtypes_and_nesting(tmp_path):
    state = {"a.weight": np.arange(12, dtype=np.float32).reshape(3, 4), "steps": np.array([7, 8], np.int64)}
    synthetic.write_torch_zip({"state_dict": state, "epoch": 3, "lr": 0.5, "name": "x"}, tmp_path / "c.pt")
    loaded = torch_pickle.load(tmp_path / "c.pt")
    assert loaded["epoch"] == 3 and loaded["lr"] == 0.5 and loaded["name"] == "x"
    for key, value in state.items():
        assert loaded["state_dict"][key].dtype == value.dtype
        np.testing.assert_array_equal(loaded["state_dict"][key], value)
    assert set(torch_pickle.state_dict(loaded)) == set(state)


def test_reader_never_runs_pickled_code(tmp_path):
    # A pickle that would call os.system("touch PWNED") under pickle.load.
    marker = tmp_path / "PWNED"
    payload = (
        pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + pickle.MARK
        + pickle.BINUNICODE + len(b"evil").to_bytes(4, "little") + b"evil"
        + pickle.GLOBAL + b"os\nsystem\n" + pickle.MARK
        + pickle.BINUNICODE + len(f"touch {marker}".encode()).to_bytes(4, "little") + f"touch {marker}".encode()
        + pickle.TUPLE + pickle.REDUCE + pickle.SETITEMS + pickle.STOP
    )  # fmt: skip
    with zipfile.ZipFile(tmp_path / "evil.pt", "w") as archive:
        archive.writestr("evil/data.pkl", payload)
    loaded = torch_pickle.load(tmp_path / "evil.pt")
    assert isinstance(loaded["evil"], torch_pickle.Opaque) and loaded["evil"].qualified_name == "os.system"
    assert not marker.exists()


def test_legacy_or_foreign_files_are_refused_clearly(tmp_path):
    (tmp_path / "old.pt").write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(ValueError, match="legacy"):
        torch_pickle.load(tmp_path / "old.pt")


@pytest.mark.parametrize("size, fusion", [("small", "dummy"), ("base", "dummy"), ("large", "hybrid")])
def test_release_configs_map_to_models_whose_names_and_shapes_equal_the_manifests(ref_dir, size, fusion):
    release_config = release.read_config_yaml(ref_dir / f"release/config_{size}.yaml")
    t5_hf, clip_hf = synthetic.hf_configs(config_lib.base_config(size))
    config = release.our_config(release_config, t5_hf, clip_hf)
    assert config.model.fusion == fusion
    assert dict(config.model.dit.to_dict(), dtype="auto") == dict(config_lib.base_config(size).model.dit.to_dict())
    cfg = config_lib.uniflow_config(config)
    state = nnx.state(nnx.eval_shape(lambda: uniflow.UniFlow(cfg, rngs=nnx.Rngs(0))))
    expected = key_manifest.read_manifest(ref_dir / f"state_dict_flow_matching_{size}.txt")
    assert torch_import.original_shapes(state, names.UNIFLOW) == expected  # every key maps to exactly one of ours
    shapes = synthetic.model_shapes(config)
    assert shapes["vae"] == key_manifest.read_manifest(ref_dir / "state_dict_stable_vae.txt")
    t5_expected = key_manifest.read_manifest(ref_dir / "state_dict_flan_t5_large_encoder.txt")
    assert shapes["t5"] == {k: v for k, v in t5_expected.items() if k != "shared.weight"}  # tied: one parameter
    assert shapes["clip"] == key_manifest.read_manifest(ref_dir / "state_dict_clip_vit_large_patch14_vision.txt")


def test_unsupported_variants_are_refused_by_name(ref_dir):
    release_config = release.read_config_yaml(ref_dir / "release/config_small.yaml")
    release_config["model"]["backbone"]["rope_mode"] = "none"
    with pytest.raises(upstream_config.UnsupportedUpstreamConfig, match="rope_mode"):
        release.our_config(release_config, *synthetic.hf_configs(config_lib.base_config("small")))
    release_config = release.read_config_yaml(ref_dir / "release/config_small.yaml")
    release_config["model"]["_target_"] = "models.flow_matching.CrossAttentionAudioFlowMatching"
    with pytest.raises(upstream_config.UnsupportedUpstreamConfig, match="CrossAttentionAudioFlowMatching"):
        release.our_config(release_config, *synthetic.hf_configs(config_lib.base_config("small")))


@pytest.fixture(scope="module")
def converted(tiny_release, tmp_path_factory):
    _, release_dir, t5_dir, clip_dir = tiny_release
    out = tmp_path_factory.mktemp("converted")
    command = ["--release", release_dir, "--t5", t5_dir, "--clip", clip_dir, "--out", out]
    subprocess.run([sys.executable, "-m", "uniflow_jax.convert", *map(str, command)], check=True, cwd=REPO)
    return out, json.loads((out / "conversion.json").read_text())


def test_tiny_release_converts_and_every_tensor_lands_in_its_parameter(tiny_release, converted):
    config, release_dir, _, _ = tiny_release
    out, report = converted
    for name in ("config.json", "spiece.model", release.INSTRUCTIONS_FILE, *release.RESOURCE_FILES):
        assert (out / name).exists(), name
    assert report["parameters"]["model"] > 0 and report["peak_memory_gib"] > 0
    assert json.loads((out / "conversion.json").read_text())["fusion"] == "dummy"
    converted = json.loads((out / "config.json").read_text())
    assert converted["model"]["dit"] == config.model.dit.to_dict()

    cfg = config_lib.uniflow_config(config)
    abstract = nnx.state(nnx.eval_shape(lambda: uniflow.UniFlow(cfg, rngs=nnx.Rngs(0))), nnx.Param)
    restored = converted_folder.restore(out, "model", nnx.to_pure_dict(abstract))
    nnx.replace_by_pure_dict(abstract, restored)
    exported = torch_import.export_state(abstract, names.UNIFLOW)
    original = torch_import.read_safetensors(str(release_dir / "model.safetensors"))
    for key, value in exported.items():
        np.testing.assert_array_equal(value.reshape(original[key].shape), original[key], err_msg=key)
    vae_original = release.vae_state_dict(release_dir / "vae/1m.pt")
    frozen_abstract = nnx.state(nnx.eval_shape(lambda: uniflow.FrozenEncoders(cfg, rngs=nnx.Rngs(0))))
    nnx.replace_by_pure_dict(
        frozen_abstract, converted_folder.restore(out, "frozen", nnx.to_pure_dict(frozen_abstract))
    )
    vae_exported = torch_import.export_state(frozen_abstract["vae"], names.VAE)
    assert set(vae_exported) == set(vae_original)  # the wrapper's discriminator was dropped
    for key, value in vae_exported.items():
        np.testing.assert_array_equal(value.reshape(vae_original[key].shape), vae_original[key], err_msg=key)


def test_missing_unexpected_and_misshaped_keys_are_all_listed(tiny_release, tmp_path):
    config, _, t5_dir, clip_dir = tiny_release
    broken = tmp_path / "broken"
    synthetic.build(broken, config, seed=3)
    tensors = torch_import.read_safetensors(str(broken / "release/model.safetensors"))
    del tensors["dummy_ta_embed"]
    tensors["backbone.extra.weight"] = np.zeros(3, np.float32)
    tensors["content_encoder.video_encoder.mlp.bias"] = np.zeros(5, np.float32)
    from safetensors.numpy import save_file

    save_file(tensors, str(broken / "release/model.safetensors"))
    with pytest.raises(torch_import.WeightLoadError) as error:
        release.convert(broken / "release", t5_dir, clip_dir)
    message = str(error.value)
    assert "missing: dummy_ta_embed" in message and "unexpected: backbone.extra.weight" in message
    assert "shape mismatch: content_encoder.video_encoder.mlp.bias" in message and "3 problem(s)" in message


def test_fixture_weights_pass_through_the_conversion_path(ref_dir, tmp_path):
    """The recorded upstream flow model, repackaged in the released layout, converts to exactly the weights
    the parity tests load (and which reproduce the original's outputs there)."""
    fixture = json.loads((ref_dir / "flow_model_config.json").read_text())["model"]
    typed = upstream_config.uniflow_config(fixture)
    tensors = torch_import.read_safetensors(str(ref_dir / "flow_model.safetensors"))
    config = config_lib.load_config_file(str(REPO / "configs/tiny.py"))
    m = config.model
    m.content_dim, m.video_dim = typed.content_dim, typed.video_dim
    m.dit.update(embed_dim=typed.dit.embed_dim, depth=typed.dit.depth, num_heads=typed.dit.num_heads,
                 context_dim=typed.content_dim, ta_context_dim=typed.content_dim)  # fmt: skip
    m.vae.update(channels=typed.vae.channels, latent_dim=typed.vae.latent_dim)
    for ours, part in ((m.phoneme, typed.phoneme), (m.score, typed.score)):
        ours.update({k: getattr(part, k) for k in ours})
    m.adapter.update({k: getattr(typed.adapter, k) for k in m.adapter})
    m.t5.update({k: getattr(typed.t5, k) for k in m.t5})
    clip_hf = json.loads((ref_dir / "clip_vision_config.json").read_text())["model"]
    m.clip = config_lib.base_config().model.clip
    m.clip.update(dataclasses.asdict(upstream_config.clip_vision_config(clip_hf)))

    frozen_prefixes = ("autoencoder.", names.VAE_ALIAS_PREFIX, names.T5_IN_MODEL.prefix)
    model_tensors = {k: v for k, v in tensors.items() if not k.startswith(frozen_prefixes)}
    vae_tensors = {k[len("autoencoder.") :]: v for k, v in tensors.items() if k.startswith("autoencoder.")}
    t5_prefix = names.T5_IN_MODEL.prefix
    t5_tensors = {k[len(t5_prefix) :]: v for k, v in tensors.items() if k.startswith(t5_prefix)}
    t5_hf, _ = synthetic.hf_configs(config)
    release_dir = synthetic.write_release(tmp_path / "release", synthetic.release_yaml(config), model_tensors,
                                          vae_tensors, typed.t5.d_model)  # fmt: skip
    synthetic.write_hf_folder(tmp_path / "t5", t5_hf, t5_tensors)
    synthetic.write_hf_folder(
        tmp_path / "clip", clip_hf, torch_import.read_safetensors(str(ref_dir / "clip_vision.safetensors"))
    )
    converted = release.convert(release_dir, tmp_path / "t5", tmp_path / "clip")

    _, reference = torch_import.load_module(
        lambda: uniflow.UniFlow(typed, rngs=nnx.Rngs(0)), tensors, names.UNIFLOW, strict=False
    )
    ours, theirs = (
        nnx.to_flat_state(converted.model),
        dict(nnx.to_flat_state(nnx.split_state(reference, nnx.Param, ...)[0])),
    )
    assert len(ours) == len(theirs)
    for path, var in ours:
        np.testing.assert_array_equal(
            np.asarray(var.get_value()), np.asarray(theirs[path].get_value()), err_msg=str(path)
        )
    _, frozen_reference = torch_import.load_module(
        lambda: uniflow.FrozenEncoders(typed, rngs=nnx.Rngs(0)), tensors, names.FROZEN, strict=False
    )
    theirs = dict(nnx.to_flat_state(frozen_reference))
    for path, var in nnx.to_flat_state(converted.frozen):
        np.testing.assert_array_equal(
            np.asarray(var.get_value()), np.asarray(theirs[path].get_value()), err_msg=str(path)
        )


def test_buffer_values_are_checked(tiny_release):
    config = tiny_release[0]
    cfg = config_lib.uniflow_config(config)
    make = lambda: uniflow.UniFlow(cfg, rngs=nnx.Rngs(0))  # noqa: E731
    buffers = nnx.split_state(nnx.state(make()), nnx.Param, ...)[1]
    assert release.buffer_mismatches(buffers, buffers) == []
    changed = jax.tree.map(lambda x: x + 1.0 if x.dtype == np.float32 and x.size else x, buffers)
    assert release.buffer_mismatches(changed, buffers)


def _sample_command(*args) -> None:
    """``python -m uniflow_jax.sample ARGS``, in this process (the flags parsed as the command line would).
    A ``--compilation_cache`` it was given is the run's shared cache again afterwards (tests/conftest.py)."""
    argv = flags.FLAGS(["sample", *map(str, args)])
    cache = jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs
    try:
        sample.main(argv)
    finally:
        flags.FLAGS.unparse_flags()
        if jax.config.jax_compilation_cache_dir != cache[0]:
            sample.use_compilation_cache(*cache)


def test_the_readme_command_of_every_task_runs_on_a_converted_checkpoint(converted, tmp_path, capsys, write_video):
    """The README's one command per task against a converted tiny release: weights, frozen VAE/T5, CLIP,
    instructions, tokenizer and pinyin table all from the folder; 24 kHz mono of the right length."""
    out, _ = converted
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "noisy.wav", rng.uniform(-0.3, 0.3, 16000).astype(np.float32), 16000)  # 1 s at 16 kHz
    sf.write(tmp_path / "low.flac", rng.uniform(-0.3, 0.3, (6000, 2)).astype(np.float32), 8000)  # 0.75 s stereo
    write_video(tmp_path / "clip.mp4")
    commands = {
        "t2a": ["--caption", "a dog barks twice", "--duration", "0.5"],
        "t2m": ["--caption", "a calm piano melody", "--instruction_idx", "2"],
        "tts": ["--transcript", "Hello, this is a test."],
        "svs": ["--singer", "Alto-2", "--music_score", "AP你好<sep>rest | C4 | D4 E4<sep>0.2 | 0.4 | 0.3 0.3"],
        "se": ["--noisy_speech", tmp_path / "noisy.wav"],
        "sr": ["--low_sr_audio", tmp_path / "low.flac"],
        "v2a": ["--video", tmp_path / "clip.mp4"],
    }
    for task, inputs in commands.items():
        output = tmp_path / f"{task}.wav"
        _sample_command(task, "--checkpoint", out, *inputs, "--num_steps", 2, "--output", output,
                        "--compilation_cache", tmp_path / "xla")  # fmt: skip
        info = sf.info(str(output))
        assert info.samplerate == 24000 and info.channels == 1 and info.frames > 0, task
        expected = {"t2a": 12000, "se": 24000, "sr": 18000}.get(task)
        assert expected is None or info.frames == expected, (task, info.frames)
    stdout = capsys.readouterr().out
    assert stdout.count("converted release") == len(commands) and "real-time factor" in stdout
    assert (tmp_path / "v2a.mp4").exists()  # the video with the generated sound
    assert any((tmp_path / "xla").iterdir())  # compiled programs kept for the next run
    # The README's --batch command on the same folder (a BOM, mixed tasks, a line with its own seed).
    lines = [{"id": "a1", "task": "t2a", "caption": "a dog barks twice", "duration": 0.5},
             {"id": "e1", "task": "se", "noisy_speech": "noisy.wav", "seed": 3},
             {"id": "s1", "task": "tts", "transcript": "Hello there."}]  # fmt: skip
    (tmp_path / "requests.jsonl").write_text("\ufeff" + "\n".join(json.dumps(line) for line in lines), "utf-8")
    _sample_command("--checkpoint", out, "--batch", tmp_path / "requests.jsonl", "--out_dir", tmp_path / "out",
                    "--num_steps", 2)  # fmt: skip
    assert sf.info(str(tmp_path / "out/se/e1.wav")).frames == 24000 and (tmp_path / "out/tts/s1.wav").exists()
    assert "compiled" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- published layouts


def _republish(source: pathlib.Path, target: pathlib.Path, layout: str) -> pathlib.Path:
    """``source``'s T5 folder re-saved as the world publishes it: ``tied`` (current transformers' save_pretrained:
    the input embedding once, as ``shared.weight``), ``sharded`` (two safetensors shards + index.json, tied too),
    ``bin`` (``pytorch_model.bin`` only, a torch.save zip)."""
    from safetensors.numpy import save_file

    target.mkdir()
    shutil.copyfile(source / "config.json", target / "config.json")
    tensors = torch_import.read_safetensors(str(source / "model.safetensors"))
    embedding = tensors.pop("encoder.embed_tokens.weight", None)
    tensors["shared.weight"] = tensors.get("shared.weight", embedding)
    names_sorted = sorted(tensors)
    if layout == "tied":
        save_file(tensors, str(target / "model.safetensors"))
    elif layout == "sharded":
        halves = {
            "model-00001-of-00002.safetensors": names_sorted[::2],
            "model-00002-of-00002.safetensors": names_sorted[1::2],
        }
        for file, keys in halves.items():
            save_file({k: tensors[k] for k in keys}, str(target / file))
        weight_map = {k: file for file, keys in halves.items() for k in keys}
        index = {"metadata": {"total_size": sum(v.nbytes for v in tensors.values())}, "weight_map": weight_map}
        (target / "model.safetensors.index.json").write_text(json.dumps(index))
    else:
        synthetic.write_torch_zip(tensors, target / "pytorch_model.bin")
    return target


@pytest.mark.parametrize("layout", ["tied", "sharded", "bin"])
def test_t5_folders_convert_in_every_published_layout(tiny_release, tmp_path, layout):
    config, _, t5_dir, _ = tiny_release
    folder = _republish(t5_dir, tmp_path / layout, layout)
    assert "encoder.embed_tokens.weight" not in hf.read_folder(folder)[1]  # only the tied name is stored
    make = lambda: t5.T5Encoder(config_lib.uniflow_config(config).t5, rngs=nnx.Rngs(0))  # noqa: E731
    _, state = torch_import.load_module(make, hf.t5_encoder_tensors(hf.read_folder(folder)[1]), names.T5)
    _, reference = torch_import.load_module(make, hf.t5_encoder_tensors(hf.read_folder(t5_dir)[1]), names.T5)
    for (path, ours), (_, theirs) in zip(nnx.to_flat_state(state), nnx.to_flat_state(reference), strict=True):
        np.testing.assert_array_equal(np.asarray(ours.get_value()), np.asarray(theirs.get_value()), err_msg=str(path))


def test_a_sharded_folder_missing_a_shard_is_named(tiny_release, tmp_path):
    folder = _republish(tiny_release[2], tmp_path / "sharded", "sharded")
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model-00002-of-00002\.safetensors"):
        hf.read_folder(folder)


def test_convert_without_clip_and_refuse_a_clip_of_the_wrong_width(tiny_release, tmp_path):
    """--clip is optional (V2A then needs precomputed features; the folder says so when asked for CLIP), and a
    CLIP whose width is not the model's video feature width is refused at conversion, not at sampling."""
    _, release_dir, t5_dir, clip_dir = tiny_release
    tied = _republish(t5_dir, tmp_path / "t5", "tied")
    out = tmp_path / "no_clip"
    command = ["--release", release_dir, "--t5", tied, "--out", out]
    subprocess.run([sys.executable, "-m", "uniflow_jax.convert", *map(str, command)], check=True, cwd=REPO)
    assert converted_folder.has_item(out, "model") and not converted_folder.has_item(out, "clip")
    with pytest.raises(FileNotFoundError, match="--clip"):
        converted_folder.restore(out, "clip", {})
    wide = tmp_path / "wide_clip"
    shutil.copytree(clip_dir, wide)
    hf_config = json.loads((wide / "config.json").read_text())
    (wide / "config.json").write_text(json.dumps({**hf_config, "hidden_size": 2 * hf_config["hidden_size"]}))
    with pytest.raises(upstream_config.UnsupportedUpstreamConfig, match="video features"):
        release.convert(release_dir, t5_dir, wide)


def test_the_readme_python_api_example_runs_on_a_converted_checkpoint(converted, tmp_path, write_video):
    """The README's notebook example: one request per task, arrays and sample rates back, in order; a bad request
    is refused with every problem listed before anything is generated."""
    from uniflow_jax.inference import InvalidRequests, UniFlowAudio

    out, _ = converted
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "noisy.wav", rng.uniform(-0.3, 0.3, 16000).astype(np.float32), 16000)
    write_video(tmp_path / "clip.mp4")
    pipe = UniFlowAudio.from_converted(out)
    requests = [
        {"task": "t2a", "caption": "a dog barks twice", "duration": 0.5},
        {"task": "t2m", "caption": "a calm piano melody"},
        {"task": "tts", "transcript": "Hello, this is a test."},
        {"task": "svs", "music_score": "AP你好<sep>rest | C4 | D4 E4<sep>0.2 | 0.4 | 0.3 0.3", "singer": "Alto-2"},
        {"task": "se", "noisy_speech": str(tmp_path / "noisy.wav"), "seed": 7},
        {"task": "sr", "low_sr_audio": str(tmp_path / "noisy.wav")},
        {"task": "v2a", "video": str(tmp_path / "clip.mp4")},
    ]
    audios = pipe.generate(requests, seed=0, num_steps=2)
    assert [a.task for a in audios] == ["t2a", "t2m", "tts", "svs", "se", "sr", "v2a"]
    assert all(a.sample_rate == 24000 and a.wave.ndim == 1 and np.isfinite(a.wave).all() for a in audios)
    assert len(audios[0].wave) == 12000 and len(audios[4].wave) == len(audios[5].wave) == 24000
    assert len(audios[6].wave) == 12 * 5 * 480  # 1.2 s of video at 10 fps: the whole video
    assert audios[4].seed == 7 and audios[0].seed == 0
    (alone,) = pipe.generate([requests[4]], num_steps=2)  # a request's audio does not depend on the others
    np.testing.assert_allclose(alone.wave, audios[4].wave, atol=1e-5)
    with pytest.raises(InvalidRequests) as refused:
        pipe.generate([requests[0], {"task": "se", "noisy_speech": "missing.wav"}, {"task": "t2a", "caption": " "}])
    assert [p.split(":")[0] for p in refused.value.problems] == ["request 1", "request 2"]
