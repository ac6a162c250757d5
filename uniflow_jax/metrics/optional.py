"""The evaluation's optional dependencies (the ``eval`` extra): imported when a metric first needs them, so
that the rest of the package works without them and a missing one says how to install it."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, package: str | None = None) -> ModuleType:
    """``import module``, or an ``ImportError`` naming the PyPI package and the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"this metric needs the {package or module!r} package ({error}); "
            "install the evaluation dependencies with: pip install -e '.[eval]'"
        ) from None
