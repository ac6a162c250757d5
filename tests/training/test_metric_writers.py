"""MetricWriter: JSON lines, TensorBoard events (read back from the raw TFRecord files), console line."""

import json
import math
import pathlib
import struct

import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from uniflow_jax.training import metric_writers
from uniflow_jax.training.metric_writers import MetricWriter, format_console


def read_events(logdir: pathlib.Path) -> list[event_pb2.Event]:
    """Every Event in the TFRecord files under ``logdir``: [len u64][crc u32][data][crc u32] per record."""
    events = []
    for path in sorted(logdir.rglob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event()
            event.ParseFromString(data[pos + 12 : pos + 12 + length])
            events.append(event)
            pos += 12 + length + 4
    return events


def summary_values(logdir: pathlib.Path) -> dict[str, list[tuple[int, object]]]:
    """tag → [(step, Summary.Value)] over all events."""
    out: dict[str, list[tuple[int, object]]] = {}
    for event in read_events(logdir):
        for value in event.summary.value:
            out.setdefault(value.tag, []).append((event.step, value))
    return out


def test_scalars_jsonl_and_tensorboard(tmp_path):
    records = [
        (10, {"loss": 0.75, "lr": 5e-5, "loss/t2a": 0.5, "loss/tts": float("nan")}),
        (20, {"loss": np.float32(0.25), "lr": 4e-5, "loss/t2a": float("nan"), "loss/tts": 0.125, "tokens": 7}),
    ]
    with MetricWriter(tmp_path) as writer:
        for step, values in records:
            writer.scalars(step, values)
        # Each line is on disk as soon as it is written, before close.
        assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2

    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    parsed = [json.loads(line) for line in lines]  # strict JSON: NaN must have become null
    assert "NaN" not in "".join(lines)
    for (step, values), got in zip(records, parsed, strict=True):
        want = {"step": step, **{k: None if math.isnan(float(v)) else float(v) for k, v in values.items()}}
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == pytest.approx(value) if value is not None else got[key] is None
    assert isinstance(parsed[1]["tokens"], int)

    tags = summary_values(tmp_path / "tensorboard")
    assert [(s, v.simple_value) for s, v in tags["loss"]] == [(10, 0.75), (20, 0.25)]
    assert [s for s, _ in tags["loss/t2a"]] == [10]  # NaN entries are not plotted
    assert [s for s, _ in tags["loss/tts"]] == [20]
    assert tags["lr"][0][1].simple_value == pytest.approx(5e-5)


def test_reopening_appends(tmp_path):
    for step in (1, 2):
        with MetricWriter(tmp_path) as writer:
            writer.scalars(step, {"loss": 1.0 / step})
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]


def test_disabled_writer_writes_nothing(tmp_path):
    workdir = tmp_path / "run"
    writer = MetricWriter(workdir, enabled=False)
    wave = np.zeros(2400, np.float32)
    with writer:
        writer.scalars(1, {"loss": 1.0})
        writer.audio(1, "sample", wave, 24000)
        writer.spectrogram(1, "sample", wave, 24000)
        writer.text(1, "prompt", "a dog barks")
        writer.flush()
    assert not workdir.exists()


def test_audio_image_text_events(tmp_path):
    sr = 16000
    t = np.arange(sr // 2) / sr
    wave = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    with MetricWriter(tmp_path) as writer:
        writer.audio(5, "samples/t2a", wave, sr)
        writer.spectrogram(5, "mel/t2a", wave, sr)
        writer.text(5, "prompt/t2a", "a sine at 440 Hz")

    tags = summary_values(tmp_path / "tensorboard")
    ((step, audio),) = tags["samples/t2a"]
    assert step == 5
    assert audio.audio.sample_rate == sr and audio.audio.length_frames == len(wave)
    assert audio.audio.encoded_audio_string[:4] == b"RIFF"
    ((_, image),) = tags["mel/t2a"]
    assert image.image.height == 80 and image.image.colorspace == 3
    assert image.image.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"
    text_tags = [tag for tag in tags if tag.startswith("prompt/t2a")]
    assert text_tags
    assert tags[text_tags[0]][0][1].tensor.string_val == [b"a sine at 440 Hz"]


def test_log_mel_image():
    sr = 24000
    t = np.arange(sr) / sr
    low = np.sin(2 * np.pi * 200 * t).astype(np.float32)
    image = metric_writers.log_mel_image(low, sr)
    assert image.dtype == np.uint8
    assert image.ndim == 3 and image.shape[0] == 80 and image.shape[2] == 3
    assert image.shape[1] == 1 + sr // 256
    # A 200 Hz tone is loud near the *bottom* rows (low frequencies at the bottom): brightest (yellow-green,
    # high G) there.
    green = image[..., 1].astype(float).mean(axis=1)
    assert np.argmax(green) > 60
    # Stereo (T, 2) is mixed down; the shape is unchanged.
    assert metric_writers.log_mel_image(np.stack([low, low], axis=-1), sr).shape == image.shape


def test_colormap_ends():
    rgb = metric_writers.colormap(np.array([-1.0, 0.0, 0.5, 1.0, 2.0, np.nan]))
    assert rgb.dtype == np.uint8 and rgb.shape == (6, 3)
    np.testing.assert_array_equal(rgb[0], rgb[1])  # clipped below
    np.testing.assert_array_equal(rgb[3], rgb[4])  # clipped above
    np.testing.assert_array_equal(rgb[1], [68, 1, 84])
    np.testing.assert_array_equal(rgb[3], [253, 231, 37])


def test_format_console():
    values = {
        "mfu": 0.412,
        "loss/tts": float("nan"),
        "loss/t2a": 0.5,
        "steps_per_s": 4.12,
        "grad_norm": 1.23,
        "lr": 5e-5,
        "loss": 0.8123,
    }
    line = format_console(120, values)
    assert line == "step 120 | loss 0.8123 | lr 5.0e-05 | grad_norm 1.23 | 4.1 steps/s | loss/t2a 0.5000 | MFU 41.2%"
    # A NaN total loss is shown, not skipped; missing keys are simply absent.
    assert format_console(3, {"loss": float("nan")}) == "step 3 | loss nan"
    assert format_console(0, {"tiny": 1e-6, "count": 12}) == "step 0 | count 12 | tiny 1.00e-06"
