"""Video → frames at 10 fps → CLIP pixels. Needs the optional ``video`` extra (PyAV, Pillow)."""

from __future__ import annotations

import pathlib

import numpy as np

from uniflow_jax.models.clip import IMAGE_MEAN, IMAGE_STD

FRAME_RATE = 10.0


def read_frames(path: str | pathlib.Path, fps: float = FRAME_RATE, max_seconds: float | None = None) -> np.ndarray:
    """RGB frames (N, H, W, 3) uint8 sampled at ``fps``: for each time k/fps, the last decoded frame."""
    try:
        import av
    except ImportError as error:
        raise ImportError("reading video needs the 'video' extra: pip install -e '.[video]'") from error
    frames, times = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            if max_seconds is not None and frame.time >= max_seconds:
                break
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(frame.time)
    if not frames:
        raise ValueError(f"{path}: no video frames could be decoded")
    duration = times[-1] + (times[-1] - times[-2] if len(times) > 1 else 1.0 / fps)
    if max_seconds is not None:
        duration = min(duration, max_seconds)
    wanted = np.arange(int(np.floor(duration * fps + 1e-6))) / fps
    picks = np.clip(np.searchsorted(np.asarray(times), wanted + 1e-6, side="right") - 1, 0, len(frames) - 1)
    return np.stack([frames[i] for i in picks])


def clip_preprocess(frames: np.ndarray, image_size: int) -> np.ndarray:
    """CLIPImageProcessor: shortest side → ``image_size`` (bicubic), centre crop, /255, normalise. NHWC float32."""
    from PIL import Image

    out = []
    for frame in frames:
        h, w = frame.shape[:2]
        scale = image_size / min(h, w)
        size = (max(image_size, round(w * scale)), max(image_size, round(h * scale)))
        image = np.asarray(Image.fromarray(frame).resize(size, Image.BICUBIC), np.float32)
        top, left = (image.shape[0] - image_size) // 2, (image.shape[1] - image_size) // 2
        out.append(image[top : top + image_size, left : left + image_size])
    pixels = np.stack(out) / 255.0
    return ((pixels - np.asarray(IMAGE_MEAN)) / np.asarray(IMAGE_STD)).astype(np.float32)
