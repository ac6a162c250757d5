"""The benchmark's train-step figures: the real ``make_train_step`` on a mesh of the eight devices."""

import math

import pytest

from uniflow_jax import benchmark, config_lib


def test_train_step_figures_on_a_mesh():
    """The real step on a (2, 2, 2) mesh of the eight devices, with XLA's count of the whole step beside the
    analytic backbone count (one mesh: the train tests already run every mesh shape)."""
    config = config_lib.load_config_file("configs/tiny.py")
    mesh = (2, 2, 2)
    row = benchmark.bench_train(config, mesh, batch=4, frames=100, context=16, repeats=1, cross_check=True)
    assert row["mesh"] == list(mesh)
    assert row["step_s"] > 0 and math.isclose(row["samples_per_s"], 4 / row["step_s"])
    assert math.isclose(row["latent_frames_per_s"], 400 / row["step_s"])
    assert math.isclose(row["tflops_per_device"], row["analytic_tflop_per_step"] / row["step_s"] / math.prod(mesh))
    assert row["step"].startswith("training.step.make_train_step") and math.isfinite(row["loss"])
    # XLA counts the whole step (encoders, adapter, loss, AdamW): above the backbone's analytic count
    assert row["xla_tflop_per_step"] > row["analytic_tflop_per_step"]


@pytest.mark.parametrize(("budget_s", "calls"), [(math.inf, 5), (25.0, 3), (15.0, 2), (0.0, 2)])
def test_timed_stops_once_the_budget_is_spent_after_two_calls(monkeypatch, budget_s, calls):
    clock = {"now": 0.0, "calls": 0}

    def call():  # each call takes 10 s of a fake clock
        clock["now"] += 10.0
        clock["calls"] += 1

    monkeypatch.setattr(benchmark.time, "perf_counter", lambda: clock["now"])
    assert benchmark.timed(call, 5, warm_up=False, budget_s=budget_s) == 10.0
    assert clock["calls"] == calls
