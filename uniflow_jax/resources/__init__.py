"""Files shipped inside the package: the original project's resource files (phone sets, singer set, task
instructions) and the demo's codec, trained ahead of time (``scripts/train_demo_codec.sh``: its weights and a
record of how it was trained and how well it reconstructs).

Read through ``importlib.resources`` so that a wheel, a non-editable or a zipped install finds them as a
checkout does.
"""

from __future__ import annotations

import importlib.resources
import json
import pathlib
from typing import Any

FILES = (
    "task_instruction.json",
    "tts_phone_set.json",
    "svs_phone_set.json",
    "svs_spk_set.json",
    "demo_codec.safetensors",
    "demo_codec.json",
)


def path(name: str) -> pathlib.Path:
    """The file system path of one resource file, for readers that need a path (safetensors)."""
    if name not in FILES:
        raise KeyError(f"unknown resource {name!r}; known: {', '.join(FILES)}")
    found = importlib.resources.files(__name__).joinpath(name)
    if not isinstance(found, pathlib.Path):
        raise RuntimeError(f"{name} is inside an archive ({found}); install uniflow_jax unzipped to use it")
    return found


def read_text(name: str) -> str:
    """The text of one resource file (``FILES``)."""
    if name not in FILES:
        raise KeyError(f"unknown resource {name!r}; known: {', '.join(FILES)}")
    return importlib.resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def load_json(name: str) -> Any:
    """A JSON resource file, parsed afresh (callers may change what they get)."""
    return json.loads(read_text(name))
