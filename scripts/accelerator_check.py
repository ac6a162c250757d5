"""The prepared accelerator check (run by ``scripts/accelerator_check.sh``; see there and the README).

On the machine it runs on: the devices; the parity suite on the device in float32; the tiny config trained in
bfloat16 and float32 (the loss gap); the attention implementation for the backend (cuDNN's fused kernel on a
GPU, the Pallas splash kernel on a TPU, when it matches XLA's and is not slower); the ``small`` benchmark in
bfloat16 (train step, sampler real-time factor, VAE decode) with MFU against the chip's peak. One JSON; exit
status 1 when parity or the loss gap fails.
``--cpu-smoke``: tiny sizes and few steps, so that CI runs the whole path on its CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from uniflow_jax import benchmark, cli, config_lib, hardware, parity
from uniflow_jax.models import layers

ROOT = pathlib.Path(__file__).resolve().parent.parent
# bf16 vs f32 loss, per step, relative. Measured on CPU over the tiny config's 50 steps: max 0.8 %, mean 0.2 % at
# batch 8 x 100 frames; max 1.6 %, mean 0.45 % at the smoke's 2 x 50 (fewer samples, noisier losses).
LOSS_GAP = {"max": 0.03, "mean": 0.01}


def devices() -> dict:
    device = jax.devices()[0]
    chip = hardware.chip_for_kind(device.device_kind)
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    return {
        "backend": jax.default_backend(),
        "count": jax.device_count(),
        "kind": device.device_kind,
        "chip": None if chip is None else chip.name,
        "peak_bf16_tflops": None if chip is None or device.platform == "cpu" else chip.peak_tflops,
        "memory_gib": None if not stats else stats.get("bytes_limit", 0) / 2**30,
        "jax": jax.__version__,
    }


def parity_suite(ref_dir: pathlib.Path | None, smoke: bool) -> dict:
    """``python -m uniflow_jax.parity`` on the device, float32 with full-precision matmuls (TF32 off)."""
    if ref_dir is None:
        return {"passed": None, "skipped": "no fixtures: give --ref_dir (the upstream_ref folder)"}
    components = ["dit"] if smoke else None
    report = io.StringIO()
    start = time.perf_counter()
    with jax.default_matmul_precision("highest"), contextlib.redirect_stdout(report):
        passed = parity.run_parity(ref_dir, components, 1e-4)
    print(report.getvalue(), end="")
    return {"passed": passed, "seconds": time.perf_counter() - start, "report": report.getvalue().splitlines()}


def loss_gap(smoke: bool) -> dict:
    """The tiny config's loss curve in bfloat16 against float32 on this device."""
    config = config_lib.load_config_file(str(ROOT / "configs/tiny.py"))
    steps, batch, frames = (50, 2, 50) if smoke else (50, 8, 100)
    curves = {}
    for dtype in ("float32", "bfloat16"):
        config.model.dit.dtype = dtype
        curves[dtype] = np.array(benchmark.loss_curve(config, steps, batch, frames, context=16))
    gap = np.abs(curves["bfloat16"] - curves["float32"]) / np.abs(curves["float32"])
    return {
        "steps": steps,
        "float32": curves["float32"].tolist(),
        "bfloat16": curves["bfloat16"].tolist(),
        "max_relative_gap": float(gap.max()),
        "mean_relative_gap": float(gap.mean()),
        "within": bool(gap.max() <= LOSS_GAP["max"] and gap.mean() <= LOSS_GAP["mean"]),
        "tolerance": LOSS_GAP,
    }


FUSED = {"cudnn": "gpu", "splash": "tpu"}  # each fused attention kernel and the backend it is made for


def attention(smoke: bool) -> dict:
    """XLA's attention and the fused kernels (cuDNN's, the Pallas splash kernel) on the backbone's shapes (bf16,
    padded keys): a kernel made for this backend is selected when it matches XLA's output within bf16's
    precision and is not slower. Off its backend cuDNN raises, and splash runs in Pallas' interpret mode — only
    in the smoke (minutes at full size)."""
    b, t, h, d = (2, 64, 4, 16) if smoke else (8, 1000, 12, 64)
    keys = jax.random.split(jax.random.key(0), 3)
    q, k, v = (jax.random.normal(key, (b, t, h, d), jnp.bfloat16) for key in keys)
    mask = jnp.arange(t)[None] < jnp.array([t, t // 2] * (b // 2))[:, None]
    backend = jax.default_backend()
    out: dict = {"shape": [b, t, h, d], "selected": "xla"}
    results = {}
    for implementation in ("xla", *FUSED):
        if implementation == "splash" and backend != "tpu" and not smoke:
            continue
        run = jax.jit(lambda q, k, v, m, i=implementation: layers.masked_attention(q, k, v, m, i))
        try:
            results[implementation] = np.asarray(run(q, k, v, mask), np.float32)
        except Exception as error:  # cuDNN: GPU only, and only some shapes
            out[f"{implementation}_error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            continue
        out[f"{implementation}_ms"] = 1e3 * benchmark.timed(lambda r=run: r(q, k, v, mask), 5)
    scale = max(1.0, np.max(np.abs(results["xla"])))
    for name, platform in FUSED.items():
        if name in results:
            out[f"{name}_vs_xla"] = error = float(np.max(np.abs(results[name] - results["xla"])) / scale)
            if platform == backend and error <= 2e-2 and out[f"{name}_ms"] <= out["xla_ms"]:
                out["selected"] = name
    return out


def speed(smoke: bool, attention_implementation: str, peak: float | None) -> dict:
    """``python -m uniflow_jax.benchmark``'s train step, sampler and VAE decode, in bfloat16."""
    config = config_lib.load_config_file(str(ROOT / ("configs/tiny.py" if smoke else "configs/small.py")))
    config.model.dit.dtype, config.model.dit.attention = "bfloat16", attention_implementation
    train = benchmark.bench_train(config, (1, 1, 1), *((2, 50, 16, 1) if smoke else (8, 250, 64, 5)), budget_s=20)
    sampler_args = (1.0, 2, [1], 1) if smoke else (10.0, 25, [1, 8], 3)
    guidances = (5.0,) if smoke else (5.0, 1.0)
    sampler = benchmark.bench_sampler(config, *sampler_args, budget_s=20, guidances=guidances)
    mfu = lambda tflops: None if peak is None else tflops * 1e12 / peak  # noqa: E731
    train["mfu"] = mfu(train["tflops_per_device"])
    for key, figures in sampler.items():
        if key.startswith("batch_"):
            figures["backbone_mfu"], figures["vae_decode_mfu"] = (
                mfu(figures["backbone_tflops"]),
                mfu(figures["vae_decode_tflops"]),
            )
    return {"config": "tiny" if smoke else "small", "dtype": "bfloat16", "train": train, "sampler": sampler}


def _ref_dir(given: str | None) -> pathlib.Path | None:
    candidates = [given] if given else [ROOT / "shared/upstream_ref", ROOT.parent / "shared/upstream_ref"]
    return next((pathlib.Path(c) for c in candidates if c and (pathlib.Path(c) / "dit_config.json").exists()), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes, few steps (CI)")
    parser.add_argument("--out", default="accelerator_check.json", help="the JSON to write")
    parser.add_argument("--ref_dir", default=None, help="upstream_ref fixtures (default: shared/ or ../shared/)")
    args = parser.parse_args()
    start = time.perf_counter()
    report: dict = {"devices": devices()}
    print(f"devices: {report['devices']}", flush=True)
    stages = (
        ("parity", lambda: parity_suite(_ref_dir(args.ref_dir), args.cpu_smoke)),
        ("loss_gap", lambda: loss_gap(args.cpu_smoke)),
        ("attention", lambda: attention(args.cpu_smoke)),
        ("speed", lambda: speed(args.cpu_smoke, report["attention"]["selected"], _peak(report))),
    )
    for name, stage in stages:
        stage_start = time.perf_counter()
        report[name] = stage()
        report[name]["stage_seconds"] = time.perf_counter() - stage_start
        pathlib.Path(args.out).write_text(json.dumps(cli.json_ready(report), indent=1) + "\n")  # kept as it grows
        print(f"{name} ({report[name]['stage_seconds']:.0f} s): {_summary(name, report[name])}", flush=True)
    report["seconds"] = time.perf_counter() - start
    pathlib.Path(args.out).write_text(json.dumps(cli.json_ready(report), indent=1) + "\n")
    print(f"wrote {args.out} ({report['seconds']:.0f} s)")
    ok = report["parity"]["passed"] is not False and report["loss_gap"]["within"]
    sys.exit(0 if ok else 1)


def _peak(report: dict) -> float | None:
    tflops = report["devices"]["peak_bf16_tflops"]
    return None if tflops is None else tflops * 1e12


def _summary(name: str, figures: dict) -> str:
    if name == "parity":
        return "skipped: " + figures["skipped"] if figures["passed"] is None else f"passed={figures['passed']}"
    if name == "loss_gap":
        return (f"bf16 vs f32 over {figures['steps']} steps: max {figures['max_relative_gap']:.2%}, mean "
                f"{figures['mean_relative_gap']:.2%} (within={figures['within']})")  # fmt: skip
    if name == "attention":
        return (
            f"selected {figures['selected']} ({ {k: v for k, v in figures.items() if k.endswith(('_ms', '_error'))} })"
        )
    train, sampler = figures["train"], figures["sampler"]["guidance_5"]
    return (f"train step {train['step_s'] * 1e3:.1f} ms, {train['tflops_per_device']:.2f} TFLOP/s (MFU "
            f"{train['mfu']}); sampler RTF {sampler['real_time_factor']:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
