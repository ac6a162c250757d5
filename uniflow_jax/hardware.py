"""The accelerators we plan for: each chip's data-sheet figures, and TPU slices by the names users rent them by.

One home for the numbers MFU, the roofline bound and "fits / does not fit" are quoted against (the training
loop, ``benchmark``, ``aot`` and ``scripts/accelerator_check.sh`` all read them here). Peaks are dense (no
sparsity) bf16 FLOP/s; MFU is quoted against the bf16 figure even for f32 runs (the usual convention).

A slice name (``v5e-16``, ``v5p-8``, ``v6e-8``) maps to JAX's topology string and the chips of one host, as
``jax.experimental.topologies.get_topology_desc`` wants them: with ``libtpu`` installed (the ``tpu`` extra),
that gives the slice's devices on any host, and a mesh over them compiles any jitted function for it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str
    peak_tflops: float  # dense bf16, per chip
    hbm_gib: float  # memory per chip, as the vendor states it (GB taken as GiB, the conservative reading)
    hbm_gbps: float  # memory bandwidth per chip, GB/s
    kinds: tuple[str, ...]  # lower-case substrings of ``jax.Device.device_kind`` that name this chip
    source: str


# Most specific first: TPU v5e reports itself as "TPU v5 lite", v5p as "TPU v5", v6e as "TPU v6 lite".
CHIPS: tuple[Chip, ...] = (
    Chip("TPU v5e", 197.0, 16.0, 819.0, ("v5 lite", "v5lite", "v5e"), "cloud.google.com/tpu/docs/v5e"),
    Chip("TPU v6e", 918.0, 32.0, 1640.0, ("v6 lite", "v6lite", "v6e"), "cloud.google.com/tpu/docs/v6e"),
    Chip("TPU v5p", 459.0, 95.0, 2765.0, ("v5p", "tpu v5"), "cloud.google.com/tpu/docs/v5p"),
    Chip("TPU v4", 275.0, 32.0, 1200.0, ("tpu v4",), "cloud.google.com/tpu/docs/v4"),
    Chip("H100 PCIe", 756.0, 80.0, 2000.0, ("h100 pcie",), "NVIDIA H100 data sheet"),
    Chip("H100", 989.0, 80.0, 3350.0, ("h100",), "NVIDIA H100 data sheet (SXM)"),
    Chip("H200", 989.0, 141.0, 4800.0, ("h200",), "NVIDIA H200 data sheet"),
    Chip("A100", 312.0, 80.0, 2039.0, ("a100",), "NVIDIA A100 data sheet (SXM, 80 GB)"),
)


def chip_for_kind(device_kind: str) -> Chip | None:
    """The chip a ``device_kind`` string names, or None (CPU, or an accelerator not in the table)."""
    kind = device_kind.lower()
    return next((chip for chip in CHIPS if any(p in kind for p in chip.kinds)), None)


def device_peak_flops(device: Any, override: float | None = None) -> float | None:
    """Peak FLOP/s of one chip for MFU: ``override`` (FLOP/s) when given, else the table; None on CPU or an
    unknown accelerator. ``device``: anything with ``device_kind`` and, optionally, ``platform``."""
    if override is not None:
        return float(override)
    if getattr(device, "platform", None) == "cpu":
        return None
    chip = chip_for_kind(str(getattr(device, "device_kind", "")))
    return None if chip is None else chip.peak_tflops * 1e12


@dataclasses.dataclass(frozen=True)
class Slice:
    """A TPU slice as Cloud TPU names it, and what JAX's topology API needs to give its devices."""

    name: str  # e.g. "v5e-16", "v5p-8" (v5p and v4 count TensorCores: 2 per chip)
    chip: Chip
    topology: str  # JAX's topology string, e.g. "v5e:4x4", "v5:2x2x1"
    chip_config: str  # "default", or "megacore" (v4/v5p: a chip's two TensorCores as one device)
    chips_per_host: tuple[int, int, int]

    @property
    def chips(self) -> int:
        return math.prod(int(x) for x in self.topology.split(":")[1].split("x"))


# Generation → (chip, JAX's topology prefix, chip config, TensorCores per chip in the name, 2-D or 3-D torus).
_GENERATIONS = {
    "v5e": ("TPU v5e", "v5e", "default", 1, 2),
    "v6e": ("TPU v6e", "v6e", "default", 1, 2),
    "v5p": ("TPU v5p", "v5", "megacore", 2, 3),
    "v4": ("TPU v4", "v4", "megacore", 2, 3),
}


def _grid(chips: int, dims: int) -> tuple[int, ...]:
    """The slice shape Cloud TPU uses for ``chips`` (a power of two) chips, the last axes the longest:
    2-D v5e-8 → 2x4, v5e-32 → 4x8; 3-D one chip (v5p-2) → 1x1x1, 4 chips → 2x2x1, v5p-16 → 2x2x2, v5p-32 →
    2x2x4, v5p-64 → 2x4x4."""
    k = chips.bit_length() - 1
    if chips < 1 or chips != 2**k or (dims == 3 and chips == 2):
        raise ValueError(f"{chips} chips: one chip or a power of two (v4/v5p: at least 4) are supported")
    if dims == 3 and k == 2:
        return (2, 2, 1)
    exponents = [k // dims + (1 if i >= dims - k % dims else 0) for i in range(dims)]
    return tuple(2**e for e in exponents)


def slice_named(name: str) -> Slice:
    """``v5e-4`` / ``v5e-16`` / ``v5p-8`` / ``v6e-8`` / ``v4-8`` (the number: chips for v5e/v6e, TensorCores
    for v4/v5p, as Cloud TPU counts) → the slice."""
    match = re.fullmatch(r"(v5e|v6e|v5p|v4)-(\d+)", name.strip().lower())
    if not match:
        known = ", ".join(f"{g}-N" for g in _GENERATIONS)
        raise ValueError(f"unknown TPU slice {name!r}: expected {known} (e.g. v5e-16, v5p-8, v6e-8)")
    generation, count = match.group(1), int(match.group(2))
    chip_name, prefix, chip_config, cores, dims = _GENERATIONS[generation]
    if count % cores:
        raise ValueError(f"{name}: {generation} slices count TensorCores, {cores} per chip")
    shape = _grid(count // cores, dims)
    chips = math.prod(shape)
    # One host holds a v5e/v6e slice of up to 8 chips (a 2x4 host), or one chip of any kind; bigger slices: 2x2.
    small = chips == 1 or (dims == 2 and chips <= 8)
    per_host = (*shape[:2], 1) if small else (2, 2, 1)
    chip = next(c for c in CHIPS if c.name == chip_name)
    topology = f"{prefix}:{'x'.join(str(s) for s in shape)}"
    return Slice(name, chip, topology, chip_config, per_host)  # type: ignore[arg-type]


class LibTPUMissing(RuntimeError):
    """Compiling for a TPU topology needs libtpu: ``pip install -e ".[tpu]"``."""


def tpu_devices(slice_: Slice, num_slices: int = 1) -> Sequence[Any]:
    """The devices of ``num_slices`` copies of the slice, from libtpu's topology description (no TPU needed)."""
    # Quiets libtpu's search for TPU hosts on this machine (it is compiling, not running), and lets several
    # processes compile at once (libtpu otherwise takes a machine-wide lock, as it would to own a TPU).
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    accelerator = f"v5litepod-{slice_.chips}" if slice_.chip.name == "TPU v5e" else slice_.name
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", accelerator)
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    try:
        import libtpu  # noqa: F401
    except ImportError as e:
        raise LibTPUMissing(
            'compiling for a TPU slice needs libtpu, the version our jax pins: pip install -e ".[tpu]" '
            '(or pip install "jax[tpu]==<your jax version>")'
        ) from e
    from jax.experimental import topologies

    description = topologies.get_topology_desc(
        platform="tpu",
        topology_name=slice_.topology,
        chip_config_name=slice_.chip_config,
        chips_per_host_bounds=slice_.chips_per_host,
        num_slices=num_slices,
    )
    return description.devices
