"""Entry-point plumbing shared by every ``python -m uniflow_jax.<tool>`` command."""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from absl import app
from absl import logging as absl_logging


def _underscore_flag_names(argv: Sequence[str]) -> list[str]:
    """Accepts ``--ref-dir`` as well as absl's ``--ref_dir`` (values are left untouched)."""
    out = []
    for arg in argv:
        if arg.startswith("--") and not arg.startswith("--config."):
            name, sep, value = arg[2:].partition("=")
            arg = "--" + name.replace("-", "_") + sep + value
        out.append(arg)
    return out


def run(main: Callable[[Sequence[str]], None]) -> None:
    """``absl.app.run`` with dash-or-underscore flag names and quiet library logs."""
    absl_logging.get_absl_handler().addFilter(_QuietLibraries())
    app.run(main, argv=[sys.argv[0], *_underscore_flag_names(sys.argv[1:])])


def json_ready(value: Any) -> Any:
    """``value`` with NaN/inf floats as None and numpy scalars as Python numbers, for a strict JSON report."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


class _QuietLibraries(logging.Filter):
    """Drops the INFO chatter of orbax (dozens of lines per checkpoint); its warnings and errors stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or "/orbax/" not in record.pathname
