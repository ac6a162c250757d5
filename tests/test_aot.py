"""The train step and the sampler compiled ahead of time for a TPU v5e 2x2 slice on this CPU host (planning.py,
python -m uniflow_jax.aot): the TPU compiler's memory and FLOPs, and their agreement with the analytic count.

The analytic count is the backbone's (training/flops.py), so the model here is the tiny config with a wider DiT:
the backbone dominates its FLOPs as it does in every released size (in the tiny config itself the 32-wide
content encoders are a third of the step)."""

import pickle

import pytest

from uniflow_jax import config_lib, hardware, planning
from uniflow_jax.training import step as train_step

NO_LIBTPU = 'libtpu is not installed (pip install -e ".[tpu]"): cannot compile for a TPU'


def _config():
    config = config_lib.load_config_file("configs/tiny.py")
    config.model.dit.update(embed_dim=512, num_heads=8, depth=8)  # deeper than the twins: counted by extrapolation
    config.train.global_batch_size = 4
    return config


@pytest.fixture(scope="module")
def train_figures():
    pytest.importorskip("libtpu", reason=NO_LIBTPU)
    return planning.plan(_config(), "v5e-4", part="train", bucket=1)


@pytest.fixture(scope="module")
def sampler_figures():
    pytest.importorskip("libtpu", reason=NO_LIBTPU)
    settings = dict(batch=1, seconds=2.0, steps=1, guidance=5.0)  # n steps: see test_counts_from_twins
    return planning.plan(_config(), "v5e-4", part="sample", sampler=settings)


def _check_common(f):
    assert f["chip"] == "TPU v5e" and f["hbm_gib"] == 16.0
    for name in ("argument", "output", "generated_code"):
        assert f[f"{name}_gib"] > 0, name
    assert f["summed_gib"] == pytest.approx(
        f["argument_gib"] + f["output_gib"] - f["alias_gib"] + f["temp_gib"] + f["generated_code_gib"]
    )
    # The compiler's peak (not bounded by the sum: it counts memory the sizes above do not list) holds at least
    # the arguments.
    assert f["memory_basis"] == "peak" and f["total_gib"] >= f["argument_gib"]
    assert f["fits"] and f["margin_gib"] == pytest.approx(16.0 - f["total_gib"])
    assert f["analytic_tflop"] > 0 and f["compiler_tflop"] > 0 and f["bytes_accessed_gib"] > 0
    assert f["compiler_tflop"] == pytest.approx(f["analytic_tflop"], rel=0.10)
    peak, bandwidth = 197e12, 819e9
    per_chip_flops = f["compiler_tflop"] * 1e12 / f["chips"]
    assert f["roofline_s"] == pytest.approx(max(per_chip_flops / peak, f["bytes_accessed_gib"] * 2**30 / bandwidth))
    assert 0 < f["mfu_ceiling"] <= 1.0


def test_train_step_for_a_v5e_2x2_slice(train_figures, tmp_path):
    f = train_figures
    assert (f["chips"], f["mesh"], f["dtype"]) == (4, {"data": 4, "fsdp": 1, "tensor": 1}, "bfloat16")
    assert (f["global_batch"], f["latent_frames"], f["remat"]) == (4, 100, "dots")
    assert f["alias_gib"] > 0  # the state is donated: its outputs reuse its arguments' memory
    _check_common(f)
    text = planning.describe(f)
    assert "train step on v5e-4 (4 x TPU v5e, mesh data=4 fsdp=1 tensor=1)" in text and "fits" in text
    assert "xla attention" in text
    path = tmp_path / "step.exe"
    train_step.save_program(f["compiled"], path)  # `train --compiled` loads it on a v5e 2x2 slice
    with open(path, "rb") as file:
        saved = pickle.load(file)
    assert len(saved["executable"]) > 1000 and saved["in_tree"] is not None
    assert saved["meta"]["devices"][0] == 4 and saved["meta"]["batch_rows"] == 4
    assert ("task", (4,), "int32") in saved["meta"]["batch"]
    with pytest.raises(ValueError, match=r"compiled for 4 x TPU v5.*this run has \d+ x cpu"):
        train_step.load_program(path)  # refused here, before jax tries to load it


def test_sampler_on_one_v5e_chip(sampler_figures):
    f = sampler_figures
    assert (f["chips"], f["batch"], f["steps"], f["latent_frames"]) == (1, 1, 1, 100)
    _check_common(f)
    assert "real-time factor bound" in planning.describe(f)


def test_out_of_memory_is_read_from_the_compilers_message():
    message = (
        "RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory space hbm. Used 36.96G "
        "of 15.75G hbm. Exceeded hbm capacity by 21.21G."
    )
    assert "Ran out of memory" in planning._out_of_memory(RuntimeError(message))
    refused = planning.Program("train", type("Lowered", (), {"compile": lambda _: (_ for _ in ()).throw(
        RuntimeError("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO temporaries "
                     "(36.96G) exceeds available HBM (15.75G).")
    )})(), 1e15, {})  # fmt: skip
    f = planning.analyse(refused, [], hardware.slice_named("v5e-8").chip, 8)
    assert (f["fits"], f["required_gib"], f["available_gib"]) == (False, 36.96, 15.75)
    assert "DOES NOT FIT" in planning.describe({**f, "slice": "v5e-8", "mesh": {"data": 8}, "global_batch": 192,
                                                "latent_frames": 1000, "grad_accum_steps": 1, "remat": "dots",
                                                "dtype": "bfloat16", "attention": "xla"})  # fmt: skip
    assert planning._out_of_memory(RuntimeError("INVALID_ARGUMENT: bad sharding")) is None


def test_missing_libtpu_is_a_clear_message(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_libtpu(name, *args, **kwargs):
        if name == "libtpu":
            raise ImportError("No module named 'libtpu'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_libtpu)
    with pytest.raises(hardware.LibTPUMissing, match=r"pip install -e \"\.\[tpu\]\""):
        hardware.tpu_devices(hardware.slice_named("v5e-4"))


def test_counts_from_twins_shortened_in_repeats_and_depth():
    """n micro-batches or ODE steps cost F(1) + (n - 1)(F(2) - F(1)); a DiT of depth L, F(2) + (L - 2)(F(4) - F(2)) / 2:
    bilinear, from the twins' compiled cost analyses."""

    def twin(repeats, depth, flops, bytes_, compiled_hlo="ROOT %t = (f32[]) tuple(%x)"):
        compiled = type("Compiled", (), {"cost_analysis": lambda _: {"flops": flops, "bytes accessed": bytes_},
                                         "as_text": lambda _: compiled_hlo})()  # fmt: skip
        lowered = type("Lowered", (), {"compile": lambda _, compiler_options: compiled})()
        return planning.Program("sample", lowered, 1.0, {}, repeats=repeats, depth=depth)

    def cost(n, depth):  # any a + b L + n (c + d L)
        return 5.0 + 2.0 * depth + n * (3.0 + 0.5 * depth), 50.0 + n * (20.0 + 4.0 * depth)

    program = planning.Program("sample", None, 1.0, {}, repeats=25, depth=28)
    shapes = planning.twin_shapes(program)
    assert shapes == [(1, 2), (2, 2), (1, 4), (2, 4)]
    assert planning.count(program, [twin(n, d, *cost(n, d)) for n, d in shapes]) == pytest.approx(cost(25, 28))
    shallow = planning.Program("train", None, 1.0, {}, repeats=1, depth=4)  # one twin: itself, unrolled
    assert planning.twin_shapes(shallow) == [(1, 4)]
    assert planning.count(shallow, [twin(1, 4, 7.0, 9.0)]) == (7.0, 9.0)
    # A loop the compiler made (fsdp's sharded matmuls as per-shard steps: `base` on 16 v5e chips counted 0.47 of
    # the analytic FLOPs) would be counted once: not counted, and analyse says why. Traced loops are counted (a
    # function called twice, as in a twin with two micro-batches, is traced once and compiled twice).
    loop = '%while.{} = (s32[], bf16[4,512]{{1,0}}) while(%t), condition=%c, body=%b, metadata={{op_name="{}"}}'
    traced = "\n".join(loop.format(i, "jit(train_step)/jvp(jit(searchsorted))/while") for i in range(2))
    assert planning.count(shallow, [twin(1, 4, 7.0, 9.0, traced)]) == (7.0, 9.0)
    looped = twin(1, 4, 7.0, 9.0, f"{traced}\n{loop.format(3, 'jit(train_step)/transpose(jvp())/dot_general')}")
    with pytest.raises(planning.CompilerLoops, match=r"made 1 loops of its own .*of jit\(train_step\)/transpose"):
        planning.count(shallow, [looped])
    figures = planning.analyse(shallow, [looped], hardware.slice_named("v5e-4").chip, 4, memory=False)
    assert "loops of its own" in figures["not_counted"] and "compiler_tflop" not in figures


def test_fully_sharded_step_counts_as_the_data_parallel_one():
    """fsdp over 16 v5e chips (the tiny config, 64 rows): without ``planning.WHOLE_MATMULS`` the compiler split
    its sharded matmuls into 190 loops of its own here, which the cost analysis would count once."""
    pytest.importorskip("libtpu", reason=NO_LIBTPU)
    config = config_lib.load_config_file("configs/tiny.py")
    config.train.global_batch_size = 64
    figures = {}
    for name, shape in (("fsdp", (1, -1, 1)), ("data", (-1, 1, 1))):
        config.mesh.shape = shape
        figures[name] = planning.plan(config, "v5e-16", part="train", bucket=1, memory=False)
    assert figures["fsdp"]["mesh"] == {"data": 1, "fsdp": 16, "tensor": 1}
    assert "not_counted" not in figures["fsdp"], figures["fsdp"].get("not_counted")
    # The same FLOPs; only the optimizer's update differs (each chip updates all parameters in data-parallel).
    assert figures["fsdp"]["compiler_tflop"] == pytest.approx(figures["data"]["compiler_tflop"], rel=0.02)


_FAKED_COMMAND = """
import sys
from uniflow_jax import aot, cli, planning

def fake_plan(config, topology, **kwargs):
    print("plan:", topology, config.model.dit.embed_dim, kwargs["part"], sorted(kwargs["sampler"].items()))
    return {"part": "sample", "slice": "1 chip of v5e-1", "chip": "TPU v5e", "batch": 8, "audio_seconds": 10.0,
            "latent_frames": 500, "steps": 25, "guidance": 5.0, "dtype": "bfloat16", "attention": "xla",
            "compile_s": 1.0,
            "mesh": {"data": 1}, "fits": False, "error": "RESOURCE_EXHAUSTED: Ran out of memory", "compiled": None}

planning.plan = fake_plan
aot._define_flags()
cli.run(aot.main)
"""


def test_the_command_wires_flags_to_the_plan_and_writes_json(tmp_path):
    """``python -m uniflow_jax.aot``'s flags → plan → printed report and --json, the compile faked."""
    import json
    import subprocess
    import sys

    args = ["--config=configs/tiny.py", "--topology=v5e-1", "--part=sample", "--config.model.dit.embed_dim=96",
            f"--json={tmp_path / 'f.json'}"]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", _FAKED_COMMAND, *args], capture_output=True, text=True, check=True)
    expected = "plan: v5e-1 96 sample [('batch', 8), ('guidance', 5.0), ('seconds', 10.0), ('steps', 25)]"
    assert expected in done.stdout and "DOES NOT FIT" in done.stdout
    written = json.loads((tmp_path / "f.json").read_text())
    assert written["fits"] is False and written["config"] == "tiny"
    # --save is the train step's: refused for the sampler before anything is compiled.
    refused = subprocess.run([sys.executable, "-c", _FAKED_COMMAND, *args, f"--save={tmp_path / 's.exe'}"],
                             capture_output=True, text=True)  # fmt: skip
    assert refused.returncode == 1 and "nothing loads a saved sampler" in refused.stderr
    assert "plan:" not in refused.stdout and not (tmp_path / "s.exe").exists()
