"""Load PyTorch state dicts (original parameter names) into our nnx modules, without torch.

Our parameters carry their PyTorch layout as metadata (see ``models.layers``), so one generic routine
serves every module: it derives each parameter's original name from its path (plus a small per-model
rename table), converts the layout, stacks the per-layer tensors of scanned stacks, and reports every
missing, unexpected or mis-shaped key at once.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from flax import nnx
from safetensors.numpy import load_file

_LAYOUTS = {
    "linear": lambda t: t.T,  # (out, in) -> (in, out)
    "conv": lambda t: t.transpose(2, 1, 0),  # (out, in, k) -> (k, in, out)
    "conv_transpose": lambda t: t.transpose(2, 0, 1),  # (in, out, k) -> (k, in, out)
    "conv2d": lambda t: t.transpose(2, 3, 1, 0),  # (out, in, kh, kw) -> (kh, kw, in, out)
    "plain": lambda t: t,
}
# Inverse layouts, for writing our parameters back under the original names.
_TO_TORCH = {
    "linear": lambda t: t.T,
    "conv": lambda t: t.transpose(2, 1, 0),
    "conv_transpose": lambda t: t.transpose(1, 2, 0),
    "conv2d": lambda t: t.transpose(3, 2, 0, 1),
    "plain": lambda t: t,
}
_LEAF_NAMES = {"kernel": "weight", "scale": "weight", "embedding": "weight"}


class WeightLoadError(ValueError):
    """Raised with the complete list of problems when a state dict does not fit a module."""


@dataclasses.dataclass(frozen=True)
class NameMap:
    """How our parameter paths relate to the original names of one model.

    ``renames``: (regex, replacement) pairs applied to our dotted path, in order.
    ``stacked``: our path prefixes of scanned stacks; the layer index is inserted after them.
    ``prefix``: prepended to every original name (e.g. ``"backbone."``).
    ``aliases``: original names (regexes, after the prefix) that duplicate a loaded tensor and are skipped.
    """

    renames: Sequence[tuple[str, str]] = ()
    stacked: Sequence[str] = ()
    prefix: str = ""
    aliases: Sequence[str] = ()

    def original_name(self, path: tuple, layer: int | None = None) -> str:
        parts = [str(p) for p in path]
        parts[-1] = _LEAF_NAMES.get(parts[-1], parts[-1])
        name = ".".join(parts)
        if layer is not None:
            stack = next(s for s in self.stacked if name.startswith(s + "."))
            name = f"{stack}.{layer}{name[len(stack) :]}"
        for pattern, replacement in self.renames:
            name = re.sub(pattern, replacement, name)
        return self.prefix + name


@dataclasses.dataclass(frozen=True)
class CompositeNameMap:
    """Names for a module made of parts: each (our path prefix, NameMap carrying the original prefix).

    Parameters outside every part keep their own dotted path as the original name.
    """

    parts: Sequence[tuple[tuple[str, ...], NameMap]]
    prefix: str = ""

    @property
    def aliases(self) -> tuple[str, ...]:
        return tuple(re.escape(names.prefix) + alias for _, names in self.parts for alias in names.aliases)

    def original_name(self, path: tuple, layer: int | None = None) -> str:
        for ours, names in sorted(self.parts, key=lambda part: -len(part[0])):
            if tuple(str(p) for p in path[: len(ours)]) == ours:
                return names.original_name(path[len(ours) :], layer)
        return NameMap().original_name(path, layer)


def _variables(state: nnx.State) -> list[tuple[tuple, nnx.Variable]]:
    return list(nnx.to_flat_state(state))


def import_state(
    target: nnx.State, tensors: Mapping[str, np.ndarray], names: NameMap | CompositeNameMap, *, strict: bool = True
) -> nnx.State:
    """Returns ``target`` (abstract or concrete) filled with ``tensors`` converted to our layouts.

    With ``strict``, original keys under ``names.prefix`` that no parameter consumed are errors.
    """
    problems: list[str] = []
    used: set[str] = set()
    flat = []
    for path, var in _variables(target):
        layout = var.get_metadata().get("torch", "plain")
        stacked = bool(var.get_metadata().get("axes")) and var.get_metadata()["axes"][0] == "layers"
        layer_ids = range(var.shape[0]) if stacked else [None]
        shape = var.shape[1:] if stacked else var.shape
        values = []
        for layer in layer_ids:
            key = names.original_name(path, layer)
            if key not in tensors:
                problems.append(f"missing: {key} (for {'/'.join(map(str, path))}, shape {tuple(shape)})")
                continue
            used.add(key)
            array = np.asarray(tensors[key])
            converted = _LAYOUTS[layout](array)
            if converted.shape != tuple(shape):
                if layout == "plain" and converted.size == int(np.prod(shape)):
                    converted = converted.reshape(shape)
                else:
                    problems.append(f"shape mismatch: {key} has {array.shape}, expected {tuple(shape)} ({layout})")
                    continue
            values.append(converted.astype(var.dtype))
        if len(values) == len(layer_ids):
            flat.append((path, var.replace(np.stack(values) if stacked else values[0])))
    if strict:
        aliased = lambda k: any(re.fullmatch(names.prefix + a, k) for a in names.aliases)  # noqa: E731
        extra = sorted(k for k in tensors if k.startswith(names.prefix) and k not in used and not aliased(k))
        problems.extend(f"unexpected: {k} {tuple(np.shape(tensors[k]))}" for k in extra)
    if problems:
        raise WeightLoadError(f"{len(problems)} problem(s) loading weights:\n  " + "\n  ".join(problems))
    return nnx.from_flat_state(flat)


def export_state(state: nnx.State, names: NameMap | CompositeNameMap) -> dict[str, np.ndarray]:
    """Our parameters as a state dict with the original names and layouts (stacks split per layer).

    Vectors keep our shape; ``import_state`` reshapes them back, and PyTorch's ``load_state_dict`` needs
    the original shapes only for weight-norm gains, which are given their (C, 1, 1) shape here.
    """
    out: dict[str, np.ndarray] = {}
    for path, var in _variables(state):
        layout = var.get_metadata().get("torch", "plain")
        value = np.asarray(var.get_value())
        stacked = var.get_metadata().get("axes", (None,))[0] == "layers"
        for layer, array in enumerate(value) if stacked else [(None, value)]:
            array = _TO_TORCH[layout](array)
            if path[-1] == "weight_g":
                array = array.reshape(-1, 1, 1)
            out[names.original_name(path, layer)] = np.ascontiguousarray(array)
    return out


def original_shapes(state: nnx.State, names: NameMap | CompositeNameMap) -> dict[str, tuple[int, ...]]:
    """The original name and shape of every tensor ``state`` (abstract is enough) corresponds to."""
    shapes = {}
    for path, var in _variables(state):
        layout = var.get_metadata().get("torch", "plain")
        stacked = var.get_metadata().get("axes", (None,))[0] == "layers"
        layer_shape = var.shape[1:] if stacked else var.shape
        torch_shape = _TO_TORCH[layout](np.broadcast_to(np.float32(0), layer_shape)).shape
        if path[-1] == "weight_g":
            torch_shape = (*torch_shape, 1, 1)
        for layer in range(var.shape[0]) if stacked else [None]:
            shapes[names.original_name(path, layer)] = tuple(torch_shape)
    return shapes


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """Reads a safetensors file as numpy arrays (no torch needed)."""
    return load_file(path)


def load_module(
    make: Callable[[], nnx.Module], tensors: Mapping[str, np.ndarray], names: NameMap | CompositeNameMap, **kwargs
) -> tuple[nnx.GraphDef, nnx.State]:
    """Builds ``make()`` abstractly (no random init) and fills it from ``tensors``: (graphdef, state)."""
    graphdef, abstract = nnx.split(nnx.eval_shape(make))
    return graphdef, import_state(abstract, tensors, names, **kwargs)
