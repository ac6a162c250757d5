"""The smoke sampler: a tiny random model through the jitted ODE and the VAE decoder to a 24 kHz wav."""

import os
import pathlib
import subprocess
import sys

import soundfile as sf

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_sample_cli_writes_a_wav_and_reports_real_time_factor(tmp_path):
    out = tmp_path / "smoke.wav"
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "uniflow_jax.sample",
            "--config",
            str(REPO / "configs/tiny.py"),
            "--output",
            str(out),
            "--duration",
            "0.6",
            "--num_steps",
            "3",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "real-time factor" in result.stdout and "random weights" in result.stdout
    info = sf.info(str(out))
    assert info.samplerate == 24000 and info.channels == 1
    assert info.frames == 30 * 480  # 0.6 s = 30 latent frames of 480 samples
    audio, _ = sf.read(str(out))
    assert 0 < abs(audio).max() <= 1.0
