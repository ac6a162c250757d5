"""``python -m uniflow_jax.sample``: every task from the original CLI's kinds of input (tiny random model), and
a tiny trained run (``--workdir``) sampled one request at a time and from a jsonl file of many (``--batch``)."""

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf
from absl import flags
from flax import nnx

from uniflow_jax import config_lib, instructions, parallel, sample, tasks
from uniflow_jax.frontends import symbols, text, video
from uniflow_jax.inference import batch as batch_runner
from uniflow_jax.inference import requests as requests_lib
from uniflow_jax.inference.model import LoadedModel, Request
from uniflow_jax.models import uniflow
from uniflow_jax.training import checkpoint, optimizer
from uniflow_jax.training import state as train_state

REPO = pathlib.Path(__file__).resolve().parents[1]
HOP = 480


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, write_video):
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    sf.write(d / "noisy.wav", rng.uniform(-0.3, 0.3, 16000 * 1).astype(np.float32), 16000)  # 1 s at 16 kHz
    sf.write(d / "low.flac", rng.uniform(-0.3, 0.3, (8000, 2)).astype(np.float32), 8000)  # stereo 8 kHz
    np.save(d / "xvector.npy", rng.standard_normal(256).astype(np.float32))
    write_video(d / "clip.mp4")
    (d / "pinyin.txt").write_text("| ni | n i |\n| hao | h ao |\n", encoding="utf-8")  # an M4Singer table's lines
    return d


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    config = config_lib.load_config_file(str(REPO / "configs/tiny.py"))
    return LoadedModel.random(config, seed=0, workdir=tmp_path_factory.mktemp("tok"))


CASES = {
    "t2a": ["--caption", "a dog barks twice", "--duration", "0.5"],
    "t2m": ["--caption", "a slow piano melody", "--instruction", "Compose calm music."],
    "tts": ["--phonemes", "HH AH0 L OW1 W ER1 L D", "--speaker_embedding", "{d}/xvector.npy"],
    "svs": ["--score_phonemes", "n i h ao", "--score_notes", "C4 C4 D4 rest", "--score_durations", "0.3 0.3 0.4 0.2",
            "--score_slurs", "0 0 1 0", "--singer", "Tenor-2"],
    "se": ["--noisy_speech", "{d}/noisy.wav"],
    "sr": ["--low_sr_audio", "{d}/low.flac"],
    "v2a": ["--video", "{d}/clip.mp4"],
}  # fmt: skip


@pytest.mark.parametrize("task", list(CASES))
def test_every_task_produces_audio(model, inputs, task):
    argv = ["sample", task, *[a.format(d=inputs) for a in CASES[task]]]
    flags.FLAGS.unparse_flags()
    flags.FLAGS(argv)
    spec = tasks.get(task)
    request = requests_lib.build_sample(spec, {name: getattr(flags.FLAGS, name) for name in requests_lib.FIELDS}, model)
    (wave,) = model.generate([request], num_steps=3, guidance_scale=spec.guidance_scale)
    request = request.sample
    assert wave.ndim == 1 and len(wave) > 0 and len(wave) % HOP == 0 and np.all(np.isfinite(wave))
    if task == "se":  # 1 s at 16 kHz -> 1 s at 24 kHz, 50 latent frames
        assert len(wave) == 24000
    if task == "sr":
        assert len(request["audio"]) == 24000
    if task == "t2a":
        assert len(wave) == 25 * HOP  # the 0.5 s duration override
    if task == "v2a":  # 1.2 s of video at 10 fps -> 12 frames of CLIP features
        assert request["video"].shape == (12, model.cfg.video_dim)


# The original CLI's word-level inputs: English text, and a music score with its pinyin table.
def test_word_level_inputs_become_the_model_inputs(model, inputs):
    tts = requests_lib.build_sample(tasks.get("tts"), {"transcript": "Hello world."}, model).sample
    assert list(tts["phoneme"]) == list(symbols.tts_phone_ids("<eps> HH AH0 L OW1 W ER1 L D <eps>"))
    fields = {"music_score": "AP你好<sep>rest | C4 | D4 E4<sep>0.2 | 0.4 | 0.3 0.3", "singer": "Alto-2"}
    with pytest.raises(ValueError, match="needs the pinyin table: give --pinyin_table"):
        requests_lib.build_sample(tasks.get("svs"), fields, model)  # neither the flag nor a checkpoint's table
    svs = requests_lib.build_sample(tasks.get("svs"), {**fields, "pinyin_table": str(inputs / "pinyin.txt")}, model)
    assert list(svs.sample["score_phoneme"]) == list(symbols.svs_phone_ids("<AP> n i h ao ao"))
    assert list(svs.sample["midi"]) == [0, 60, 60, 62, 62, 64] and list(svs.sample["is_slur"]) == [0, 0, 0, 0, 0, 1]
    np.testing.assert_allclose(svs.sample["midi_duration"], [0.2, 0.4, 0.4, 0.3, 0.3, 0.3])
    assert svs.sample["singer"] == symbols.singer_id("Alto-2")


def test_se_and_sr_keep_the_exact_length_of_a_44khz_stereo_input(model, tmp_path):
    path = tmp_path / "cd.wav"
    sf.write(path, np.random.default_rng(3).uniform(-0.3, 0.3, (30000, 2)).astype(np.float32), 44100)  # 0.68 s
    sr = requests_lib.build_sample(tasks.get("sr"), {"low_sr_audio": str(path)}, model)
    se = requests_lib.build_sample(tasks.get("se"), {"noisy_speech": str(path)}, model)
    (wave,) = model.generate([se], num_steps=2, guidance_scale=1.0)
    assert len(wave) == sr.samples == 16327  # ceil(30000 · 24000 / 44100): the input's length at 24 kHz


@pytest.mark.parametrize("suffix, codec, copied", [(".mp4", "mpeg4", True), (".webm", "libvpx", False)])
def test_v2a_writes_the_video_with_the_generated_sound(tmp_path, write_video, suffix, codec, copied):
    import av

    clip = tmp_path / f"clip{suffix}"
    write_video(clip, seconds=1.2, codec=codec)
    wave = np.sin(np.arange(3 * 24000) * 0.05).astype(np.float32) * 0.3  # 3 s: longer than the video
    written = batch_runner.write_outputs(tasks.get("v2a"), {"video": str(clip)}, wave, tmp_path / "out.wav", 24000)
    assert written == [tmp_path / "out.wav", tmp_path / "out.mp4"]
    assert sf.info(str(tmp_path / "out.wav")).frames == len(wave)
    assert video.mux_audio(clip, wave, 24000, tmp_path / "again.mp4") is copied  # mp4 cannot hold VP8
    with av.open(str(tmp_path / "out.mp4")) as container:
        picture, sound = container.streams.video[0], container.streams.audio[0]
        assert picture.codec_context.name == ("mpeg4" if copied else "h264")
        assert sum(1 for _ in container.decode(picture)) == 30  # every frame of the 1.2 s at 25 fps
        assert (sound.codec_context.name, sound.rate, sound.channels) == ("aac", 24000, 1)
        assert float(sound.duration * sound.time_base) == pytest.approx(1.2, abs=0.05)  # cut to the video


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="unknown ARPAbet phone: XX"):
        symbols.tts_phone_ids("HH XX")
    with pytest.raises(ValueError, match="not a note name"):
        symbols.note_to_midi("H2")
    assert symbols.note_to_midi("C4") == 60 and symbols.note_to_midi("G#3") == 56
    assert symbols.note_to_midi("rest") == 0


# ---------------------------------------------------------------------------------------------- a trained run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny "trained" run with an EMA, saved as ``python -m uniflow_jax.train`` saves one (no training loop):
    config.json, the latest full state (step 2) and the best params (step 1: the EMA's, as training keeps), with
    params no init gives (best −0.01, latest params +0.01, latest EMA +0.02). It is "trained" on one device
    (orbax saves that fast); the sampler restores it on all eight."""
    root = tmp_path_factory.mktemp("run")
    config = config_lib.load_config_file(str(REPO / "configs/tiny.py"))
    texts = [*instructions.all_texts(), "a dog barks twice", "a slow piano melody"] * 5
    config.train.ema_decay = 0.999
    config.data.tokenizer = str(text.train_tokenizer(texts, root / "spiece", config.model.t5.vocab_size))
    workdir = root / "workdir"
    mesh, rules = parallel.make_mesh((1, 1, 1), jax.devices()[:1]), config_lib.mesh_rules(config)
    cfg = config_lib.uniflow_config(config)
    make = lambda: uniflow.UniFlow(cfg, rngs=nnx.Rngs(config.seed))  # noqa: E731
    tx = optimizer.make(config.optimizer)
    with jax.set_mesh(mesh), parallel.axis_rules(rules):
        shardings = train_state.shardings(train_state.ModelSpec.of(make), tx, mesh, rules, ema=True)
        state = train_state.create(make, tx, config.seed, shardings, ema=True)
    shift = jax.jit(lambda tree, delta: jax.tree.map(lambda p: p + delta, tree))
    best, latest, latest_ema = (shift(state.params, delta) for delta in (-0.01, 0.01, 0.02))
    ckpt = checkpoint.Checkpointer(workdir)
    ckpt.save_best(1, best, 0.5, {"step": 1})
    state = dataclasses.replace(state, step=jnp.asarray(2, jnp.int32), params=latest, ema=latest_ema)
    ckpt.save(2, state, {}, {"step": 2})
    ckpt.wait()
    ckpt.close()
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
    to_numpy = lambda tree: jax.tree.map(np.asarray, tree)  # noqa: E731
    return types.SimpleNamespace(workdir=workdir, best=to_numpy(best), latest_ema=to_numpy(latest_ema))


def _assert_same_params(model, expected):
    """The generator's module holds exactly ``expected`` (every parameter array)."""
    module = nnx.merge(*model.generator.model)
    used = nnx.to_pure_dict(nnx.state(module, nnx.Param))
    pairs = jax.tree.leaves(jax.tree.map(lambda a, b: (a, b), jax.tree.map(np.asarray, used), expected))
    assert len(pairs) > 50
    for a, b in zip(pairs[::2], pairs[1::2], strict=True):
        np.testing.assert_array_equal(a, b)


def test_workdir_loads_the_checkpoint_params(run, tmp_path):
    best = LoadedModel.from_workdir(run.workdir)
    assert best.step == 1 and "best by validation" in best.description
    _assert_same_params(best, run.best)
    # A run whose validation never ran has no best/: "best" falls back to the latest, its EMA params here (the
    # batch test below asks for --checkpoint_kind latest).
    shutil.copytree(run.workdir, tmp_path / "run", ignore=shutil.ignore_patterns("best"))
    latest = LoadedModel.from_workdir(tmp_path / "run")
    assert latest.step == 2 and "latest, EMA" in latest.description
    _assert_same_params(latest, run.latest_ema)


def _run_cli(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-m", "uniflow_jax.sample", *map(str, args)],
                            capture_output=True, text=True, env=env, cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_workdir_batch_of_every_task(run, inputs, tmp_path):
    import av

    rng = np.random.default_rng(2)
    np.save(tmp_path / "spk.npy", rng.standard_normal(256).astype(np.float32))
    np.save(tmp_path / "frames.npy", rng.standard_normal((12, 32)).astype(np.float32))  # as long as clip.mp4
    sf.write(tmp_path / "low.wav", rng.uniform(-0.3, 0.3, 9000).astype(np.float32), 12000)  # 0.75 s
    requests = [
        {"id": "dog", "task": "t2a", "caption": "a dog barks twice", "duration": 0.5},
        {"id": "dog2", "task": "text_to_audio", "caption": "a dog barks", "instruction_idx": 3},
        {"id": "piano", "task": "t2m", "caption": "a slow piano melody", "instruction": "Compose calm music."},
        {"id": "hello", "task": "tts", "phonemes": "HH AH0 L OW1", "speaker_embedding": "spk.npy"},
        {"id": "text", "task": "tts", "transcript": "Hello there, world."},
        {"id": 7, "task": "svs", "score_phonemes": ["n", "i", "h", "ao"], "score_notes": "C4 C4 D4 rest",
         "score_durations": [0.3, 0.3, 0.4, 0.2], "singer": "Tenor-2"},
        {"id": "song", "task": "svs", "music_score": "你好<sep>C4 | D4 E4<sep>0.3 | 0.2 0.2"},
        {"id": "noisy", "task": "se", "noisy_speech": str(inputs / "noisy.wav")},
        {"id": "low", "task": "sr", "low_sr_audio": "low.wav"},
        {"id": "clip", "task": "v2a", "video_features": "frames.npy"},
        {"id": "film", "task": "v2a", "video": str(inputs / "clip.mp4")},
    ]  # fmt: skip
    jsonl = tmp_path / "requests.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in requests) + "\n")
    out = tmp_path / "out"
    stdout = _run_cli("--workdir", run.workdir, "--checkpoint_kind", "latest", "--batch", jsonl, "--out_dir", out,
                      "--batch_size", 2, "--num_steps", 2, "--pinyin_table", inputs / "pinyin.txt")  # fmt: skip
    assert "step 2 (latest, EMA)" in stdout
    lengths = {}
    for r in requests:
        info = sf.info(str(out / tasks.get(r["task"]).short / f"{r['id']}.wav"))
        assert info.samplerate == 24000 and info.channels == 1 and info.frames > 0
        lengths[r["id"]] = info.frames
    assert lengths["dog"] == 12000  # the duration
    assert lengths["noisy"] == 24000 and lengths["low"] == 18000  # SE/SR: exactly the input's length
    assert all(n % HOP == 0 for key, n in lengths.items() if key not in ("dog", "noisy", "low"))  # predicted lengths
    with av.open(str(out / "v2a/film.mp4")) as container:  # the input video, with the generated sound
        assert len(container.streams.video) == len(container.streams.audio) == 1
    counts = {"t2a": 2, "t2m": 1, "tts": 2, "svs": 2, "se": 1, "sr": 1, "v2a": 2}
    for short, count in counts.items():
        assert any(line.split()[:2] == [short, str(count)] for line in stdout.splitlines())


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"id": "a", "task": "t2a", "caption": "x"', "not JSON"),
        ('["t2a"]', "expected a JSON object"),
        ('{"task": "t2a", "caption": "x"}', "no 'id'"),
        ('{"id": "a", "task": "t3a", "caption": "x"}', "unknown task 't3a'"),
        ('{"id": "a", "task": "t2a", "captoin": "x"}', "unknown key\\(s\\) captoin"),
        ('{"id": "a", "task": "t2a"}', "t2a needs caption"),
        ('{"id": "a", "task": "v2a"}', "v2a needs video or video_features"),
        (
            '{"id": "a", "task": "svs", "score_notes": "C4"}',
            "svs needs music_score or score_phonemes \\+ score_notes \\+ score_durations",
        ),
        ('{"id": "a", "task": "tts", "transcript": "hi", "phonemes": "AH0"}', "tts needs transcript or phonemes, not"),
        ('{"id": "a", "task": "tts", "transcript": "hi", "ref_speaker_speech": "r.wav"}', "ref_speaker_speech needs"),
        ('{"id": "a", "task": "svs", "music_score": "ni<sep>C4"}', "a music score is 'lyrics<sep>notes<sep>durat"),
        ('{"id": "a", "task": "t2a", "caption": "x", "duration": "long"}', "duration must be a number"),
        ('{"id": "a", "task": "tts", "phonemes": "AH0", "instruction_idx": 10}', "instruction_idx must be 0..9"),
        ('{"id": "../a", "task": "t2a", "caption": "x"}', "id must be .* usable as a file name"),
        ('{"id": "ok", "task": "t2a", "caption": "x"}', "a second t2a request with id 'ok'"),
    ],
)
def test_a_malformed_request_line_is_named(tmp_path, line, message):
    path = tmp_path / "requests.jsonl"
    path.write_text('{"id": "ok", "task": "t2a", "caption": "fine"}\n\n' + line + "\n")
    with pytest.raises(ValueError, match=f"{path}:3: {message}"):
        requests_lib.read_requests(path)


def test_request_lines_are_normalised(tmp_path):
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "sub/x.npy", np.zeros(256, np.float32))  # read_requests checks the files it names
    path = tmp_path / "requests.jsonl"
    path.write_text('{"id": 5, "task": "svs", "score_phonemes": ["n", "i"], "score_notes": "C4 D4", '
                    '"score_durations": [0.5, 1], "instruction_idx": 2}\n'
                    '{"id": "x", "task": "tts", "phonemes": "AH0", "speaker_embedding": "sub/x.npy"}\n')  # fmt: skip
    svs, tts = requests_lib.read_requests(path)
    assert (svs.id, svs.task.short, svs.where) == ("5", "svs", f"{path}:1")
    assert svs.fields == {"score_phonemes": "n i", "score_notes": "C4 D4", "score_durations": "0.5 1",
                          "instruction_idx": 2}  # fmt: skip
    assert tts.fields["speaker_embedding"] == str(tmp_path / "sub/x.npy")  # relative to the jsonl's folder


def test_request_lines_take_the_shared_flags_unless_they_set_them(tmp_path):
    path = tmp_path / "requests.jsonl"
    lines = [
        {"id": "a", "task": "tts", "transcript": "Hi.", "ref_speaker_speech": "ref.wav"},
        {"id": "b", "task": "svs", "music_score": "ni<sep>C4<sep>1", "pinyin_table": "mine.txt"},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    sf.write(tmp_path / "ref.wav", np.random.default_rng(0).uniform(-0.3, 0.3, 8000).astype(np.float32), 16000)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "spk.onnx").write_bytes(b"an ONNX file")  # only its existence is checked before the model loads
    for table in (tmp_path / "mine.txt", shared / "table.txt"):
        table.write_text("| ni | n i |\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"{path}:1: ref_speaker_speech needs speaker_model"):
        requests_lib.read_requests(path)
    defaults = {"speaker_model": str(shared / "spk.onnx"), "pinyin_table": str(shared / "table.txt")}
    tts, svs = requests_lib.read_requests(path, defaults)
    assert tts.fields == {"transcript": "Hi.", "ref_speaker_speech": str(tmp_path / "ref.wav"), **defaults}
    assert svs.fields["pinyin_table"] == str(tmp_path / "mine.txt")  # the line's own, relative to the jsonl


# ---------------------------------------------------------------------------------------------- exactness


def _mixed_requests(model, directory: pathlib.Path) -> dict[str, list[Request]]:
    """Two requests per task, of different lengths (the second the shorter), each with its own seed."""
    rng = np.random.default_rng(7)
    for name, seconds, rate in (("a", 0.9, 16000), ("b", 0.33, 22050)):
        sf.write(directory / f"{name}.wav", rng.uniform(-0.3, 0.3, int(seconds * rate)).astype(np.float32), rate)
        np.save(directory / f"{name}.npy", rng.standard_normal((int(seconds * 20), model.cfg.video_dim)))
    fields = {
        "t2a": [{"caption": "a dog barks twice", "duration": 0.7}, {"caption": "rain", "duration": 0.3}],
        "t2m": [{"caption": "a slow piano melody in C major"}, {"caption": "drums"}],
        "tts": [{"phonemes": "HH AH0 L OW1 W ER1 L D"}, {"phonemes": "HH AY1"}],
        "svs": [{"score_phonemes": "n i h ao", "score_notes": "C4 C4 D4 rest", "score_durations": "0.3 0.2 0.4 0.2"},
                {"score_phonemes": "n i", "score_notes": "E4 E4", "score_durations": "0.2 0.1"}],
        "se": [{"noisy_speech": str(directory / "a.wav")}, {"noisy_speech": str(directory / "b.wav")}],
        "sr": [{"low_sr_audio": str(directory / "a.wav")}, {"low_sr_audio": str(directory / "b.wav")}],
        "v2a": [{"video_features": str(directory / "a.npy")}, {"video_features": str(directory / "b.npy")}],
    }  # fmt: skip
    return {
        task: [requests_lib.build_sample(tasks.get(task), {**f, "seed": 100 + i}, model) for i, f in enumerate(rows)]
        for task, rows in fields.items()
    }


def test_a_request_sounds_the_same_in_any_batch_as_alone_at_its_exact_length(model, tmp_path):
    """Padding (to the batch's longest content, to a length bucket) never reaches a valid sample, and a request's
    noise is its own: a mixed batch of all seven tasks equals each request generated alone, unpadded."""
    rows = _mixed_requests(model, tmp_path)
    requests = [r for pair in rows.values() for r in pair]
    together = model.generate(requests, num_steps=1, guidance_scale=3.0)
    shorter = {task: pair[1] for task, pair in rows.items()}  # the second of each pair: shorter input or content
    for request, wave in zip(requests, together, strict=True):
        if request is not shorter[request.task.short]:
            continue  # each task's shorter request (padded the most) is generated alone: one compile per task
        (alone,) = model.generate([request], num_steps=1, guidance_scale=3.0, bucketed=False)
        assert wave.shape == alone.shape, request.task.short
        scale = max(1.0, float(np.max(np.abs(alone))))
        assert np.max(np.abs(wave - alone)) <= 1e-5 * scale, request.task.short
    shuffled = model.generate(requests[::-1], num_steps=1, guidance_scale=3.0)[::-1]  # other companions, positions
    for wave, again in zip(together, shuffled, strict=True):
        np.testing.assert_allclose(again, wave, atol=1e-5)


def test_se_sr_v2a_follow_their_input_length_unless_asked_for_the_predicted_one(model, tmp_path):
    rows = _mixed_requests(model, tmp_path)
    se, v2a = rows["se"][0], rows["v2a"][0]
    assert se.aligned and se.samples == round(0.9 * 24000)
    (wave,) = model.generate([se], num_steps=2, guidance_scale=1.0)
    assert len(wave) == round(0.9 * 24000)
    prediction, _ = model.generator.plan([se.sample, v2a.sample], aligned=[True, True])
    counts, mask = np.asarray(prediction["counts"]), np.asarray(prediction["content_mask"])
    assert (counts[0] == mask[0]).all() and mask[0].sum() == 45  # one output frame per input frame, all of them
    assert (counts[1] == 5 * mask[1]).all() and mask[1].sum() == 18  # five per 0.1 s video frame
    (video_wave,) = model.generate([v2a], num_steps=2, guidance_scale=1.0)
    assert len(video_wave) == 18 * 5 * HOP  # 18 video frames of 0.1 s: the whole video
    fields = {"noisy_speech": str(tmp_path / "a.wav"), "length": "predicted"}
    predicted = requests_lib.build_sample(tasks.get("se"), fields, model)
    assert not predicted.aligned and predicted.samples is None
    with pytest.raises(ValueError, match="length applies to se, sr and v2a only"):
        requests_lib.check_fields(tasks.get("tts"), {"phonemes": "HH AY1", "length": "input"})


# ---------------------------------------------------------------------------------------------- bad input


def test_every_bad_request_is_refused_up_front_with_its_line_and_nothing_is_written(tmp_path, inputs, capsys):
    rng = np.random.default_rng(1)
    nan = rng.uniform(-0.3, 0.3, 8000).astype(np.float32)
    nan[100:110] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    sf.write(tmp_path / "long.wav", np.zeros(31 * 8000, np.float32), 8000)
    np.save(tmp_path / "features.npy", np.full((5, 32), np.inf, np.float32))
    lines = [
        {"id": "ok", "task": "t2a", "caption": "a dog barks", "duration": 0.5},  # after the BOM: fine
        {"id": "nan", "task": "se", "noisy_speech": "nan.wav"},
        {"id": "empty", "task": "sr", "low_sr_audio": "empty.wav"},
        {"id": "long", "task": "se", "noisy_speech": "long.wav"},
        {"id": "missing", "task": "sr", "low_sr_audio": "nowhere.flac"},
        {"id": "phone", "task": "tts", "phonemes": "HH XX"},
        {"id": "blank", "task": "t2m", "caption": "   "},
        {"id": "singer", "task": "svs", "score_phonemes": "n i", "score_notes": "C4 C4", "score_durations": "0.2 0.2",
         "singer": "Nobody"},
        {"id": "note", "task": "svs", "score_phonemes": "n i", "score_notes": "C4 H9", "score_durations": "0.2 0.2"},
        {"id": "features", "task": "v2a", "video_features": "features.npy"},
        {"id": "video", "task": "v2a", "video": "broken.mp4"},
        {"id": "length", "task": "tts", "phonemes": "HH AY1", "length": "input"},
    ]  # fmt: skip
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    batch = tmp_path / "requests.jsonl"
    batch.write_text("\ufeff" + "\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n", "utf-8")
    out = tmp_path / "out"
    flags.FLAGS.unparse_flags()
    argv = flags.FLAGS(
        ["sample", "--config", str(REPO / "configs/tiny.py"), "--batch", str(batch), "--out_dir", str(out)]
    )
    with pytest.raises(SystemExit) as exit_info:
        sample.main(argv)
    flags.FLAGS.unparse_flags()
    assert exit_info.value.code == 2 and not out.exists()
    errors = capsys.readouterr().err
    expected = {
        2: "NaN or infinite", 3: "no samples", 4: "longer than the 30 s", 5: "no such file",
        6: "unknown ARPAbet phone: XX", 7: "caption is blank", 8: "unknown singer", 9: "not a note name",
        10: "contains NaN or infinite",
        11: "not a readable video", 12: "length applies to se, sr and v2a only",
    }  # fmt: skip
    for number, reason in expected.items():
        assert any(f"requests.jsonl:{number}: " in e and reason in e for e in errors.splitlines()), (number, errors)
    assert "requests.jsonl:1:" not in errors and f"{len(expected)} problem(s); nothing was generated" in errors


def test_a_video_needs_clip_and_outputs_are_never_non_finite(tmp_path, inputs):
    no_clip = requests_lib.InputContext(has_clip=False)
    with pytest.raises(ValueError, match="converted without --clip"):
        requests_lib.check_inputs(tasks.get("v2a"), {"video": str(inputs / "clip.mp4")}, no_clip)
    features = tmp_path / "f.npy"
    np.save(features, np.zeros((4, 32), np.float32))
    requests_lib.check_inputs(tasks.get("v2a"), {"video_features": str(features)}, no_clip)  # fine without CLIP
    wave = np.array([0.1, np.nan, 0.2], np.float32)
    with pytest.raises(FloatingPointError, match="non-finite"):
        batch_runner.write_outputs(tasks.get("t2a"), {}, wave, tmp_path / "x.wav", 24000)
    assert not (tmp_path / "x.wav").exists()
    loud = np.array([0.5, 1.5, -2.0], np.float32)
    assert batch_runner.clipped_samples(loud) == 2
    batch_runner.write_outputs(tasks.get("t2a"), {}, loud, tmp_path / "y.wav", 24000)
    np.testing.assert_allclose(sf.read(tmp_path / "y.wav", dtype="float32")[0], [0.5, 1.0, -1.0], atol=1e-4)


def _batch_lines(directory: pathlib.Path, scale: float) -> list[requests_lib.Line]:
    """12 mixed requests of different lengths (``scale`` stretches every length a little)."""
    rng = np.random.default_rng(int(scale * 100))
    rows = []
    for i, seconds in enumerate((0.3, 0.45, 0.6, 1.1)):
        rows.append({"id": f"a{i}", "task": "t2a", "caption": "a dog barks " * (i + 1), "duration": seconds * scale})
    for i, words in enumerate(("HH AY1", "HH AH0 L OW1", "W ER1 L D HH AY1", "HH AH0 L OW1 W ER1 L D")):
        rows.append({"id": f"s{i}", "task": "tts", "phonemes": words})
    for i, seconds in enumerate((0.4, 0.7, 1.3, 1.6)):
        path = directory / f"se{i}_{scale}.wav"
        sf.write(path, rng.uniform(-0.3, 0.3, int(seconds * scale * 16000)).astype(np.float32), 16000)
        rows.append({"id": f"e{i}", "task": "se", "noisy_speech": str(path)})
    batch = directory / f"requests_{scale}.jsonl"
    batch.write_text("\n".join(json.dumps(row) for row in rows))
    return requests_lib.read_requests(batch)


def test_a_mixed_batch_compiles_one_program_pair_per_bucket_combination(model, tmp_path):
    """Every padded axis is bucketed: the programs compiled are those of the bucket combinations met, and a second
    batch of other lengths within the same buckets compiles nothing."""
    lines = _batch_lines(tmp_path, 1.0)
    assert len(lines) >= 12
    generator = model.generator
    before = generator.compiled_programs()
    summaries = batch_runner.run_batch(model, lines, tmp_path / "out", batch_size=2, num_steps=2)
    first = generator.compiled_programs() - before
    # The bucket combinations this batch meets: one predict program per input signature, one render per output.
    inputs, outputs = set(), set()
    for short in ("t2a", "tts", "se"):
        group = sorted((line for line in lines if line.task.short == short), key=requests_lib.length_hint)
        for k in range(0, len(group), 2):
            requests = [requests_lib.build_sample(line.task, line.fields, model) for line in group[k : k + 2]]
            rows = generator.buckets.size("batch", len(requests))
            padded = generator.padded_lengths([r.sample for r in requests])
            inputs.add((rows, short, tuple(sorted(padded.items()))))
            _, noise = generator.plan([r.sample for r in requests], aligned=[r.aligned for r in requests],
                                      frames=[r.frames for r in requests])  # fmt: skip
            outputs.add((rows, short, tuple(sorted(padded.items())), noise.shape))
    assert 0 < first <= len(inputs) + len(outputs)
    again = _batch_lines(tmp_path, 1.05)  # every length 5 % longer: the same buckets
    batch_runner.run_batch(model, again, tmp_path / "again", batch_size=2, num_steps=2)
    assert generator.compiled_programs() - before == first
    assert sum(len(s.compiles) for s in summaries.values()) >= first  # the summary counts what XLA compiled
