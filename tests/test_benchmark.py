"""The benchmark's timing rule. (Its train-step and sampler figures run in tests/test_accelerator_check.py, through
``scripts/accelerator_check.sh --cpu-smoke``; the train step on every mesh shape in tests/training/test_train.py.)"""

import math

import pytest

from uniflow_jax import benchmark


@pytest.mark.parametrize(("budget_s", "calls"), [(math.inf, 5), (25.0, 3), (15.0, 2), (0.0, 2)])
def test_timed_stops_once_the_budget_is_spent_after_two_calls(monkeypatch, budget_s, calls):
    clock = {"now": 0.0, "calls": 0}

    def call():  # each call takes 10 s of a fake clock
        clock["now"] += 10.0
        clock["calls"] += 1

    monkeypatch.setattr(benchmark.time, "perf_counter", lambda: clock["now"])
    assert benchmark.timed(call, 5, warm_up=False, budget_s=budget_s) == 10.0
    assert clock["calls"] == calls
