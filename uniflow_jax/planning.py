"""Fit and speed on hardware this host does not have: the real programs compiled ahead of time for a TPU slice.

``train_program`` lowers the train step ``python -m uniflow_jax.train`` runs (``training.step.CompiledSteps``:
the config's shardings, remat policy, gradient accumulation, donated state) and ``sampler_program`` the jitted
sampler + VAE decode ``python -m uniflow_jax.sample`` runs (``inference.generator.Generator``), both on abstract
inputs (shapes and shardings: no weights, no data). ``analyse`` compiles one for the slice's devices and reads
the TPU compiler's own memory and cost analyses: per-chip memory against the chip's HBM, FLOPs beside our
analytic count, bytes accessed, and the roofline lower bound on the step time and the MFU ceiling it implies.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from uniflow_jax import config_lib, hardware, nnx_utils, parallel, tasks
from uniflow_jax.data import collate, pipeline
from uniflow_jax.inference.generator import BUCKETS, Generator
from uniflow_jax.models import uniflow
from uniflow_jax.training import flops, objectives, optimizer
from uniflow_jax.training import state as train_state
from uniflow_jax.training import step as train_step

GIB = 2**30


@dataclasses.dataclass
class Program:
    """A lowered program and what it stands for."""

    part: str  # "train" or "sample"
    lowered: jax.stages.Lowered
    analytic_flops: float  # the whole program on all chips (flops.py: the backbone; + the VAE decode when sampling)
    what: dict[str, Any]  # its shapes and settings, as reported
    repeats: int = 1  # of its loop that twins shorten (see :func:`count`)
    depth: int = 0  # the DiT's in- + out-blocks, which twins shorten too


TWIN_DEPTHS = (2, 4)  # the depths of the twins of a deeper DiT (see :func:`count`)
# Attention implementations whose FLOPs the compiler's cost analysis does not see: the splash kernel is a Pallas
# call without a cost estimate, and the tiny sampler counted 0.22 TFLOP with it against 0.37 with XLA's.
UNCOUNTABLE = {"splash": "the Pallas splash kernel carries no cost estimate, so the compiler does not count it"}


def for_accelerator(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The config as it runs on a TPU/GPU: ``dtype="auto"`` is bfloat16 there (this host is a CPU, where
    ``config_lib.compute_dtype`` would pick float32)."""
    config = config.copy_and_resolve_references()
    if config.model.dit.dtype == "auto":
        config.model.dit.dtype = "bfloat16"
    return config


def train_program(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, bucket: int = -1) -> Program:
    """The train step on a global batch of ``train.global_batch_size`` in the config's ``bucket`` (default: the
    largest, the most memory), inputs as the latent cache feeds them (``data.cache``: the frozen encoders ran
    ahead, as large runs are fed)."""
    config = config.copy_and_resolve_references()
    config.data.video_input = "features"
    rules, t = config_lib.mesh_rules(config), config.train
    batch_axes = math.prod(mesh.shape[a] for a in ("data", "fsdp"))
    if t.global_batch_size % (t.grad_accum_steps * batch_axes):
        raise ValueError(
            f"train.global_batch_size {t.global_batch_size} does not divide into {t.grad_accum_steps} micro-batches "
            f"over the mesh's batch axes (data x fsdp = {batch_axes})"
        )
    size = pipeline.buckets_from_config(config.data.buckets)[bucket]
    # Built off the mesh context: optax makes the optimizer state's placeholders eagerly, and eager ops cannot
    # run on devices that are only described.
    with parallel.axis_rules(rules):
        objective = objectives.make(config, mesh, abstract=True)
        make = lambda: objective.make_model(nnx.Rngs(config.seed))  # noqa: E731
        tx, schedule = optimizer.make(config.optimizer), optimizer.learning_rate(config.optimizer)
        spec = train_state.ModelSpec.of(make)
        ema = t.ema_decay > 0
        shardings = train_state.shardings(spec, tx, mesh, rules, ema=ema)
        state = train_state.abstract(make, tx, shardings, ema=ema)
        fn = train_step.make_train_step(
            objective, spec, tx, schedule, grad_accum_steps=t.grad_accum_steps, ema_decay=t.ema_decay
        )
        steps = train_step.CompiledSteps(fn, shardings, objective.frozen, objective)
        # One sample per task has every field at the bucket's sizes; the global batch only repeats rows.
        hop = objective.cfg.vae.hop_length
        context = min(size.phoneme, size.score, size.text)
        rows = collate.synthetic_batch(config, len(tasks.TASKS), size.latent, context, size.sizes(hop))
        batch = {
            k: jax.ShapeDtypeStruct((t.global_batch_size, *v.shape[1:]), v.dtype,
                                    sharding=parallel.batch_sharding(mesh, v.ndim, rules))
            for k, v in rows.items() if k not in pipeline.HOST_KEYS
        }  # fmt: skip
    with jax.set_mesh(mesh), parallel.axis_rules(rules):
        lowered = steps.jitted.lower(state, objective.frozen, batch)
    what = {
        "global_batch": t.global_batch_size,
        "grad_accum_steps": t.grad_accum_steps,
        "latent_frames": objective.latent_frames(batch),
        "remat": objective.cfg.dit.remat,
        "dtype": objective.cfg.dit.dtype,
        "attention": objective.cfg.dit.attention,
    }
    return Program(
        "train", lowered, objective.step_flops(batch), what, repeats=t.grad_accum_steps, depth=objective.cfg.dit.depth
    )


def t2a_request(cfg: uniflow.UniFlowConfig, caption_tokens: int = 12) -> dict[str, Any]:
    """A text-to-audio request as the sampler sees it (the shapes matter, not the values)."""
    return {
        "task": "text_to_audio",
        "text_ids": np.full(caption_tokens, 3, np.int32),
        "instruction": np.zeros((16, cfg.t5.d_model), np.float32),
    }


def sampler_program(
    config: ml_collections.ConfigDict,
    mesh: jax.sharding.Mesh,
    *,
    batch: int = 8,
    seconds: float = 10.0,
    steps: int = 25,
    guidance: float = 5.0,
) -> Program:
    """The sampler + VAE decode of ``batch`` text-to-audio requests of ``seconds`` each."""
    cfg = config_lib.uniflow_config(config)
    rules = config_lib.mesh_rules(config)
    frames = round(seconds * cfg.vae.latent_rate)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    with jax.set_mesh(mesh), parallel.axis_rules(rules):
        model = nnx_utils.abstract_sharded(lambda: uniflow.UniFlow(cfg, rngs=nnx.Rngs(0)), mesh, rules)
        frozen = nnx_utils.abstract_sharded(lambda: uniflow.FrozenEncoders(cfg, rngs=nnx.Rngs(0)), mesh, rules)
        generator = Generator(cfg, model, frozen)
        requests = [t2a_request(cfg) for _ in range(batch)]
        lowered = generator.lower(requests, frames=frames, num_steps=steps, guidance_scale=guidance,
                                  sharding=replicated)  # fmt: skip
    rows, padded = BUCKETS.size("batch", batch), BUCKETS.size("latent", frames)
    context = BUCKETS.size("text", 12)
    calls = rows * (2 if guidance > 1 else 1)  # guidance runs the conditional and unconditional rows together
    analytic = steps * flops.dit_forward_flops(cfg.dit, calls, padded, context)
    analytic += flops.vae_decode_flops(cfg.vae, rows, padded)
    what = {"batch": batch, "audio_seconds": seconds, "steps": steps, "guidance": guidance,
            "latent_frames": padded, "dtype": cfg.dit.dtype, "attention": cfg.dit.attention}  # fmt: skip
    return Program("sample", lowered, analytic, what, repeats=steps, depth=cfg.dit.depth)


def _out_of_memory(error: Exception) -> str | None:
    """The TPU compiler's message when it refused a program for memory, else None."""
    text = str(error).strip()
    if "RESOURCE_EXHAUSTED" in text or "Ran out of memory" in text:
        return next((line for line in text.splitlines() if "memory" in line.lower()), text.splitlines()[0])[:400]
    return None


def _cost(compiled: Any) -> tuple[float, float]:
    """(FLOPs, bytes accessed) per chip from a compiled program's cost analysis."""
    cost = compiled.cost_analysis()
    cost = (cost[0] if cost else {}) if isinstance(cost, list | tuple) else (cost or {})
    return float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0))


# The TPU compiler's windowed einsum splits a matmul over sharded operands (fsdp's) into per-shard steps of a
# loop of its own, which its cost analysis counts once (`base` fsdp over 16 v5e chips counted 0.47 of the
# analytic FLOPs); the twins are compiled with it off: the same FLOPs, counted whole.
WHOLE_MATMULS = {
    "xla_tpu_enable_windowed_einsum_for_all_gather": False,
    "xla_tpu_enable_windowed_einsum_for_reduce_scatter": False,
}


class CompilerLoops(ValueError):
    """A twin's compiled program has loops the traced one had not: its cost analysis would undercount."""


def _compiler_loops(hlo_text: str) -> list[str]:
    """The ops (their ``op_name``) that the compiler turned into ``while`` loops of its own in a compiled
    program's HLO text. A traced loop (``lax.scan``, ``while_loop``) keeps its ``.../while`` name; the windowed
    einsum's loops are named after the matmul or convolution they split. Compared by name, not by number: a
    function called twice is traced once but compiled twice."""
    loops = [line for line in hlo_text.splitlines() if ") while(" in line]
    names = [found.group(1) if (found := re.search(r'op_name="([^"]*)"', line)) else "" for line in loops]
    return [name for name in names if name.rsplit("/", 1)[-1] not in ("while", "scan")]


def twin_shapes(program: Program) -> list[tuple[int, int]]:
    """The (repeats, depth) of the twins that count ``program`` (see :func:`count`)."""
    repeats = [1] if program.repeats == 1 else [1, 2]
    depths = [program.depth] if program.depth <= TWIN_DEPTHS[-1] else list(TWIN_DEPTHS)
    return [(r, d) for d in depths for r in repeats]


def count(program: Program, twins: Sequence[Program]) -> tuple[float, float]:
    """(FLOPs, bytes accessed) per chip of ``program``, from the TPU compiler's cost analysis of its twins.

    XLA's cost analysis counts a loop body once, so a twin is the same program traced inside
    ``nnx_utils.loops_unrolled``. The loops that would make it huge are shortened instead, and the cost is
    linear in each: the program's n repeats (the train step's micro-batches, the sampler's ODE steps) cost
    F(1) + (n − 1)·(F(2) − F(1)) from twins with 1 and 2 repeats, and a DiT of depth L (in- + out-blocks)
    costs F(2) + (L − 2)·(F(4) − F(2)) / 2 from twins of depths 2 and 4. Unrolled at full depth, the twin of
    ``small``'s step did not compile in 15 minutes here; the four shortened twins of a sampler compile in 8."""

    def along(points: dict[int, np.ndarray], x: int) -> np.ndarray:
        if len(points) == 1:
            return next(iter(points.values()))
        (x1, f1), (x2, f2) = sorted(points.items())
        return f1 + (x - x1) * (f2 - f1) / (x2 - x1)

    by_depth: dict[int, dict[int, np.ndarray]] = {}
    for twin in twins:
        compiled = twin.lowered.compile(compiler_options=WHOLE_MATMULS)
        if made := _compiler_loops(compiled.as_text()):
            raise CompilerLoops(
                f"the TPU compiler made {len(made)} loops of its own in the unrolled twin (even with "
                f"planning.WHOLE_MATMULS; e.g. of {made[0] or 'an unnamed op'}), and its cost analysis counts a "
                "loop body once"
            )
        by_depth.setdefault(twin.depth, {})[twin.repeats] = np.array(_cost(compiled))
    flops_, bytes_ = along({d: along(costs, program.repeats) for d, costs in by_depth.items()}, program.depth)
    return float(flops_), float(bytes_)


def analyse(
    program: Program, twins: Sequence[Program], chip: hardware.Chip, chips: int, *, memory: bool = True
) -> dict[str, Any]:
    """Compiles ``program`` and reads the compiler's analyses, per chip.

    Memory (``memory``: else not compiled, e.g. for a program whose memory is known): ``fits`` when the compiler
    accepted it and its peak (where it reports one, else arguments + outputs − aliased (donated) + temporaries
    + generated code) ≤ the chip's HBM; a program the compiler refuses for memory gets ``fits`` False and its
    message in ``error``. FLOPs and bytes accessed: from ``twins`` (see :func:`count`; none: not counted).
    ``compiled`` is the executable (for ``--save``)."""
    out: dict[str, Any] = {"part": program.part, **program.what, "chips": chips, "chip": chip.name}
    out["analytic_tflop"] = program.analytic_flops / 1e12
    if memory:
        out.update(_memory(program, chip))
        if "error" in out:
            return out
    if twins:
        out.update(_speed(program, twins, chip, chips))
    return out


def _memory(program: Program, chip: hardware.Chip) -> dict[str, Any]:
    """The compiled program's memory per chip against the chip's HBM, or the compiler's refusal."""
    start = time.perf_counter()
    try:
        compiled = program.lowered.compile()
    except Exception as e:  # the TPU compiler refuses a program that does not fit in HBM
        if (message := _out_of_memory(e)) is None:
            raise
        out = dict(compile_s=time.perf_counter() - start, fits=False, error=message)
        numbers = re.search(r"\(([\d.]+)G\) exceeds available HBM \(([\d.]+)G\)", message) or re.search(
            r"Used ([\d.]+)G of ([\d.]+)G", message
        )
        if numbers:  # what the compiler says it needs (temporaries alone, or all) and what it had
            out.update(required_gib=float(numbers.group(1)), available_gib=float(numbers.group(2)))
        return out
    out: dict[str, Any] = {"compile_s": time.perf_counter() - start}
    analysis = compiled.memory_analysis()
    sizes = {
        name: getattr(analysis, f"{name}_size_in_bytes", 0) or 0
        for name in ("argument", "output", "alias", "temp", "generated_code")
    }
    summed = sizes["argument"] + sizes["output"] - sizes["alias"] + sizes["temp"] + sizes["generated_code"]
    # The compiler's own peak where it reports one, not the sum of the sizes: the TPU compiler accepted train
    # steps whose temporaries alone exceed the chip's HBM (not all live at once), and for the tiny sampler its
    # peak is above the sum (memory the sizes do not list).
    peak = getattr(analysis, "peak_memory_in_bytes", 0) or 0
    total, hbm = peak or summed, chip.hbm_gib * GIB
    out.update({f"{name}_gib": value / GIB for name, value in sizes.items()})
    out.update(summed_gib=summed / GIB, memory_basis="peak" if peak else "sum")
    out.update(total_gib=total / GIB, hbm_gib=chip.hbm_gib, fits=total <= hbm, margin_gib=(hbm - total) / GIB)
    out["compiled"] = compiled
    return out


def _speed(program: Program, twins: Sequence[Program], chip: hardware.Chip, chips: int) -> dict[str, Any]:
    """FLOPs and bytes per step from the twins, the roofline lower bound on the step time, the MFU ceiling."""
    start = time.perf_counter()
    try:
        per_chip_flops, per_chip_bytes = count(program, twins)
    except CompilerLoops as e:
        return dict(count_s=time.perf_counter() - start, not_counted=str(e))
    peak, bandwidth = chip.peak_tflops * 1e12, chip.hbm_gbps * 1e9
    compute_s, memory_s = per_chip_flops / peak, per_chip_bytes / bandwidth
    roofline = max(compute_s, memory_s)
    # The useful FLOPs: our analytic count (no remat recomputation), or the compiler's where it is smaller — the
    # sampler's analytic count runs ~3 % above the compiler's, which on a compute-bound chip read as an MFU
    # ceiling over 100 %.
    useful = min(program.analytic_flops, per_chip_flops * chips)
    return dict(
        count_s=time.perf_counter() - start,
        compiler_tflop=per_chip_flops * chips / 1e12,
        compiler_over_analytic=per_chip_flops * chips / program.analytic_flops,
        bytes_accessed_gib=per_chip_bytes / GIB,
        bound="compute" if compute_s >= memory_s else "memory",
        roofline_s=roofline,
        mfu_ceiling=useful / chips / peak / roofline if roofline else float("nan"),
    )


def plan(
    config: ml_collections.ConfigDict,
    slice_name: str,
    *,
    part: str = "train",
    num_slices: int = 1,
    counted: bool = True,
    memory: bool = True,
    bucket: int = -1,
    sampler: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Compiles the train step (on the whole slice, the config's mesh) or the sampler (on one chip of it) for
    a TPU slice and returns the figures of :func:`analyse`, with the slice, mesh and roofline inputs.
    ``counted``: FLOPs and bytes from the twins; ``memory``: the program itself compiled for its memory."""
    tpu = hardware.slice_named(slice_name)
    config = for_accelerator(config)
    devices = list(hardware.tpu_devices(tpu, num_slices))
    if part == "train":
        mesh = parallel.make_mesh(config.mesh.shape, devices)
        accum = config.train.grad_accum_steps

        def build(config: ml_collections.ConfigDict, repeats: int | None = None) -> Program:
            if repeats is not None:  # micro-batches of the same size, ``repeats`` of them
                config.train.global_batch_size = config.train.global_batch_size // accum * repeats
                config.train.grad_accum_steps = repeats
            return train_program(config, mesh, bucket)
    elif part == "sample":
        mesh = parallel.make_mesh((1, 1, 1), devices[:1])
        settings = dict(sampler or {})

        def build(config: ml_collections.ConfigDict, repeats: int | None = None) -> Program:
            return sampler_program(config, mesh, **{**settings, **({} if repeats is None else {"steps": repeats})})
    else:
        raise ValueError(f"part must be train or sample, got {part!r}")
    program = build(config)
    uncountable = UNCOUNTABLE.get(program.what["attention"]) if counted else None
    counted = counted and not uncountable
    twins = []
    for repeats, depth in twin_shapes(program) if counted else []:
        twin = config.copy_and_resolve_references()
        twin.model.dit.depth = depth
        with nnx_utils.loops_unrolled():
            twins.append(build(twin, repeats))
    chips = mesh.devices.size
    figures = analyse(program, twins, tpu.chip, chips, memory=memory)
    figures.update(
        slice=slice_name if part == "train" else f"1 chip of {slice_name}",
        num_slices=num_slices,
        mesh=dict(mesh.shape),
        chip_peak_tflops=tpu.chip.peak_tflops,
        chip_hbm_gbps=tpu.chip.hbm_gbps,
        chip_source=tpu.chip.source,
    )
    if uncountable:
        figures["not_counted"] = uncountable
    return figures


def describe(figures: Mapping[str, Any]) -> str:
    """The figures of :func:`plan` as a few lines for the console."""
    f = figures

    def gib(x: float) -> str:
        return f"{x:.2f} GiB"

    mesh = " ".join(f"{k}={v}" for k, v in f["mesh"].items())
    if f["part"] == "train":
        head = (f"train step on {f['slice']} ({f['chips']} x {f['chip']}, mesh {mesh}): global batch "
                f"{f['global_batch']} x {f['latent_frames']} latent frames, grad accum {f['grad_accum_steps']}, "
                f"remat {f['remat']}, {f['dtype']}, {f['attention']} attention")  # fmt: skip
    else:
        head = (f"sampler on {f['slice']} ({f['chip']}): text-to-audio, batch {f['batch']} x "
                f"{f['audio_seconds']:g} s ({f['latent_frames']} latent frames), {f['steps']} steps, guidance "
                f"{f['guidance']:g}, {f['dtype']}, {f['attention']} attention")  # fmt: skip
    lines = [head]
    if "compile_s" not in f:
        lines.append("  memory: not compiled (--memory=false)")
    elif "error" in f:
        lines += [f"  compiled in {f['compile_s']:.1f} s", f"  DOES NOT FIT: the compiler refused it: {f['error']}"]
        return "\n".join(lines)
    else:
        verdict = "fits" if f["fits"] else "DOES NOT FIT"
        basis = "the compiler's peak" if f.get("memory_basis") == "peak" else "their sum"
        lines += [
            f"  compiled in {f['compile_s']:.1f} s",
            f"  memory per chip: arguments {gib(f['argument_gib'])}, outputs {gib(f['output_gib'])} (aliased "
            f"{gib(f['alias_gib'])}), temporaries {gib(f['temp_gib'])}, generated code "
            f"{gib(f['generated_code_gib'])} -> {basis} {gib(f['total_gib'])} of {f['hbm_gib']:g} GiB HBM: "
            f"{verdict} (margin {gib(f['margin_gib'])})",
        ]
    if "not_counted" in f:
        lines.append(f"  FLOPs and bytes: not counted ({f['not_counted']})")
    if "compiler_tflop" in f:
        unit = "step" if f["part"] == "train" else "batch"
        lines += [
            f"  FLOPs per {unit}: compiler {f['compiler_tflop']:.2f} TFLOP, analytic {f['analytic_tflop']:.2f} TFLOP "
            f"(compiler / analytic {f['compiler_over_analytic']:.2f}); bytes accessed per chip "
            f"{gib(f['bytes_accessed_gib'])} (counted in {f['count_s']:.0f} s)",
            f"  roofline: >= {f['roofline_s'] * 1e3:.1f} ms per {unit} ({f['bound']}-bound; {f['chip']} "
            f"{f['chip_peak_tflops']:g} TFLOP/s bf16, {f['chip_hbm_gbps']:g} GB/s, {f['chip_source']}); "
            f"MFU ceiling {f['mfu_ceiling']:.0%}",
        ]
        if f["part"] == "sample":
            lines.append(f"  real-time factor bound: {f['roofline_s'] / (f['batch'] * f['audio_seconds']):.5f}")
    return "\n".join(lines)
