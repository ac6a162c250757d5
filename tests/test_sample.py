"""``python -m uniflow_jax.sample``: every task from the original CLI's kinds of input (tiny random model)."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from absl import flags

from uniflow_jax import config_lib, sample

REPO = pathlib.Path(__file__).resolve().parents[1]
HOP = 480


def _write_video(path: pathlib.Path, seconds: float = 1.2, fps: int = 25) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(int(seconds * fps)):
            image = np.zeros((48, 64, 3), np.uint8)
            image[:, : (i * 3) % 64] = 255  # a bar sweeping across: visual events over time
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    sf.write(d / "noisy.wav", rng.uniform(-0.3, 0.3, 16000 * 1).astype(np.float32), 16000)  # 1 s at 16 kHz
    sf.write(d / "low.flac", rng.uniform(-0.3, 0.3, (8000, 2)).astype(np.float32), 8000)  # stereo 8 kHz
    np.save(d / "xvector.npy", rng.standard_normal(256).astype(np.float32))
    _write_video(d / "clip.mp4")
    return d


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    config = config_lib.load_config_file(str(REPO / "configs/tiny.py"))
    return sample.RandomModel(config, seed=0, workdir=tmp_path_factory.mktemp("tok"))


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
    spec = sample.tasks.get(task)
    request, frames = sample.build_sample(spec, model)
    (wave,) = model.generator([request], num_steps=3, guidance_scale=spec.guidance_scale, frames=[frames])
    assert wave.ndim == 1 and len(wave) > 0 and len(wave) % HOP == 0 and np.all(np.isfinite(wave))
    if task == "se":  # 1 s at 16 kHz -> 1 s at 24 kHz, 50 latent frames
        assert len(wave) == 24000
    if task == "sr":
        assert len(request["audio"]) == 24000
    if task == "t2a":
        assert len(wave) == 25 * HOP  # the 0.5 s duration override
    if task == "v2a":  # 1.2 s of video at 10 fps -> 12 frames of CLIP features
        assert request["video"].shape == (12, model.cfg.video_dim)


def test_cli_end_to_end_writes_24khz_wav(tmp_path):
    out = tmp_path / "tts.wav"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-m", "uniflow_jax.sample", "tts", "--config", str(REPO / "configs/tiny.py"),
         "--phonemes", "HH AH0 L OW1", "--num_steps", "3", "--output", str(out)],
        capture_output=True, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "real-time factor" in result.stdout and "RANDOM weights" in result.stdout
    info = sf.info(str(out))
    assert info.samplerate == 24000 and info.channels == 1 and info.frames % HOP == 0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="unknown ARPAbet phone: XX"):
        sample.symbols.tts_phone_ids("HH XX")
    with pytest.raises(ValueError, match="not a note name"):
        sample.symbols.note_to_midi("H2")
    assert sample.symbols.note_to_midi("C4") == 60 and sample.symbols.note_to_midi("G#3") == 56
    assert sample.symbols.note_to_midi("rest") == 0
