"""The Python API: ``UniFlowAudio.from_converted(folder).generate([{...}, ...])`` → arrays and sample rates.

Requests are dicts with the keys of a ``--batch`` line (``task`` and the inputs named like the sample CLI's
flags; paths relative to the working directory). Every request is checked before anything is generated; each
is generated from its own ``seed`` (default: ``generate``'s ``seed``), so its audio does not depend on the other
requests of the call.
"""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from uniflow_jax import config_lib
from uniflow_jax.inference import requests as requests_lib
from uniflow_jax.inference.batch import clipped_samples
from uniflow_jax.inference.model import LoadedModel


@dataclasses.dataclass(frozen=True)
class GeneratedAudio:
    """One generated waveform: mono float32 in [−1, 1] (``clipped`` samples were beyond and were clipped)."""

    wave: np.ndarray
    sample_rate: int
    task: str
    seed: int
    clipped: int


class UniFlowAudio:
    """A loaded UniFlow-Audio model that turns request dicts into audio (see the module docstring)."""

    def __init__(self, model: LoadedModel, context: requests_lib.InputContext | None = None):
        self.model = model
        self.context = context or requests_lib.InputContext()

    @classmethod
    def from_converted(cls, folder: str | pathlib.Path, *, mesh_shape: Sequence[int] | None = None) -> UniFlowAudio:
        """A release converted by ``python -m uniflow_jax.convert``."""
        model = LoadedModel.from_converted(folder, mesh_shape=mesh_shape)
        return cls(model, requests_lib.InputContext.of_converted(folder))

    @classmethod
    def from_workdir(
        cls, workdir: str | pathlib.Path, *, kind: str = "best", mesh_shape: Sequence[int] | None = None
    ) -> UniFlowAudio:
        """A run of ``python -m uniflow_jax.train``: its ``best`` (by validation) or ``latest`` params."""
        return cls(LoadedModel.from_workdir(workdir, kind=kind, mesh_shape=mesh_shape))

    @classmethod
    def random(cls, config: ml_collections.ConfigDict | str | pathlib.Path, *, seed: int = 0) -> UniFlowAudio:
        """A config's model with RANDOM weights (smoke tests: the audio is noise-like)."""
        if not isinstance(config, ml_collections.ConfigDict):
            config = config_lib.load_config_file(str(config))
        with tempfile.TemporaryDirectory() as tokenizer_dir:
            return cls(LoadedModel.random(config, seed, pathlib.Path(tokenizer_dir)))

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.model.sample_rate)

    def generate(
        self,
        requests: Sequence[Mapping[str, Any]],
        *,
        seed: int = 0,
        num_steps: int | None = None,
        guidance_scale: float | None = None,
        batch_size: int = 8,
    ) -> list[GeneratedAudio]:
        """One :class:`GeneratedAudio` per request, in order. Raises :class:`requests_lib.InvalidRequests` listing
        every bad request before anything is generated. ``num_steps`` / ``guidance_scale``: unset, each task's
        defaults (25 steps; guidance 5, SE/SR 1)."""
        lines, problems = [], []
        for i, request in enumerate(requests):
            where = f"request {i}"
            try:
                line = requests_lib.parse_request({"id": i, **request}, where, pathlib.Path.cwd(), {})
                requests_lib.check_inputs(line.task, line.fields, self.context)
                lines.append(line)
            except (ValueError, KeyError, OSError, ImportError) as error:
                problems.append(f"{where}: {error.args[0] if isinstance(error, KeyError) else error}")
        if problems:
            raise requests_lib.InvalidRequests(problems)
        groups: dict[tuple[str, int, float], list[int]] = {}
        for i, line in enumerate(lines):
            steps, guidance = requests_lib.settings(line.task, num_steps, guidance_scale)
            groups.setdefault((line.task.short, steps, guidance), []).append(i)
        out: list[GeneratedAudio | None] = [None] * len(lines)
        for (_, steps, guidance), members in groups.items():
            members = sorted(members, key=lambda i: requests_lib.length_hint(lines[i]))
            for k in range(0, len(members), batch_size):
                chunk = members[k : k + batch_size]
                built = [requests_lib.build_sample(lines[i].task, {"seed": seed, **lines[i].fields}, self.model)
                         for i in chunk]  # fmt: skip
                waves = self.model.generate(built, num_steps=steps, guidance_scale=guidance)
                for i, request, wave in zip(chunk, built, waves, strict=True):
                    if not np.isfinite(wave).all():
                        raise FloatingPointError(f"request {i}: the generated audio has non-finite samples")
                    clipped = clipped_samples(wave)
                    out[i] = GeneratedAudio(np.clip(wave, -1.0, 1.0), self.sample_rate, request.task.short,
                                            request.seed, clipped)  # fmt: skip
        return out  # type: ignore[return-value]
