"""The chip table and TPU slice names (hardware.py)."""

import types

import jax
import pytest

from uniflow_jax import hardware


def _fake(kind: str, platform: str = "gpu"):
    return types.SimpleNamespace(device_kind=kind, platform=platform)


@pytest.mark.parametrize(
    ("kind", "platform", "tflops"),
    [
        ("TPU v4", "tpu", 275),
        ("TPU v5 lite", "tpu", 197),
        ("TPU v5e", "tpu", 197),
        ("TPU v5", "tpu", 459),
        ("TPU v5p", "tpu", 459),
        ("TPU v6 lite", "tpu", 918),
        ("NVIDIA H100 80GB HBM3", "gpu", 989),
        ("NVIDIA H100 PCIe", "gpu", 756),
        ("NVIDIA H200", "gpu", 989),
        ("NVIDIA A100-SXM4-40GB", "gpu", 312),
        ("NVIDIA A100 80GB PCIe", "gpu", 312),
    ],
)
def test_device_peak_flops(kind, platform, tflops):
    assert hardware.device_peak_flops(_fake(kind, platform)) == pytest.approx(tflops * 1e12)


def test_device_peak_flops_unknown_cpu_and_override():
    assert hardware.device_peak_flops(jax.devices("cpu")[0]) is None
    assert hardware.device_peak_flops(_fake("cpu", "cpu")) is None
    assert hardware.device_peak_flops(_fake("Some Future Chip")) is None
    assert hardware.device_peak_flops(jax.devices("cpu")[0], override=1.5e11) == 1.5e11


@pytest.mark.parametrize(
    ("name", "topology", "chip_config", "per_host", "chips"),
    [
        ("v5e-1", "v5e:1x1", "default", (1, 1, 1), 1),
        ("v5e-4", "v5e:2x2", "default", (2, 2, 1), 4),
        ("v5e-8", "v5e:2x4", "default", (2, 4, 1), 8),
        ("v5e-16", "v5e:4x4", "default", (2, 2, 1), 16),
        ("v5e-32", "v5e:4x8", "default", (2, 2, 1), 32),
        ("v6e-8", "v6e:2x4", "default", (2, 4, 1), 8),
        ("v5p-2", "v5:1x1x1", "megacore", (1, 1, 1), 1),
        ("v5p-8", "v5:2x2x1", "megacore", (2, 2, 1), 4),
        ("v5p-16", "v5:2x2x2", "megacore", (2, 2, 1), 8),
        ("v5p-32", "v5:2x2x4", "megacore", (2, 2, 1), 16),
        ("v5p-64", "v5:2x4x4", "megacore", (2, 2, 1), 32),
        ("V4-8", "v4:2x2x1", "megacore", (2, 2, 1), 4),
    ],
)
def test_slice_names_as_cloud_tpu_counts_them(name, topology, chip_config, per_host, chips):
    s = hardware.slice_named(name)
    assert (s.topology, s.chip_config, s.chips_per_host, s.chips) == (topology, chip_config, per_host, chips)


@pytest.mark.parametrize("name", ["v5e-12", "v5p-7", "v7-8", "tpu", "v5p-4"])
def test_unknown_slices_are_refused_with_the_forms_we_know(name):
    with pytest.raises(ValueError, match=r"slice|power of two|TensorCores"):
        hardware.slice_named(name)
