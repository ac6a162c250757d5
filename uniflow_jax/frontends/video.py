"""Video → frames at 10 fps → CLIP pixels, and generated audio muxed back into the video. Needs the optional
``video`` extra (PyAV, Pillow)."""

from __future__ import annotations

import pathlib

import numpy as np

from uniflow_jax.models.clip import IMAGE_MEAN, IMAGE_STD

FRAME_RATE = 10.0


def _av():
    try:
        import av
    except ImportError as error:
        raise ImportError("video files need the 'video' extra: pip install -e '.[video]'") from error
    return av


def probe(path: str | pathlib.Path) -> None:
    """Raises ``ValueError`` naming ``path`` unless it holds a video stream whose first frame decodes (a cheap
    check before any model loads)."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path}: no video stream")
            next(container.decode(container.streams.video[0]))
    except (av.error.FFmpegError, StopIteration) as error:
        raise ValueError(f"{path}: not a readable video ({error or 'no frame'})") from None


def read_frames(path: str | pathlib.Path, fps: float = FRAME_RATE, max_seconds: float | None = None) -> np.ndarray:
    """RGB frames (N, H, W, 3) uint8 sampled at ``fps``: for each time k/fps, the last decoded frame."""
    av = _av()
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


def mux_audio(video_path: str | pathlib.Path, wave: np.ndarray, sample_rate: int, output: str | pathlib.Path) -> bool:
    """Writes ``output`` (mp4): the first video stream of ``video_path`` with ``wave`` (mono) as its only sound
    (AAC), cut to the video's length. The original CLI did this with ``ffmpeg -c:v copy``; likewise the video
    packets are copied untouched when mp4 can hold their codec, else (VP8, for one) the video is re-encoded
    with H.264. Returns whether the video was copied."""
    av = _av()
    output = pathlib.Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(video_path)) as source, av.open(str(output), "w", format="mp4") as target:
        video = source.streams.video[0]
        copy = video.codec_context.name in target.supported_codecs
        if copy:
            out_video = target.add_stream_from_template(video)
        else:
            out_video = target.add_stream("h264", rate=video.average_rate or 25)
            out_video.width, out_video.height, out_video.pix_fmt = video.width, video.height, "yuv420p"
        out_audio = target.add_stream("aac", rate=sample_rate, layout="mono")
        if video.duration is not None:
            seconds = float(video.duration * video.time_base)
        else:
            seconds = source.duration / av.time_base if source.duration else None
        if copy:
            for packet in source.demux(video):
                if packet.dts is not None:  # the demuxer ends with an empty packet
                    packet.stream = out_video
                    target.mux(packet)
        else:
            for frame in source.decode(video):
                target.mux(out_video.encode(frame))
            target.mux(out_video.encode())
        if seconds is not None:
            wave = wave[: round(seconds * sample_rate)]
        frame = av.AudioFrame.from_ndarray(np.asarray(wave, np.float32)[None], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = sample_rate, 0
        target.mux(out_audio.encode(frame))
        target.mux(out_audio.encode())
    return copy
