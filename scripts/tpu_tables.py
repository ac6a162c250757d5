"""The README's TPU tables: ``python scripts/tpu_tables.py [--jobs 2] [--out docs/tpu_plans] [--only REGEX]``.

Every row is one run of ``python -m uniflow_jax.aot`` (its JSON kept in ``--out``; a row already there is not
compiled again, so an interrupted run resumes; ``--only``: compile just the rows whose names match), then the
tables replace the README's section between the ``tpu-tables`` markers. Train rows: the recipe's global batch
192 on the largest bucket (20 s), the config's remat, a data-parallel mesh, and where that does not fit the
most gradient accumulation the batch allows, then fsdp with it (``Rows.series``); choices (fsdp, remat) on
``small``. Sampler rows: T2A 10 s, batch 8, 25 steps, guidance 5 on one chip of each kind. Every row that fits
is counted too (FLOPs, bytes, roofline, MFU ceiling) by a second run, ``aot --memory=false``, kept in
``--out``/counts: memory and counting are separate compiles, so either can be redone alone.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import pathlib
import re
import signal
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
SIZES = ("small", "base", "large")
SLICES = ("v5e-8", "v5e-16", "v5p-8", "v6e-8")
# Below the slices above, for the smallest v5e slice that holds `large` (it fits v5e-8, fully sharded).
SMALLER = {"large": ("v5e-4", "v5e-2")}
BATCH = 192  # the recipe's global batch (config_lib.base_config)
CHIPS = ("v5e-1", "v5p-2", "v6e-1")  # one chip of each kind
COUNT_GIB = 13  # host memory one count of a train row held here
START, END = "<!-- tpu-tables:start -->", "<!-- tpu-tables:end -->"


@dataclasses.dataclass
class Rows:
    """The ``aot`` runs behind the tables, each kept as JSON in ``out`` (a kept row is not compiled again)."""

    out: pathlib.Path
    render_only: bool = False  # tables from the kept rows only; a row not kept is listed in ``missing``
    only: str = ""  # a regular expression: compile only the rows whose names match it (the others as render_only)
    missing: list[str] = dataclasses.field(default_factory=list)
    uncountable: dict[str, str] = dataclasses.field(default_factory=dict)  # row name: why it was not counted

    def run(self, name: str, args: list[str], count: bool = True) -> dict | None:
        """One ``aot`` run for memory, with its count merged in where it fits and ``count`` (None when it is not
        kept and nothing may be compiled)."""
        row = self._aot(name, [*args, "--count=false"], self.out / f"{name}.json")
        if row is None or not row["fits"] or not count:
            return row
        counts = self._aot(f"{name} (count)", [*args, "--memory=false"], self.out / "counts" / f"{name}.json")
        if counts is not None and "not_counted" in counts:
            self.uncountable[name] = counts["not_counted"]
        return row if counts is None else {**counts, **row}

    def _aot(self, name: str, args: list[str], path: pathlib.Path) -> dict | None:
        """``python -m uniflow_jax.aot ARGS --json=PATH``, or its kept JSON."""
        if not path.exists() and (self.render_only or not re.search(self.only, name)):
            self.missing.append(name)
            return None
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            start = time.time()
            cmd = [sys.executable, "-m", "uniflow_jax.aot", *args, f"--json={path}"]
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if done.returncode != 0:
                why = "failed" if done.returncode > 0 else f"was killed by {signal.Signals(-done.returncode).name}"
                if done.returncode == -signal.SIGKILL:  # nothing in its stderr says so
                    why += f" (the out-of-memory killer, most likely: a count held {COUNT_GIB} GiB here; try --jobs 1)"
                raise RuntimeError(f"{name}: {' '.join(cmd)} {why}:\n{done.stderr[-3000:]}")
            print(f"{name}: {time.time() - start:.0f} s", flush=True)
        return json.loads(path.read_text())

    def series(self, name: str, args: list[str]) -> list[dict]:
        """The step on a data-parallel mesh; where it does not fit, with the most gradient accumulation the
        batch allows (micro-batches must divide every chip's rows); where that does not fit either, fully
        sharded (fsdp: parameters and optimizer state split over the chips) with that accumulation."""
        done = [self.run(f"{name}-data", args)]
        per_chip = BATCH // done[0]["chips"] if done[0] else 1
        most = per_chip & -per_chip  # the largest power of two dividing a chip's rows
        accumulate = f"--config.train.grad_accum_steps={most}"
        if done[-1] and not done[-1]["fits"] and most > 1:
            done.append(self.run(f"{name}-data-accum{most}", [*args, accumulate]))
        if done[-1] and not done[-1]["fits"]:
            done.append(self.run(f"{name}-fsdp-accum{most}", [*args, FSDP, accumulate]))
        return [row for row in done if row is not None]


FSDP = "--config.mesh.shape=(1,-1,1)"
# The Pallas kernel instead of XLA's attention: memory only (planning.UNCOUNTABLE: the compiler does not count it).
SPLASH = "--config.model.dit.attention=splash"


def collect(rows: Rows, jobs: int) -> dict[str, list[dict]]:
    rows.out.mkdir(parents=True, exist_ok=True)
    work = {}

    def one(key: str, name: str, args: list[str], count: bool = True) -> None:
        work[key] = pool.submit(lambda: [row for row in [rows.run(name, args, count)] if row is not None])

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for size in SIZES:
            for tpu in (*SMALLER.get(size, ()), *SLICES):
                args = [f"--config=configs/{size}.py", f"--topology={tpu}"]
                work[f"train/{size}/{tpu}"] = pool.submit(rows.series, f"train-{size}-{tpu}", args)
        small = ["--config=configs/small.py", "--topology=v5e-16"]
        one("choice/fsdp", "train-small-v5e-16-fsdp", [*small, FSDP])
        one("choice/remat-full", "choice-small-v5e-16-remat-full", [*small, "--config.model.dit.remat=full"])
        one("choice/remat-none", "choice-small-v5e-16-remat-none", [*small, "--config.model.dit.remat=none"])
        one("choice/splash", "choice-small-v5e-16-splash", [*small, SPLASH], count=False)
        one("choice/splash-accum4", "choice-small-v5e-16-splash-accum4",
            [*small, SPLASH, "--config.train.grad_accum_steps=4"], count=False)  # fmt: skip
        for size in SIZES:
            for chip in CHIPS:
                args = [f"--config=configs/{size}.py", f"--topology={chip}", "--part=sample"]
                one(f"sample/{size}/{chip}", f"sample-{size}-{chip}", args)
                if chip == "v5e-1":
                    one(f"sample/{size}/{chip}/splash", f"sample-{size}-{chip}-splash", [*args, SPLASH], count=False)
        return {key: future.result() for key, future in work.items()}


def _gib(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}"


def _mesh(mesh: dict) -> str:
    return "×".join(f"{v}" for v in mesh.values()) + " (" + "/".join(k for k in mesh) + ")"


def _cells(f: dict) -> list[str]:
    """Memory, fits, compiler / analytic TFLOP, roofline time, MFU ceiling: "—" where not measured."""
    if "error" in f:  # refused by the compiler: what it said it needed
        memory = f"> {f['required_gib']:.1f} of {f['available_gib']:.2f}" if "required_gib" in f else "—"
        return [memory, "no", "—", "—", "—"]
    counted = "roofline_s" in f
    return [
        f"{_gib(f['total_gib'])}{'' if f.get('memory_basis') == 'peak' else ' Σ'} of {f['hbm_gib']:g}",
        "yes" if f["fits"] else "no",
        f"{f['compiler_tflop']:.1f} / {f['analytic_tflop']:.1f}" if counted else "—",
        f"{f['roofline_s']:.3f} ({f['bound']})" if counted else "—",
        f"{f['mfu_ceiling']:.0%}" if counted else "—",
    ]


def _attention(f: dict) -> str:
    return f.get("attention", "xla")  # rows compiled before the choice existed ran XLA's


def _table(lead: list[str], per: str, tail: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table: the ``lead`` columns, the compiler's figures (``_cells``) per ``per``, the ``tail``."""
    cells = ["memory per chip (GiB)", "fits", f"compiler / analytic TFLOP per {per}", f"roofline per {per} (s)",
             "MFU ceiling"]  # fmt: skip
    head = [*lead, *cells, *tail]
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def train_table(rows: list[tuple[str, dict]]) -> list[str]:
    lead = ["model", "slice", "mesh", "remat", "attention", "micro-batches"]
    return _table(lead, "step", ["compile (s)"], [
        [size, f["slice"], _mesh(f["mesh"]), f["remat"], _attention(f), str(f["grad_accum_steps"]), *_cells(f),
         f"{f['compile_s']:.0f}"]
        for size, f in rows
    ])  # fmt: skip


def sampler_table(rows: list[tuple[str, dict]]) -> list[str]:
    def rtf(f: dict) -> str:
        return f"{f['roofline_s'] / (f['batch'] * f['audio_seconds']):.5f}" if "roofline_s" in f else "—"

    return _table(["model", "chip", "attention"], "batch", ["RTF bound", "compile (s)"], [
        [size, f["chip"], _attention(f), *_cells(f), rtf(f), f"{f['compile_s']:.0f}"] for size, f in rows
    ])  # fmt: skip


def _rows(results: dict[str, list[dict]], prefix: str) -> list[tuple[str, dict]]:
    return [(f["config"], f) for key, rows in results.items() if key.startswith(prefix) for f in rows]


def render(results: dict[str, list[dict]], missing: list[str], uncountable: dict[str, str]) -> str:
    train, extra, sample = _rows(results, "train/"), _rows(results, "choice/"), _rows(results, "sample/")
    lines = [
        "Train step, global batch 192 on the largest bucket (20 s = 1000 latent frames), bf16, on every slice:",
        "data-parallel; where that does not fit, the most gradient accumulation the batch allows; where that",
        'does not fit either, fully sharded (fsdp) with that accumulation. Memory "> X of Y": the compiler',
        "refused the program: X GiB of temporaries (its estimate when it gave up) against Y GiB of usable HBM.",
        "",
        *train_table(train),
        "",
        "Choices that matter (`small` on v5e-16): fully sharded (fsdp) instead of data-parallel, the remat policy,",
        "and the Pallas splash-attention kernel instead of XLA's attention (memory only: the compiler's cost",
        "analysis does not see inside the kernel):",
        "",
        *train_table(extra),
        "",
        "Sampler + VAE decode on one chip (text-to-audio, batch 8 × 10 s, 25 steps, guidance 5, bf16):",
        "",
        *sampler_table(sample),
    ]
    uncounted = sorted(name.removesuffix(" (count)") for name in missing if name.endswith(" (count)"))
    uncompiled = sorted(name for name in missing if not name.endswith(" (count)"))
    if uncompiled:
        lines += ["", f"Not compiled yet (the next row of each): {', '.join(f'`{name}`' for name in uncompiled)}."]
    if uncounted:
        lines += ["", f"Not counted yet (fits; FLOPs still to count): {', '.join(f'`{name}`' for name in uncounted)}."]
    for name, why in sorted(uncountable.items()):
        lines += ["", f"Not counted: `{name}`: {why}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help=f"aot runs at once (each may hold {COUNT_GIB}+ GiB)")
    parser.add_argument("--out", default="docs/tpu_plans", help="where each row's JSON is kept")
    parser.add_argument("--readme", default="README.md", help="the file whose tpu-tables section is replaced")
    parser.add_argument("--render_only", action="store_true", help="tables from the kept rows, compiling nothing")
    parser.add_argument("--only", default="", help="compile only the rows whose names match this regex")
    args = parser.parse_args()
    rows = Rows(ROOT / args.out, render_only=args.render_only, only=args.only)
    results = collect(rows, args.jobs)
    readme = ROOT / args.readme
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme} has no {START} ... {END} section")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{render(results, rows.missing, rows.uncountable)}\n{END}{tail}")
    print(f"wrote the tables into {readme}")


if __name__ == "__main__":
    main()
