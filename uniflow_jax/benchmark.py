"""How fast and how efficient: ``python -m uniflow_jax.benchmark --config configs/<name>.py [--json OUT]``.

Figures, each measured in this run: the median of ``--repeats`` timed calls after a warm-up call, or of fewer
(at least two) once they have taken ``--figure_seconds`` — a whole run of ``small`` on a 2-core CPU then
fits in 10 minutes:

* ``reference``: the FLOP/s every ratio is quoted against — the chip's bf16 peak from the table on TPU/GPU,
  a measured float32 2048² matmul on CPU (where no data-sheet peak applies), there measured again before and
  after each part, whose ratios use the higher of the two;
* ``train``: one backbone train step (DiT forward + backward + AdamW, state donated) of the config's DiT on
  ``--train_batch`` × ``--train_frames`` latent frames: step time, samples/s, latent frames/s, analytic FLOPs
  (adaLN once per sample) beside XLA's cost analysis of the model (no rematerialisation) and of the step as
  executed (with the config's remat recomputation), TFLOP/s per device, MFU, compile time, memory;
* ``sampler``: text-to-audio of ``--sampler_seconds`` of audio, ``--sampler_steps`` steps, guidance on and off:
  time to first audio (compile included), steady real-time factor, backbone calls per request, the time and
  FLOP/s of one backbone call and of the VAE decode (analytic convolution FLOPs; XLA's count beside them),
  and batch throughput;
* ``scaling``: the train step on each mesh of ``--meshes`` (on simulated CPU devices this checks overhead,
  not speed-up).

Input-pipeline throughput has its own command: ``python -m uniflow_jax.data.throughput --config configs/tiny.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pathlib
import statistics
import tempfile
import time
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags
from flax import nnx
from ml_collections import config_flags

from uniflow_jax import cli, config_lib, hardware, instructions, nnx_utils, parallel
from uniflow_jax.data import collate, pipeline
from uniflow_jax.frontends import text
from uniflow_jax.inference.generator import BUCKETS, Generator
from uniflow_jax.models import dit, uniflow
from uniflow_jax.training import flops, objectives, optimizer
from uniflow_jax.training import state as train_state
from uniflow_jax.training import step as train_step


def timed(fn: Callable[[], Any], repeats: int, *, warm_up: bool = True, budget_s: float = math.inf) -> float:
    """Median wall time of up to ``repeats`` calls of ``fn()`` (results blocked on), after one untimed call
    unless ``warm_up`` is False; stops early, after two calls at least, once the calls have taken ``budget_s``."""
    if warm_up:
        jax.block_until_ready(fn())
    times = []
    while len(times) < repeats and (len(times) < 2 or sum(times) < budget_s):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reference_flops() -> tuple[float, str]:
    device = jax.devices()[0]
    peak = hardware.device_peak_flops(device)
    if peak is not None:
        return peak, f"{device.device_kind} bf16 peak (table)"
    return flops.measure_matmul_flops(), "measured float32 2048x2048 matmul"


def _memory(compiled: Any) -> dict[str, float]:
    try:
        analysis = compiled.memory_analysis()
    except Exception:  # not every backend reports it
        return {}
    if analysis is None:
        return {}
    fields = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")
    return {f"{name[: -len('_size_in_bytes')]}_gib": getattr(analysis, name, 0) / 2**30 for name in fields}


@contextlib.contextmanager
def _train_step(
    config: ml_collections.ConfigDict, mesh_shape: Sequence[int], batch: int, frames: int, context: int
) -> Iterator[types.SimpleNamespace]:
    """The train step users run (``training.step.make_train_step`` through ``CompiledSteps``, as
    ``python -m uniflow_jax.train`` compiles it: the whole model, AdamW, the config's remat and gradient
    accumulation), a fresh state and a synthetic cached batch, on a mesh of the first devices."""
    config = config.copy_and_resolve_references()
    config.mesh.shape, config.data.video_input = tuple(mesh_shape), "features"
    devices = jax.devices()[: int(np.prod(mesh_shape))]  # the first devices: (1, 1, 1) runs on one of eight
    mesh, rules = parallel.make_mesh(mesh_shape, devices), config_lib.mesh_rules(config)
    t, ema = config.train, config.train.ema_decay > 0
    with tempfile.TemporaryDirectory() as tokenizer_dir, jax.set_mesh(mesh), parallel.axis_rules(rules):
        if not config.model.instructions and not config.data.tokenizer:  # to encode the instruction bank
            texts, vocab = instructions.all_texts(), config.model.t5.vocab_size
            config.data.tokenizer = str(text.train_tokenizer(texts, pathlib.Path(tokenizer_dir) / "spiece", vocab))
        objective = objectives.make(config, mesh)
        make = lambda: objective.make_model(nnx.Rngs(config.seed))  # noqa: E731
        tx, schedule = optimizer.make(config.optimizer), optimizer.learning_rate(config.optimizer)
        spec = train_state.ModelSpec.of(make)
        shardings = train_state.shardings(spec, tx, mesh, rules, ema=ema)
        fn = train_step.make_train_step(objective, spec, tx, schedule, grad_accum_steps=t.grad_accum_steps,
                                        ema_decay=t.ema_decay)  # fmt: skip
        yield types.SimpleNamespace(
            config=config,
            mesh=mesh,
            objective=objective,
            tx=tx,
            schedule=schedule,
            state=train_state.create(make, tx, config.seed, shardings, ema=ema),
            steps=train_step.CompiledSteps(fn, shardings, objective.frozen, objective),
            inputs=pipeline.to_global(collate.synthetic_batch(config, batch, frames, context), mesh, batch),
        )


def bench_train(
    config: ml_collections.ConfigDict,
    mesh_shape: Sequence[int],
    batch: int,
    frames: int,
    context: int,
    repeats: int,
    *,
    budget_s: float = math.inf,
    cross_check: bool = True,
) -> dict[str, Any]:
    """The train step users run (see :func:`_train_step`) on a synthetic cached batch, on a mesh: time vs the
    analytic backbone FLOPs; with ``cross_check``, XLA's count of the whole step too."""
    with _train_step(config, mesh_shape, batch, frames, context) as run:
        holder, inputs, objective, t = [run.state], run.inputs, run.objective, run.config.train

        def step():
            (holder[0], metrics), _ = run.steps(holder[0], inputs)
            return metrics

        metrics = jax.device_get(step())  # compiles
        compile_s = next(iter(run.steps.compile_seconds.values()))
        compiled = next(iter(run.steps.programs.values()))
        seconds = timed(step, repeats, warm_up=False, budget_s=budget_s)
        xla = None
        if cross_check:  # XLA counts a scanned body once: count the same step with its loops unrolled
            with nnx_utils.loops_unrolled():
                spec_u = train_state.ModelSpec.of(lambda: objective.make_model(nnx.Rngs(run.config.seed)))
                fn_u = train_step.make_train_step(
                    objective, spec_u, run.tx, run.schedule, grad_accum_steps=t.grad_accum_steps, ema_decay=t.ema_decay
                )
                xla = flops.xla_flops(jax.jit(fn_u).lower(holder[0], objective.frozen, inputs))  # uncompiled: fast
        analytic = objective.step_flops(inputs)
        devices = run.mesh.devices.size
        mesh = list(run.mesh.devices.shape)
    return {
        "step": "training.step.make_train_step (cached batch)",
        "mesh": mesh,
        "batch": batch,
        "frames": frames,
        "loss": float(metrics["loss"]) if "loss" in metrics else None,
        "step_s": seconds,
        "samples_per_s": batch / seconds,
        "latent_frames_per_s": batch * frames / seconds,
        "analytic_tflop_per_step": analytic / 1e12,  # the backbone's forward + backward
        "xla_tflop_per_step": None if xla is None else xla / 1e12,  # the whole step, its loops unrolled
        "tflops_per_device": analytic / seconds / devices / 1e12,
        "compile_s": compile_s,
        **_memory(compiled),
    }


def loss_curve(config: ml_collections.ConfigDict, steps: int, batch: int, frames: int, context: int) -> list[float]:
    """The losses of ``steps`` train steps on one synthetic cached batch (the step's draws change with the
    step): how a dtype or a backend follows the float32 CPU run (``scripts/accelerator_check.sh``)."""
    with _train_step(config, (1, 1, 1), batch, frames, context) as run:
        state, losses = run.state, []
        for _ in range(steps):
            (state, metrics), _ = run.steps(state, run.inputs)
            losses.append(metrics["loss"])
        return [float(x) for x in jax.device_get(losses)]


@dataclasses.dataclass
class _RandomModel:
    """The config's complete model with random weights (frozen VAE and T5 too) on one device."""

    config: ml_collections.ConfigDict

    def __post_init__(self):
        self.cfg = config_lib.uniflow_config(self.config)
        model = nnx.split(uniflow.UniFlow(self.cfg, rngs=nnx.Rngs(0)))
        frozen = nnx.split(uniflow.FrozenEncoders(self.cfg, rngs=nnx.Rngs(1)))
        self.generator = Generator(self.cfg, model, frozen)
        self.model, self.frozen = model, frozen

    def t2a_request(self, seed: int) -> dict:
        rng = np.random.default_rng(seed)
        return {"task": "text_to_audio", "text_ids": rng.integers(3, self.cfg.t5.vocab_size, 12).astype(np.int32),
                "instruction": rng.standard_normal((16, self.cfg.t5.d_model)).astype(np.float32)}  # fmt: skip


def bench_sampler(
    config: ml_collections.ConfigDict,
    seconds: float,
    steps: int,
    batches: Sequence[int],
    repeats: int,
    *,
    budget_s: float = math.inf,
    guidances: Sequence[float] = (5.0, 1.0),
) -> dict[str, Any]:
    model = _RandomModel(config)
    cfg, rate = model.cfg, config.model.sample_rate
    frames = round(seconds * rate / cfg.vae.hop_length)
    out: dict[str, Any] = {"audio_seconds": seconds, "steps": steps, "latent_frames": frames}
    for guidance in guidances:
        key = f"guidance_{guidance:g}"
        request = [model.t2a_request(0)]
        call = lambda g=guidance, r=request: model.generator(r, num_steps=steps, guidance_scale=g, frames=[frames])  # noqa: E731
        start = time.perf_counter()
        wave = call()[0]
        first = time.perf_counter() - start
        steady = timed(call, repeats, warm_up=False, budget_s=budget_s)  # the first call compiled everything
        out[key] = {"time_to_first_audio_s": first, "steady_s": steady, "real_time_factor": steady / seconds,
                    "samples": len(wave)}  # fmt: skip
    # Components: one backbone call (doubled batch under guidance) and the VAE decode, per batch size.
    size = BUCKETS.size("latent", frames)
    graphdef, state = model.model
    frozen_def, frozen_state = model.frozen
    backbone = jax.jit(lambda s, x, t, ta, ctx, m, cm: nnx.merge(graphdef, s).backbone(x, t, ta, ctx, m, cm))
    decode = jax.jit(lambda s, z: nnx.merge(frozen_def, s).vae.decode(z))
    # Compiled ahead, so no warm-up call is needed (at full size one batch-8 call takes half a minute).
    for b in batches:
        cfg_b = 2 * b  # guidance doubles the batch
        x, ta = jnp.zeros((cfg_b, size, cfg.dit.latent_dim)), jnp.zeros((cfg_b, size, cfg.content_dim))
        ctx, masks = (
            jnp.zeros((cfg_b, 16, cfg.content_dim)),
            (jnp.ones((cfg_b, size), bool), jnp.ones((cfg_b, 16), bool)),
        )
        args = (x, jnp.full((cfg_b,), 500.0), ta, ctx, *masks)
        backbone_b = backbone.lower(state, *args).compile()
        call_s = timed(lambda f=backbone_b, a=args: f(state, *a), repeats, warm_up=False, budget_s=budget_s)
        z = jnp.zeros((b, size, cfg.vae.latent_dim))
        decode_b = decode.lower(frozen_state, z).compile()
        decode_s = timed(lambda f=decode_b, z=z: f(frozen_state, z), repeats, warm_up=False, budget_s=budget_s)
        decode_flops = flops.vae_decode_flops(cfg.vae, b, size)
        call_flops = flops.dit_forward_flops(cfg.dit, cfg_b, size, 16)
        request_s = steps * call_s + decode_s
        out[f"batch_{b}"] = {
            "backbone_call_s": call_s,
            "backbone_tflops": call_flops / call_s / 1e12,
            "vae_decode_s": decode_s,
            "vae_decode_tflop": decode_flops / 1e12,
            "vae_decode_xla_tflop": None if (xla := flops.xla_flops(decode_b)) is None else xla / 1e12,
            "vae_decode_tflops": decode_flops / decode_s / 1e12,
            "request_s_from_components": request_s,
            "audio_seconds_per_s": b * seconds / request_s,
        }
    out["backbone_calls_per_request"] = steps
    return out


def _define_flags() -> None:
    config_flags.DEFINE_config_file("config", None, "Experiment config (its model sizes are benchmarked).")
    flags.DEFINE_string("json", None, "Also write the figures to this JSON file.")
    flags.DEFINE_list("parts", ["train", "sampler", "scaling"], "What to measure: train, sampler, scaling.")
    flags.DEFINE_integer("repeats", 5, "Timed calls per figure (median).")
    flags.DEFINE_float("figure_seconds", 20.0, "A figure stops after two calls at least once its calls took this long.")
    flags.DEFINE_integer("train_batch", 8, "Train step: batch size.")
    flags.DEFINE_integer("train_frames", 250, "Train step: latent frames per sample (50 per second).")
    flags.DEFINE_integer("context_len", 64, "Cross-attention context tokens.")
    flags.DEFINE_float("sampler_seconds", 10.0, "Sampler: seconds of audio per request.")
    flags.DEFINE_integer("sampler_steps", 25, "Sampler: Euler steps.")
    flags.DEFINE_list("sampler_batches", ["1", "8"], "Sampler: batch sizes for the component figures.")
    flags.DEFINE_list("meshes", ["8x1x1", "2x2x2", "1x8x1"], "Scaling: data x fsdp x tensor meshes to run.")


def _host_memory_shortfall(config: ml_collections.ConfigDict, mesh_shape: Sequence[int]) -> str | None:
    """Why the train step on ``mesh_shape`` cannot fit in host memory, or None. Simulated CPU devices share
    the host's memory. Measured on a 24 GiB host, the small model's step was killed for memory on (8, 1, 1),
    (2, 2, 2) and even (1, 8, 1) (XLA gathers the fsdp-sharded layer stacks whole on every device), so each
    device is counted with 8 copies of the params (params, gradients, Adam moments, their updated copies)
    and at most 60 % of the host's memory is planned for."""
    if jax.default_backend() != "cpu":
        return None
    cfg = config_lib.dit_config(config)
    param_bytes = 4 * nnx_utils.count_parameters(nnx.state(nnx.eval_shape(lambda: dit.DiT(cfg, rngs=nnx.Rngs(0)))))
    devices = int(np.prod(mesh_shape))
    needed = 8 * param_bytes * devices
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed <= 0.6 * available:
        return None
    gib = 2**30
    return f"needs ~{needed / gib:.0f} GiB of host memory for {devices} devices; the host has {available / gib:.0f}"


def _write(report: dict[str, Any], path: str | None) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {path}")


def _ratio(tflops: float | None, reference: float) -> float | None:
    return None if tflops is None else tflops * 1e12 / reference


def _with_reference(measure: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], float]:
    """Runs one part between two reference measurements; its ratios use the higher one. A shared CPU's matmul
    figure drifts by a third within minutes, so each part is quoted against the machine as it was during it."""
    before = reference_flops()[0]
    figures = measure()
    after = reference_flops()[0]
    figures["reference_tflops_before_after"] = [before / 1e12, after / 1e12]
    return figures, max(before, after)


def main(argv: Sequence[str]) -> None:
    del argv
    values = flags.FLAGS
    config = values.config
    if config is None:
        raise flags.ValidationError("usage: python -m uniflow_jax.benchmark --config configs/<name>.py")
    reference, source = reference_flops()
    report: dict[str, Any] = {
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "device_kind": jax.devices()[0].device_kind,
        "reference_tflops": reference / 1e12,
        "reference": source,
        "dit": config.model.dit.to_dict(),
    }
    print(f"reference: {reference / 1e12:.3f} TFLOP/s ({source}) on {jax.device_count()} x {report['device_kind']}")
    if "train" in values.parts:
        train, reference = _with_reference(
            lambda: bench_train(
                config,
                (1, 1, 1),
                values.train_batch,
                values.train_frames,
                values.context_len,
                values.repeats,
                budget_s=values.figure_seconds,
            )
        )
        train["fraction_of_reference"] = _ratio(train["tflops_per_device"], reference)
        report["train"] = train
        _write(report, values.json)
        xla = train["xla_tflop_per_step"]
        print(f"train step ({train['step']}): {train['step_s'] * 1e3:.1f} ms, {train['samples_per_s']:.1f} "
              f"samples/s, {train['latent_frames_per_s']:.0f} frames/s, {train['tflops_per_device']:.3f} TFLOP/s "
              f"= {train['fraction_of_reference']:.0%} of reference ({reference / 1e12:.3f}); FLOPs/step analytic "
              f"backbone {train['analytic_tflop_per_step']:.4f} T, XLA whole step "
              f"{xla if xla is None else round(xla, 4)} T; compile {train['compile_s']:.1f} s")  # fmt: skip
    if "sampler" in values.parts:
        batches = [int(b) for b in values.sampler_batches]
        sampler, reference = _with_reference(
            lambda: bench_sampler(
                config,
                values.sampler_seconds,
                values.sampler_steps,
                batches,
                values.repeats,
                budget_s=values.figure_seconds,
            )
        )
        report["sampler"] = sampler
        for key in ("guidance_5", "guidance_1"):
            s = sampler[key]
            print(f"sampler {key}: first audio {s['time_to_first_audio_s']:.2f} s, steady {s['steady_s']:.2f} s "
                  f"(RTF {s['real_time_factor']:.3f}) for {values.sampler_seconds:g} s of audio, "
                  f"{sampler['backbone_calls_per_request']} backbone calls")  # fmt: skip
        for b in batches:
            s = sampler[f"batch_{b}"]
            s["backbone_fraction_of_reference"] = _ratio(s["backbone_tflops"], reference)
            s["vae_fraction_of_reference"] = _ratio(s["vae_decode_tflops"], reference)
            backbone, vae_share = s["backbone_fraction_of_reference"], s["vae_fraction_of_reference"]
            print(f"  batch {b}: backbone call {s['backbone_call_s'] * 1e3:.1f} ms ({backbone:.0%} of reference "
                  f"{reference / 1e12:.3f}), "
                  f"VAE decode {s['vae_decode_s'] * 1e3:.1f} ms ({vae_share:.0%}), "
                  f"{s['audio_seconds_per_s']:.2f} s of audio per s")  # fmt: skip
    _write(report, values.json)  # each part's figures are kept, whatever happens to the next part
    if "scaling" in values.parts:
        report["scaling"] = []
        for mesh in values.meshes:
            shape = tuple(int(x) for x in mesh.split("x"))
            if int(np.prod(shape)) > jax.device_count():
                print(f"scaling {mesh}: skipped ({jax.device_count()} devices)")
                continue
            if (too_big := _host_memory_shortfall(config, shape)) is not None:
                print(f"scaling {mesh}: skipped ({too_big})")
                continue
            row = bench_train(
                config,
                shape,
                values.train_batch,
                values.train_frames,
                values.context_len,
                values.repeats,
                budget_s=values.figure_seconds,
                cross_check=False,  # the same program as the train figure's, partitioned
            )
            report["scaling"].append(row)
            print(
                f"scaling mesh {mesh}: step {row['step_s'] * 1e3:.1f} ms, {row['tflops_per_device']:.3f} TFLOP/s/device"
            )
    _write(report, values.json)


if __name__ == "__main__":
    _define_flags()
    cli.run(main)
