"""``python -m uniflow_jax.train``: same numbers on every mesh and process count, exact resume after a kill,
preemption saves, checkpoints that move between device counts, and non-finite steps that never land."""

import json
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from flax import nnx
from test_metric_writers import summary_values

from uniflow_jax import config_lib, export, parallel, planning
from uniflow_jax.data import cache, pipeline
from uniflow_jax.training import checkpoint, loop, objectives, state
from uniflow_jax.training import step as train_step
from uniflow_jax.weights import frozen, torch_import

STEPS = 20
REPO = pathlib.Path(__file__).resolve().parents[2]


def load(path, **train_fields):
    config = config_lib.load_config_file(str(path))
    config.train.update(train_fields)
    return config


def logged(workdir) -> dict[int, dict]:
    """metrics.jsonl by step; a step logged again after a resume keeps its last line."""
    lines = (workdir / "metrics.jsonl").read_text().splitlines() if (workdir / "metrics.jsonl").exists() else []
    rows = [json.loads(line) for line in lines]
    return {row["step"]: row for row in rows if "loss" in row}


def losses(workdir) -> dict[int, float]:
    return {step: row["loss"] for step, row in logged(workdir).items()}


def launch(config_file, workdir, *overrides, devices=8) -> subprocess.Popen:
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=re.sub(r"device_count=\d+", f"device_count={devices}", os.environ["XLA_FLAGS"]),
    )
    command = [sys.executable, "-m", "uniflow_jax.train", "--config", str(config_file), "--workdir", str(workdir)]
    return subprocess.Popen(
        [*command, *overrides], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen, timeout: float = 600) -> None:
    _, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]


def wait_for_steps(process, workdir, count: int, timeout: float = 300) -> None:
    start = time.time()
    while len(logged(workdir)) < count:
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.time() - start < timeout, "the run logged too slowly"
        time.sleep(0.05)


def assert_close(ours: dict[int, float], reference: dict[int, float], steps, rtol: float = 1e-4) -> None:
    for step in steps:
        assert np.isclose(ours[step], reference[step], rtol=rtol, atol=0), (step, ours[step], reference[step])


@pytest.fixture(scope="module")
def reference(train_config_file, tmp_path_factory):
    """An uninterrupted in-process run on the default (8, 1, 1) mesh: checkpoints and validation at 10 and 20,
    audio examples at 20 (they read the state, never change it)."""
    workdir = tmp_path_factory.mktemp("reference")
    loop.train(load(train_config_file, eval_every=10, eval_batches=1, sample_every=20), workdir)
    return workdir, losses(workdir)


def test_reference_run_learns_and_logs_everything(reference):
    workdir, trajectory = reference
    assert sorted(trajectory) == list(range(1, STEPS + 1))
    assert np.mean([trajectory[s] for s in range(16, 21)]) < np.mean([trajectory[s] for s in range(1, 6)])
    row = logged(workdir)[STEPS]
    for key in ("lr", "grad_norm", "steps_per_s", "samples_per_s", "latent_frames_per_s", "tflops_per_device"):
        assert np.isfinite(row[key]) and row[key] > 0, key
    assert 0 <= row["data_wait"] <= 1
    assert any(key.startswith("loss/") for key in row)
    assert checkpoint.read_metadata(workdir)["step"] == STEPS
    validation = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    validation = [row for row in validation if "val/loss" in row]
    assert [row["step"] for row in validation] == [10, 20]
    best = checkpoint.read_metadata(workdir, best=True)
    assert best["val_loss"] == min(row["val/loss"] for row in validation)
    tags = event_tags(workdir / "tensorboard")
    assert {"loss", "val/loss", "samples/t2a", "samples/v2a", "samples/se"} <= tags  # (tts/svs val clips: too long)


def event_tags(folder) -> set[str]:
    return set(summary_values(folder))


def test_a_mesh_of_every_axis_gives_the_same_loss_trajectory(reference, train_config_file, tmp_path):
    """The whole loop on a (2, 2, 2) mesh (data, fsdp and tensor sharding at once) follows the (8, 1, 1) run
    step for step (the model's loss on (8, 1, 1), (2, 4, 1) and (2, 2, 2) against one device:
    tests/models/test_uniflow.py::test_sharded_loss_equals_single_device)."""
    config = load(train_config_file, checkpoint_every=STEPS)
    config.mesh.shape = (2, 2, 2)
    loop.train(config, tmp_path)
    assert_close(losses(tmp_path), reference[1], range(1, STEPS + 1))


def test_sigterm_saves_at_the_next_step_and_sigkill_loses_nothing(reference, train_config_file, tmp_path):
    """Preempted (SIGTERM) → a checkpoint at the next step and a clean exit; relaunched, killed (SIGKILL) at a
    random step, relaunched again: the trajectory equals the uninterrupted one exactly."""
    process = launch(train_config_file, tmp_path, "--config.train.checkpoint_every=1000")
    wait_for_steps(process, tmp_path, 3)
    signalled_after = len(logged(tmp_path))
    process.send_signal(signal.SIGTERM)
    finish(process, timeout=120)
    preempted = checkpoint.read_metadata(tmp_path)["step"]
    assert signalled_after <= preempted <= signalled_after + 2
    assert max(logged(tmp_path)) == preempted

    kill_at = random.SystemRandom().randint(preempted + 2, STEPS - 2)
    every = "--config.train.checkpoint_every=4"
    process = launch(train_config_file, tmp_path, every)
    wait_for_steps(process, tmp_path, kill_at)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finish(launch(train_config_file, tmp_path, every))
    assert losses(tmp_path) == reference[1], f"preempted at step {preempted}, killed after step {kill_at}"


def test_checkpoint_of_8_devices_resumes_on_fewer(reference, train_config_file, tmp_path):
    """Saved sharded over 8 devices, resumed over 4 (every array resharded): the same trajectory. (Onto one
    device: the sampler tests restore a one-device run on eight.)"""
    workdir = tmp_path / "run"
    shutil.copytree(reference[0], workdir)
    shutil.rmtree(workdir / "checkpoints" / str(STEPS))
    shutil.rmtree(workdir / "best")
    kept = [line for line in (workdir / "metrics.jsonl").read_text().splitlines() if json.loads(line)["step"] <= 10]
    (workdir / "metrics.jsonl").write_text("\n".join(kept) + "\n")
    finish(launch(train_config_file, workdir, "--config.train.num_steps=14", devices=4))
    assert_close(losses(workdir), reference[1], range(11, 15))


def test_a_nan_batch_is_skipped_counted_and_never_checkpointed(train_config_file, tmp_path, monkeypatch):
    to_global, calls = pipeline.to_global, []

    def poisoned(batch, mesh, batch_size=None, rules=None):
        out = to_global(batch, mesh, batch_size, rules)
        calls.append(1)
        if len(calls) == 3:
            out["waveform"] = out["waveform"] * np.float32(np.nan)
        return out

    monkeypatch.setattr(pipeline, "to_global", poisoned)
    loop.train(load(train_config_file, num_steps=5, checkpoint_every=3), tmp_path)
    rows = logged(tmp_path)
    assert rows[3]["loss"] is None and rows[3]["skipped"] == 1
    assert [rows[s]["skipped_total"] for s in range(1, 6)] == [0, 0, 1, 1, 1]
    assert np.isfinite(rows[5]["loss"])
    params, step = checkpoint.restore_params(tmp_path, _abstract_params(load(train_config_file)))
    assert step == 5 and all(np.isfinite(np.asarray(p)).all() for p in jax.tree.leaves(params))


def test_too_many_nonfinite_steps_in_a_row_stop_the_run(train_config_file, tmp_path, monkeypatch):
    to_global = pipeline.to_global

    def poisoned(batch, mesh, batch_size=None, rules=None):
        out = to_global(batch, mesh, batch_size, rules)
        out["waveform"] = out["waveform"] * np.float32(np.nan)
        return out

    monkeypatch.setattr(pipeline, "to_global", poisoned)
    config = load(train_config_file, num_steps=10, max_nonfinite_in_a_row=3)
    with pytest.raises(loop.NonFiniteError, match="3 steps in a row had a non-finite loss"):
        loop.train(config, tmp_path)


@pytest.mark.slow
def test_two_processes_give_the_losses_of_one(reference, train_config_file, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    processes = [
        launch(
            train_config_file,
            tmp_path,
            f"--coordinator_address=127.0.0.1:{port}",
            "--num_processes=2",
            f"--process_id={i}",
            "--config.train.num_steps=10",
            devices=4,
        )
        for i in range(2)
    ]
    for process in processes:
        finish(process)
    assert_close(losses(tmp_path), reference[1], range(1, 11))


def _abstract_params(config):
    """Replicated ShapeDtypeStructs of the params a run of ``config`` trains."""
    make, _ = objectives.trained_module(config)
    spec = state.ModelSpec.of(lambda: make(nnx.Rngs(0)))
    sharding = jax.sharding.NamedSharding(parallel.make_mesh((-1, 1, 1)), jax.sharding.PartitionSpec())
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), state.pure_values(spec.abstract_params)
    )


def assert_trees_equal(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_export_round_trips_and_fine_tuning_starts_from_it(reference, train_config_file, tmp_path):
    out = tmp_path / "model.safetensors"
    assert export.export(reference[0], out) == STEPS
    config = load(train_config_file)
    saved, _ = checkpoint.restore_params(reference[0], _abstract_params(config))
    make, names = objectives.trained_module(config)
    spec = state.ModelSpec.of(lambda: make(nnx.Rngs(0)))
    imported = torch_import.import_state(spec.abstract_params, torch_import.read_safetensors(str(out)), names)
    assert_trees_equal(state.pure_values(imported), saved)
    # The first step of the warm-up has learning rate 0: after it the params are still exactly the imported ones.
    loop.train(load(train_config_file, num_steps=1, init_from=str(out)), tmp_path / "finetune")
    assert_trees_equal(checkpoint.restore_params(tmp_path / "finetune", _abstract_params(config))[0], saved)


def test_vae_run_validates_logs_audio_and_exports_the_flow_models_vae(train_config_file, tmp_path):
    config = load(train_config_file, num_steps=4, log_every=2, eval_every=2, eval_batches=1, sample_every=2)
    config.objective = "vae"
    config.vae_training.segment_seconds = 0.2
    loop.train(config, tmp_path / "vae")
    rows = logged(tmp_path / "vae")
    assert rows[4]["vae/stft"] > 0 and np.isfinite(rows[4]["loss"])
    assert {"val/loss", "reconstruction/0", "loss/t2a"} <= event_tags(tmp_path / "vae" / "tensorboard")
    export.export(tmp_path / "vae", tmp_path / "vae.safetensors", best=True)
    best, _ = checkpoint.restore_params(tmp_path / "vae", _abstract_params(config), best=True)
    flow = load(train_config_file)
    flow.model.frozen_weights.vae = str(tmp_path / "vae.safetensors")
    _, encoders = frozen.frozen_encoders(flow, parallel.make_mesh((-1, 1, 1)))
    assert_trees_equal(state.pure_values(encoders["vae"]), best)


def test_a_refused_manifest_leaves_no_workdir_behind(train_config_file, tmp_path):
    from uniflow_jax.data.manifest import ManifestError

    config = load(train_config_file)
    entry = next(e for e in config.data.train if e["task"] == "t2a")
    content = pathlib.Path(entry["content"])
    bad = tmp_path / "content.jsonl"
    bad.write_text(content.read_text() + '{"audio_id": "not_in_the_audio_manifest", "caption": "x"}\n')
    entry["content"], entry["base_content_path"] = str(bad), str(content.parent)
    config.data.on_bad_input = "raise"
    with pytest.raises(ManifestError, match="not_in_the_audio_manifest' has no row"):
        loop.train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_step_compiled_ahead_is_loaded_not_compiled_and_trains_the_same(train_config_file, tmp_path, caplog):
    """``aot --save``'s train step (``planning.train_program``: the batch as the latent cache feeds it), compiled
    here for these devices, is what ``train --compiled`` runs: not compiled again, the same losses; one made
    for another mesh or model is refused before the workdir is made."""
    config = load(train_config_file, num_steps=2)
    # A bucket that holds every demo clip: the cache keeps whole clips up to the largest bucket.
    config.data.buckets = [dict(latent=250, phoneme=96, score=96, video=50, text=32)]
    config.data.max_seconds = dict(tts=5.0, svs=5.0)
    cache.build(config, tmp_path / "cache", ["train"])
    config.data.cache = str(tmp_path / "cache")
    program = planning.train_program(config, parallel.make_mesh(config.mesh.shape))
    train_step.save_program(program.lowered.compile(), tmp_path / "step.exe")

    loop.train(config, tmp_path / "compiling")
    caplog.clear()
    with caplog.at_level("INFO", logger="absl"):  # an earlier in-process command may have set absl to WARNING
        loop.train(config, tmp_path / "loading", compiled=[tmp_path / "step.exe"])
    assert "loaded the train step compiled ahead" in caplog.text
    assert "compiled the train step" not in caplog.text and "compiling it here" not in caplog.text
    assert losses(tmp_path / "loading") == losses(tmp_path / "compiling") and len(losses(tmp_path / "loading")) == 2

    config.mesh.shape = (1, -1, 1)
    with pytest.raises(ValueError, match="compiled for another mesh or sharding rules"):
        loop.train(config, tmp_path / "other", compiled=[tmp_path / "step.exe"])
    config.mesh.shape, config.model.dit.depth = (-1, 1, 1), 2
    with pytest.raises(ValueError, match="compiled for other shapes than this run's state"):
        loop.train(config, tmp_path / "other", compiled=[tmp_path / "step.exe"])
    assert not (tmp_path / "other").exists()
