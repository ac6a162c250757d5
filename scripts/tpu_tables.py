"""The README's TPU tables: ``python scripts/tpu_tables.py [--jobs 2] [--out docs/tpu_plans]``.

Every row is one run of ``python -m uniflow_jax.aot`` (its JSON kept in ``--out``; a row already there is not
compiled again, so an interrupted run resumes), then the tables replace the README's section between the
``tpu-tables`` markers. Train rows: the recipe's global batch 192 on the largest bucket (20 s), the config's
remat, first on a data-parallel mesh, then (where that does not fit) fully sharded, then with gradient
accumulation (see ``_series``). Then the smallest v5e slice that fits ``large`` without accumulation and the
remat policy as a choice. Sampler rows: T2A 10 s, batch 8, 25 steps, guidance 5 on one chip of each kind.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
SIZES = ("small", "base", "large")
SLICES = ("v5e-8", "v5e-16", "v5p-8", "v6e-8")
BATCH = 192  # the recipe's global batch (config_lib.base_config)
CHIPS = ("v5e-1", "v5p-2", "v6e-1")  # one chip of each kind
START, END = "<!-- tpu-tables:start -->", "<!-- tpu-tables:end -->"


def _run(out: pathlib.Path, name: str, args: list[str]) -> dict:
    """One ``aot`` run (or its kept JSON)."""
    path = out / f"{name}.json"
    if not path.exists():
        start = time.time()
        cmd = [sys.executable, "-m", "uniflow_jax.aot", *args, f"--json={path}"]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{name}: {' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
        print(f"{name}: {time.time() - start:.0f} s", flush=True)
    return json.loads(path.read_text())


FSDP = "--config.mesh.shape=(1,-1,1)"
MEMORY_ONLY = "--count=false"


def _series(out: pathlib.Path, name: str, args: list[str]) -> list[dict]:
    """The step on a data-parallel mesh; where it does not fit, with the most gradient accumulation the batch
    allows (micro-batches must divide every chip's rows). Memory only (each row is one compile)."""
    rows = [_run(out, f"{name}-data", [*args, MEMORY_ONLY])]
    per_chip = BATCH // rows[-1]["chips"]
    most = per_chip & -per_chip  # the largest power of two dividing a chip's rows
    if not rows[-1]["fits"] and most > 1:
        accum = f"--config.train.grad_accum_steps={most}"
        rows.append(_run(out, f"{name}-data-accum{most}", [*args, MEMORY_ONLY, accum]))
    return rows


def collect(out: pathlib.Path, jobs: int) -> dict[str, list[dict]]:
    out.mkdir(parents=True, exist_ok=True)
    work = {}

    def one(key: str, name: str, args: list[str]) -> None:
        work[key] = pool.submit(lambda: [_run(out, name, args)])

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for size in SIZES:  # counted: FLOPs, bytes, roofline; on the chip with the most HBM
            one(f"counted/{size}", f"counted-{size}-v5p-8", [f"--config=configs/{size}.py", "--topology=v5p-8"])
        for size in SIZES:
            for tpu in SLICES:
                args = [f"--config=configs/{size}.py", f"--topology={tpu}"]
                work[f"train/{size}/{tpu}"] = pool.submit(_series, out, f"train-{size}-{tpu}", args)
        small = ["--config=configs/small.py", "--topology=v5e-16", MEMORY_ONLY]
        one("choice/fsdp", "train-small-v5e-16-fsdp", [*small, FSDP])
        one("choice/remat-full", "choice-small-v5e-16-remat-full", [*small, "--config.model.dit.remat=full"])
        one("choice/remat-none", "choice-small-v5e-16-remat-none", [*small, "--config.model.dit.remat=none"])
        for size in SIZES:
            one(f"sample/{size}/v5e-1", f"sample-{size}-v5e-1", [f"--config=configs/{size}.py", "--topology=v5e-1",
                                                                 "--part=sample"])  # fmt: skip
        for size in SIZES:
            for chip in CHIPS[1:]:
                args = [f"--config=configs/{size}.py", f"--topology={chip}", "--part=sample", MEMORY_ONLY]
                one(f"sample/{size}/{chip}", f"sample-{size}-{chip}", args)
        return {key: future.result() for key, future in work.items()}


def _gib(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}"


def _mesh(mesh: dict) -> str:
    return "×".join(f"{v}" for v in mesh.values()) + " (" + "/".join(k for k in mesh) + ")"


def train_table(rows: list[tuple[str, dict]]) -> list[str]:
    lines = [
        "| model | slice | mesh | remat | micro-batches | memory per chip (GiB) | fits | compiler / analytic TFLOP "
        "per step | roofline step (s) | MFU ceiling | compile (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size, f in rows:
        if "error" in f:
            fits = "no"
            memory = f"> {f['required_gib']:.1f} of {f['available_gib']:.2f}" if "required_gib" in f else "—"
            flops = roofline = mfu = "—"
        else:
            memory, fits = f"{_gib(f['total_gib'])} of {f['hbm_gib']:g}", "yes" if f["fits"] else "no"
            flops = f"{f['compiler_tflop']:.0f} / {f['analytic_tflop']:.0f}" if "compiler_tflop" in f else "—"
            roofline = f"{f['roofline_s']:.2f} ({f['bound']})" if "roofline_s" in f else "—"
            mfu = f"{f['mfu_ceiling']:.0%}" if "mfu_ceiling" in f else "—"
        lines.append(
            f"| {size} | {f['slice']} | {_mesh(f['mesh'])} | {f['remat']} | {f['grad_accum_steps']} | {memory} | "
            f"{fits} | {flops} | {roofline} | {mfu} | {f['compile_s']:.0f} |"
        )
    return lines


def sampler_table(rows: list[tuple[str, dict]]) -> list[str]:
    lines = [
        "| model | chip | memory (GiB) | fits | compiler / analytic TFLOP per batch | roofline per batch (s) | "
        "RTF bound | MFU ceiling | compile (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size, f in rows:
        rtf = f["roofline_s"] / (f["batch"] * f["audio_seconds"])
        lines.append(
            f"| {size} | {f['chip']} | {_gib(f['total_gib'])} of {f['hbm_gib']:g} | {'yes' if f['fits'] else 'no'} | "
            f"{f['compiler_tflop']:.1f} / {f['analytic_tflop']:.1f} | {f['roofline_s']:.3f} ({f['bound']}) | "
            f"{rtf:.5f} | {f['mfu_ceiling']:.0%} | {f['compile_s']:.0f} |"
        )
    return lines


def _rows(results: dict[str, list[dict]], prefix: str) -> list[tuple[str, dict]]:
    return [(f["config"], f) for key, rows in results.items() if key.startswith(prefix) for f in rows]


def render(results: dict[str, list[dict]]) -> str:
    counted, train, extra = _rows(results, "counted/"), _rows(results, "train/"), _rows(results, "choice/")
    sample = _rows(results, "sample/")
    return "\n".join([
        "Train step, global batch 192 on the largest bucket (20 s = 1000 latent frames), bf16, counted (FLOPs and",
        "bytes from the unrolled twins) on v5p-8:",
        "",
        *train_table(counted),
        "",
        "Memory on every slice (data-parallel; where it does not fit, the most gradient accumulation the batch",
        "allows):",
        "",
        *train_table(train),
        "",
        "Choices that matter (`small` on v5e-16): fully sharded (fsdp) instead of data-parallel, and the remat policy:",
        "",
        *train_table(extra),
        "",
        "Sampler + VAE decode on one chip (text-to-audio, batch 8 × 10 s, 25 steps, guidance 5, bf16):",
        "",
        *sampler_table(sample),
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="aot runs at once")
    parser.add_argument("--out", default="docs/tpu_plans", help="where each row's JSON is kept")
    parser.add_argument("--readme", default="README.md", help="the file whose tpu-tables section is replaced")
    args = parser.parse_args()
    results = collect(ROOT / args.out, args.jobs)
    readme = ROOT / args.readme
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme} has no {START} ... {END} section")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{render(results)}\n{END}{tail}")
    print(f"wrote the tables into {readme}")


if __name__ == "__main__":
    main()
