"""``python -m uniflow_jax.parity``: passes on the fixtures, works for other sizes, fails loudly."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import save_file

from uniflow_jax import parity
from uniflow_jax.models import dit
from uniflow_jax.weights import names, torch_import, upstream_config


def test_cli_passes_on_the_upstream_fixtures(ref_dir):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "uniflow_jax.parity",
            "--ref-dir",
            str(ref_dir),
            "--component",
            "dit",
            "--component",
            "vae",
        ],
        capture_output=True,
        text=True,
        env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS dit" in result.stdout and "PASS vae" in result.stdout


def _write_dit_folder(folder, *, embed_dim=48, depth=2, num_heads=3, seed=5):
    """A fixture folder in the upstream layout for a DiT of other sizes (outputs recorded from the weights)."""
    kwargs = dict(
        upstream_config.DIT_OPTIONS,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        in_chans=128,
        out_chans=128,
        mlp_ratio=4.0,
        context_dim=24,
        ta_context_dim=16,
    )
    cfg = upstream_config.dit_config(kwargs)
    model = dit.DiT(cfg, rngs=nnx.Rngs(seed))
    state = jax.tree.map(
        lambda p: p + 0.02 * np.random.default_rng(seed).standard_normal(p.shape, np.float32), nnx.state(model)
    )
    nnx.update(model, state)
    rng = np.random.default_rng(seed)
    io = {
        "x_t": rng.standard_normal((2, 128, 11), np.float32),
        "timesteps": np.float32([3.0, 990.0]),
        "time_aligned_context": rng.standard_normal((2, 11, 16), np.float32),
        "context": rng.standard_normal((2, 4, 24), np.float32),
        "x_mask": np.arange(11)[None] < np.array([[11], [7]]),
        "context_mask": np.arange(4)[None] < np.array([[4], [2]]),
        "timestep_scalar": np.float32(500.5),
    }
    conds = [jnp.asarray(io[k]) for k in ("time_aligned_context", "context", "x_mask", "context_mask")]
    x = jnp.asarray(io["x_t"]).transpose(0, 2, 1)
    for out, t in (("out_velocity", io["timesteps"]), ("out_velocity_scalar_timestep", io["timestep_scalar"])):
        io[out] = np.asarray(model(x, jnp.asarray(t), *conds)).transpose(0, 2, 1)
    save_file(torch_import.export_state(nnx.state(model), names.DIT), str(folder / "dit.safetensors"))
    (folder / "dit_config.json").write_text(json.dumps({"model": kwargs}))
    np.savez(folder / "dit_io.npz", **io)
    return io


def test_other_sizes_pass_and_a_wrong_output_fails(tmp_path, capsys):
    io = _write_dit_folder(tmp_path)
    assert parity.run_parity(tmp_path, None, 1e-4)
    assert "PASS dit" in capsys.readouterr().out
    io["out_velocity"] = io["out_velocity"] * 1.01
    np.savez(tmp_path / "dit_io.npz", **io)
    assert not parity.run_parity(tmp_path, ["dit"], 1e-4)
    assert "FAIL dit" in capsys.readouterr().out


def test_unknown_missing_or_unsupported_components_fail(tmp_path, capsys):
    assert not parity.run_parity(tmp_path, ["dit"], 1e-4)  # requested, but no files
    assert "cannot be checked" in capsys.readouterr().out
    assert not parity.run_parity(tmp_path, ["no_such_component"], 1e-4)
    assert "no parity check" in capsys.readouterr().out
    (tmp_path / "dit_config.json").write_text(json.dumps({"model": {"embed_dim": 8, "time_fusion": "token"}}))
    assert not parity.run_parity(tmp_path, ["dit"], 1e-4)
    assert "time_fusion='token'" in capsys.readouterr().out
