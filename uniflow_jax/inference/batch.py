"""The batch runner: requests grouped by task and length, generated in bucketed batches, written as files, summed up."""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging
from tqdm import tqdm

from uniflow_jax import tasks
from uniflow_jax.frontends import audio, video
from uniflow_jax.inference.model import LoadedModel
from uniflow_jax.inference.requests import Line, build_sample, length_hint, line_seed, settings


def write_outputs(
    task: tasks.Task, fields: Mapping[str, Any], wave: np.ndarray, path: str | pathlib.Path, sample_rate: int
) -> list[pathlib.Path]:
    """Writes the audio to ``path``; for V2A from a video file, also ``path`` with the suffix .mp4: the input
    video with this sound. Returns the files written. A non-finite sample is an error (nothing is written);
    samples beyond ±1 are clipped: :func:`clipped_samples` counts them."""
    path = pathlib.Path(path)
    if not np.isfinite(wave).all():
        raise FloatingPointError(f"{path}: the generated audio has {int(np.sum(~np.isfinite(wave)))} non-finite "
                                 "samples; nothing was written")  # fmt: skip
    wave = np.clip(wave, -1.0, 1.0)
    audio.write_audio(path, wave, sample_rate)
    if not (task.content == "video" and fields.get("video")):
        return [path]
    mp4 = path.with_suffix(".mp4")
    if not video.mux_audio(fields["video"], wave, sample_rate, mp4):
        logging.info("%s: the video was re-encoded (H.264): mp4 cannot hold its codec", mp4)
    return [path, mp4]


def clipped_samples(wave: np.ndarray) -> int:
    """Samples beyond ±1, which a wav cannot hold (written clipped)."""
    return int(np.sum(np.abs(wave) > 1.0))


@dataclasses.dataclass
class TaskSummary:
    count: int = 0
    seconds: float = 0.0
    wall: float = 0.0
    clipped: int = 0  # samples beyond ±1, written clipped
    compiles: list[float] = dataclasses.field(default_factory=list)  # seconds of each XLA compilation

    @property
    def real_time_factor(self) -> float:
        return self.wall / max(self.seconds, 1e-9)


def run_batch(
    model: LoadedModel,
    lines: Sequence[Line],
    out_dir: str | pathlib.Path,
    *,
    batch_size: int = 8,
    num_steps: int | None = None,
    guidance_scale: float | None = None,
    seed: int = 0,
) -> dict[str, TaskSummary]:
    """Generates every request into ``out_dir/<task>/<id>.wav`` (and ``.mp4`` for a V2A video); returns the
    summary per task."""
    out_dir = pathlib.Path(out_dir)
    rate = model.config.model.sample_rate
    groups: dict[str, list[Line]] = {}
    for line in lines:
        groups.setdefault(line.task.short, []).append(line)
    summaries: dict[str, TaskSummary] = {}
    with tqdm(total=len(lines), unit="request", desc="sample") as bar:
        for short in sorted(groups, key=tasks.REPORT_ORDER.index):
            task = tasks.get(short)
            steps, guidance = settings(task, num_steps, guidance_scale)
            group = sorted(groups[short], key=length_hint)
            summary = summaries[short] = TaskSummary(count=len(group))
            start = time.perf_counter()
            with recording_compiles(summary.compiles):
                for k in range(0, len(group), batch_size):
                    chunk = group[k : k + batch_size]
                    requests = []
                    for line in chunk:
                        try:
                            fields = {"seed": line_seed(seed, line), **line.fields}
                            requests.append(build_sample(task, fields, model))
                        except (ValueError, KeyError, OSError) as error:
                            message = error.args[0] if isinstance(error, KeyError) else str(error)
                            raise ValueError(f"{line.where}: {message}") from error
                    waves = model.generate(requests, num_steps=steps, guidance_scale=guidance)
                    for line, wave in zip(chunk, waves, strict=True):
                        write_outputs(task, line.fields, wave, out_dir / short / f"{line.id}.wav", rate)
                        summary.seconds += len(wave) / rate
                        summary.clipped += clipped_samples(wave)
                    bar.update(len(chunk))
                summary.wall = time.perf_counter() - start
    return summaries


_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def recording_compiles(into: list[float]) -> Iterator[None]:
    """Appends the duration of every XLA compilation in the block to ``into``."""

    def record(event: str, seconds: float, **_: Any) -> None:
        if event == _COMPILE_EVENT:
            into.append(seconds)

    jax.monitoring.register_event_duration_secs_listener(record)
    try:
        yield
    finally:
        jax.monitoring.unregister_event_duration_listener(record)


def format_summary(summaries: Mapping[str, TaskSummary]) -> str:
    rows = [f"{'task':<5} {'count':>6} {'audio s':>9} {'wall s':>8} {'RTF':>7} {'clipped':>8}"]
    total = TaskSummary(
        sum(s.count for s in summaries.values()),
        sum(s.seconds for s in summaries.values()),
        sum(s.wall for s in summaries.values()),
        sum(s.clipped for s in summaries.values()),
    )
    for short, s in [*summaries.items(), ("all", total)]:
        rows.append(
            f"{short:<5} {s.count:>6} {s.seconds:>9.2f} {s.wall:>8.2f} {s.real_time_factor:>7.3f} {s.clipped:>8}"
        )
    return "\n".join(rows)
