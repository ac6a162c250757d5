"""The original project's resource files (phone sets, singer set, task instructions), shipped inside the package.

Read through ``importlib.resources`` so that a wheel, a non-editable or a zipped install finds them as a
checkout does.
"""

from __future__ import annotations

import importlib.resources
import json
from typing import Any

FILES = ("task_instruction.json", "tts_phone_set.json", "svs_phone_set.json", "svs_spk_set.json")


def read_text(name: str) -> str:
    """The text of one resource file (``FILES``)."""
    if name not in FILES:
        raise KeyError(f"unknown resource {name!r}; known: {', '.join(FILES)}")
    return importlib.resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def load_json(name: str) -> Any:
    """A JSON resource file, parsed afresh (callers may change what they get)."""
    return json.loads(read_text(name))
