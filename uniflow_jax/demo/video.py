"""Videos for V2A: coloured squares that appear on the frames where their sounds start, written with FFmpeg."""

from __future__ import annotations

import pathlib

import numpy as np

from uniflow_jax.demo.sounds import event
from uniflow_jax.frontends.audio import SAMPLE_RATE

VIDEO_SIZE = 64
VIDEO_CODEC = "mpeg4"  # FFmpeg's own encoder: present in every build, unlike libx264
VIDEO_GRID = 0.2  # s: sound onsets on this grid fall on frame boundaries at both 10 and 25 fps

_VIDEO_EVENTS = ("beep", "click", "burst", "chirp", "knock")
_EVENT_COLOURS = {
    "beep": (255, 220, 40),
    "click": (255, 255, 255),
    "burst": (230, 40, 40),
    "chirp": (40, 220, 90),
    "knock": (200, 120, 50),
}


def write_video(path: pathlib.Path, frames: np.ndarray, fps: int) -> None:
    import av  # imported here: only V2A needs it

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(VIDEO_CODEC, rate=fps)
        stream.width, stream.height, stream.pix_fmt = VIDEO_SIZE, VIDEO_SIZE, "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def video_scene(rng: np.random.Generator, fps: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """(audio, RGB frames, events): each sound starts on a frame where a coloured square appears."""
    slots = int(rng.integers(10, 21))  # 2–4 s on the 0.2 s grid
    chosen = np.sort(rng.choice(np.arange(1, slots - 1), size=int(rng.integers(2, 6)), replace=False))
    onsets = [int(s) for i, s in enumerate(chosen) if i == 0 or s - chosen[i - 1] >= 2]  # ≥ 0.4 s apart
    grid = int(VIDEO_GRID * SAMPLE_RATE)
    audio = np.zeros(slots * grid)
    frames = np.full((round(slots * VIDEO_GRID * fps), VIDEO_SIZE, VIDEO_SIZE, 3), 24, np.uint8)
    events = []
    for slot in onsets:
        kind = str(rng.choice(_VIDEO_EVENTS))
        attrs = {"length": "short", "pitch": str(rng.choice(["high", "low"])), "timbre": "hissing"}
        attrs["direction"] = str(rng.choice(["rising", "falling"]))
        sound = event(kind, attrs, rng)[: 2 * grid]
        audio[slot * grid : slot * grid + len(sound)] += sound
        size = int(rng.integers(12, 25))
        y, x = (int(v) for v in rng.integers(0, VIDEO_SIZE - size, 2))
        first = round(slot * VIDEO_GRID * fps)
        shown = max(1, round(max(len(sound) / SAMPLE_RATE, 0.1) * fps))
        for k in range(shown):
            fade = 1.0 - 0.5 * k / shown
            frames[first + k, y : y + size, x : x + size] = np.asarray(_EVENT_COLOURS[kind]) * fade
        events.append({"onset": round(slot * VIDEO_GRID, 3), "kind": kind})
    return audio, frames, events
