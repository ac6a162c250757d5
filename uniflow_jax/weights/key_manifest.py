"""Key manifests of the original checkpoints: one ``name<TAB>[shape]<TAB>dtype`` line per tensor."""

from __future__ import annotations

import math
import pathlib


def read_manifest(path: str | pathlib.Path) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape, in file order."""
    shapes = {}
    for number, line in enumerate(pathlib.Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            name, shape, _ = line.split("\t")
            shapes[name] = tuple(int(d) for d in shape.strip("[]").split(",") if d.strip())
        except ValueError as error:
            raise ValueError(f"{path}:{number}: not a manifest line ({error}): {line!r}") from None
    return shapes


def count_elements(shapes: dict[str, tuple[int, ...]], prefix: str = "") -> int:
    """Total number of scalars in the tensors whose names start with ``prefix``."""
    return sum(math.prod(shape) for name, shape in shapes.items() if name.startswith(prefix))
