"""The task registry: the one place that says what each of the seven tasks is.

Time-aligned (TA) tasks carry content whose units map onto output time (phones, notes, audio frames,
video frames) and go through the per-layer additive fusion; non-time-aligned (NTA) tasks (captions) go
through cross-attention and get their length from the global duration predictor.
"""

from __future__ import annotations

import dataclasses

from uniflow_jax import resources

NUM_INSTRUCTIONS = 10  # stock instructions per task (the original's task_instruction.json)


@dataclasses.dataclass(frozen=True)
class Crop:
    """How training takes a window of a clip (the original datasets' rules): ``seconds`` long (None: as long as
    the largest latent bucket), from a random start or from the clip's start (V2A stays aligned with its video).
    Content that cannot be cropped (phones, scores) has ``max_seconds``: longer clips are skipped."""

    seconds: float | None
    random_start: bool
    max_seconds: float | None = None


@dataclasses.dataclass(frozen=True)
class Task:
    """``content``: which encoder reads the input; ``unit_seconds``: the fixed duration of one content unit
    (None when the data gives per-unit durations); defaults follow the original CLI."""

    id: str
    short: str
    time_aligned: bool
    content: str  # "phoneme" | "score" | "audio" | "video" | "text"
    unit_seconds: float | None
    crop: Crop
    guidance_scale: float = 5.0
    num_steps: int = 25


TASKS: tuple[Task, ...] = (
    Task("text_to_speech", "tts", True, "phoneme", None, Crop(None, False, max_seconds=20.0)),
    Task("singing_voice_synthesis", "svs", True, "score", None, Crop(None, False, max_seconds=20.0)),
    Task("speech_enhancement", "se", True, "audio", 0.02, Crop(5.0, True), guidance_scale=1.0),
    Task("audio_super_resolution", "sr", True, "audio", 0.02, Crop(5.0, True), guidance_scale=1.0),
    Task("video_to_audio", "v2a", True, "video", 0.1, Crop(10.0, False)),
    Task("text_to_audio", "t2a", False, "text", 1.0, Crop(None, True)),
    Task("text_to_music", "t2m", False, "text", 1.0, Crop(10.0, True)),
)
TASK_IDS = tuple(t.id for t in TASKS)
REPORT_ORDER = ("t2a", "t2m", "tts", "svs", "se", "sr", "v2a")  # how CLIs and reports list the tasks
CROP_SECONDS = {t.short: t.crop.seconds for t in TASKS if t.crop.seconds is not None}
MAX_SECONDS = {t.short: t.crop.max_seconds for t in TASKS if t.crop.max_seconds is not None}
CONTENT_KINDS = ("phoneme", "score", "audio", "video", "text")


def get(name: str) -> Task:
    """A task by its id (``text_to_speech``) or short name (``tts``)."""
    for task in TASKS:
        if name in (task.id, task.short):
            return task
    raise KeyError(f"unknown task {name!r}; known: {', '.join(t.short for t in TASKS)} or {', '.join(TASK_IDS)}")


def index(name: str) -> int:
    return TASKS.index(get(name))


def instruction_id(task: str, k: int) -> int:
    """The row of a task's k-th stock instruction in the instruction bank (tasks in ``TASKS`` order)."""
    return index(task) * NUM_INSTRUCTIONS + k


def instructions() -> dict[str, list[str]]:
    """The ``NUM_INSTRUCTIONS`` natural-language instructions per task (the original's ``task_instruction.json``)."""
    return resources.load_json("task_instruction.json")
