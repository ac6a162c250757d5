"""Entry-point plumbing shared by every ``python -m uniflow_jax.<tool>`` command."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from absl import app


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
    """``absl.app.run`` with dash-or-underscore flag names."""
    app.run(main, argv=[sys.argv[0], *_underscore_flag_names(sys.argv[1:])])
