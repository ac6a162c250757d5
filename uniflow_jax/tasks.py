"""The task registry: the one place that says what each of the seven tasks is.

Time-aligned (TA) tasks carry content whose units map onto output time (phones, notes, audio frames,
video frames) and go through the per-layer additive fusion; non-time-aligned (NTA) tasks (captions) go
through cross-attention and get their length from the global duration predictor.
"""

from __future__ import annotations

import dataclasses

from uniflow_jax import resources


@dataclasses.dataclass(frozen=True)
class Task:
    """``content``: which encoder reads the input; ``unit_seconds``: the fixed duration of one content unit
    (None when the data gives per-unit durations); defaults follow the original CLI."""

    id: str
    short: str
    time_aligned: bool
    content: str  # "phoneme" | "score" | "audio" | "video" | "text"
    unit_seconds: float | None
    guidance_scale: float = 5.0
    num_steps: int = 25


TASKS: tuple[Task, ...] = (
    Task("text_to_speech", "tts", True, "phoneme", None),
    Task("singing_voice_synthesis", "svs", True, "score", None),
    Task("speech_enhancement", "se", True, "audio", 0.02, guidance_scale=1.0),
    Task("audio_super_resolution", "sr", True, "audio", 0.02, guidance_scale=1.0),
    Task("video_to_audio", "v2a", True, "video", 0.1),
    Task("text_to_audio", "t2a", False, "text", 1.0),
    Task("text_to_music", "t2m", False, "text", 1.0),
)
TASK_IDS = tuple(t.id for t in TASKS)
CONTENT_KINDS = ("phoneme", "score", "audio", "video", "text")


def get(name: str) -> Task:
    """A task by its id (``text_to_speech``) or short name (``tts``)."""
    for task in TASKS:
        if name in (task.id, task.short):
            return task
    raise KeyError(f"unknown task {name!r}; known: {', '.join(t.short for t in TASKS)} or {', '.join(TASK_IDS)}")


def index(name: str) -> int:
    return TASKS.index(get(name))


def instructions() -> dict[str, list[str]]:
    """The 10 natural-language instructions per task (the original's ``task_instruction.json``)."""
    return resources.load_json("task_instruction.json")
