"""The original project's jsonl manifests: one dataset = a content jsonl joined to an audio jsonl by id.

Both files are read once at start-up, every line checked, so a malformed manifest fails before training
with ``file:line`` and the reason. What stays in memory is an offset index; rows are read back with
``os.pread``, which keeps the source thread-safe (grain reads with many threads) and picklable (open file
descriptors are dropped and reopened per process). Format: ``data/README.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from uniflow_jax import tasks

# The original's content column per task (v1.1 names; v1 names are accepted through ``content_col``).
DEFAULT_CONTENT_COL = {
    "tts": "audio",
    "svs": "midi",
    "se": "noisy_speech",
    "sr": "low_sr_audio",
    "v2a": "video",
    "t2a": "caption",
    "t2m": "caption",
}
MAX_REPORTED_ERRORS = 20


OK, NO_AUDIO_ROW, BLANK_CONTENT = 0, 1, 2
ROW_PROBLEMS = {
    NO_AUDIO_ROW: ("missing", "has no row in {audio}"),
    BLANK_CONTENT: ("bad_content", "has a blank caption"),
}


class ManifestError(ValueError):
    """A manifest that cannot be used; the message lists every problem found as ``file:line: reason``."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a config's ``data.train`` / ``data.val`` list (fields as ``data/README.md``)."""

    task: str
    audio: str
    content: str | None = None
    content_col: str | None = None
    id_col: str = "audio_id"
    base_content_path: str | None = None
    base_audio_path: str | None = None
    max_samples: int | None = None
    name: str | None = None
    allow_pickle: bool = False

    def __post_init__(self):
        task = tasks.get(self.task).short  # raises on an unknown task
        object.__setattr__(self, "task", task)
        if self.content_col is None:
            object.__setattr__(self, "content_col", DEFAULT_CONTENT_COL[task])
        if self.content is None and task != "sr":
            raise ManifestError(f"dataset {self.label}: task {task} needs a content jsonl")
        if self.name is None:
            object.__setattr__(self, "name", f"{task}:{pathlib.Path(self.content or self.audio).parent.name}")

    @property
    def label(self) -> str:
        return self.name or self.content or self.audio

    @classmethod
    def from_config(cls, entry: Mapping[str, Any]) -> DatasetSpec:
        entry = entry.to_dict() if hasattr(entry, "to_dict") else dict(entry)
        unknown = set(entry) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ManifestError(f"dataset {entry}: unknown field(s) {', '.join(sorted(unknown))}")
        return cls(**entry)


def _lines(path: str) -> Iterator[tuple[int, int, int, bytes]]:
    """(line number, byte offset, byte length, text) of every non-blank line."""
    offset = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if raw.strip():
                yield number, offset, len(raw), raw
            offset += len(raw)


def _parse(path: str, number: int, raw: bytes, fields: tuple[str, ...]) -> dict:
    try:
        row = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ManifestError(f"{path}:{number}: not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(row, dict):
        raise ManifestError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
    missing = [name for name in fields if name not in row or row[name] in (None, "")]
    if missing:
        raise ManifestError(f"{path}:{number}: missing field(s) {', '.join(missing)}")
    return row


def _check_file(path: str) -> None:
    if not os.path.isfile(path):
        raise ManifestError(f"{path}: no such manifest file")


class ManifestSource:
    """Random access to the joined rows of one dataset: ``source[i]`` → a :class:`Row` dict.

    A row is ``{"id", "content", "audio", "task", "dataset", "where"}``: the content field's value as
    written (a caption, a path, an inline object; None for SR without content), the absolute audio path
    and ``where`` = ``content.jsonl:line`` for error messages; a row with a problem found in the manifest
    itself also has ``problem`` = (skip reason, detail).

    Policy: a malformed line (not JSON, not an object, a missing field, a duplicate id) always refuses the
    dataset at start-up, naming ``file:line``. A row-level problem — a content row whose id has no audio row,
    a blank caption — refuses it too with ``on_bad_input="raise"``; with ``"skip"`` the row is kept and the
    loader skips and counts it (reasons ``missing`` and ``bad_content``), as it does a bad audio file.
    """

    def __init__(self, spec: DatasetSpec, on_bad_input: str = "raise"):
        self.spec = spec
        errors: list[str] = []
        audio_offsets: dict[str, tuple[int, int]] = {}
        _check_file(spec.audio)
        for number, offset, length, raw in _lines(spec.audio):
            try:
                row = _parse(spec.audio, number, raw, (spec.id_col, "audio"))
            except ManifestError as error:
                errors.append(str(error))
                continue
            key = str(row[spec.id_col])
            if key in audio_offsets:
                errors.append(f"{spec.audio}:{number}: duplicate id {key!r}")
            audio_offsets[key] = (offset, length)

        rows = []
        text = tasks.get(spec.task).content == "text"
        if spec.content is None:
            rows = [(-1, 0, -1, off, length, OK) for off, length in audio_offsets.values()]
        else:
            _check_file(spec.content)
            for number, offset, length, raw in _lines(spec.content):
                try:
                    row = _parse(spec.content, number, raw, (spec.id_col, spec.content_col))
                except ManifestError as error:
                    errors.append(str(error))
                    continue
                key = str(row[spec.id_col])
                problem = OK
                if key not in audio_offsets:
                    problem = NO_AUDIO_ROW
                elif text and not str(row[spec.content_col]).strip():
                    problem = BLANK_CONTENT
                if problem != OK and on_bad_input == "raise":
                    errors.append(
                        f"{spec.content}:{number}: id {key!r} {ROW_PROBLEMS[problem][1].format(audio=spec.audio)}"
                    )
                    continue
                rows.append((offset, length, number, *audio_offsets.get(key, (-1, 0)), problem))
        if errors:
            shown = errors[:MAX_REPORTED_ERRORS]
            more = f"\n  ... and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
            listing = "\n  ".join(shown)
            raise ManifestError(f"dataset {spec.label}: {len(errors)} bad manifest line(s):\n  {listing}{more}")
        if spec.max_samples is not None:
            rows = rows[: spec.max_samples]
        if not rows:
            raise ManifestError(f"dataset {spec.label}: no rows")
        # (content offset, content length, content line, audio offset, audio length, row problem)
        self._index = np.asarray(rows, np.int64).reshape(-1, 6)
        self._content_base = spec.base_content_path or str(pathlib.Path(spec.content or spec.audio).parent)
        self._audio_base = spec.base_audio_path or str(pathlib.Path(spec.audio).parent)
        self._fds: dict[str, int] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self._index)

    def _read(self, path: str, offset: int, length: int) -> dict:
        if self._pid != os.getpid():  # a forked child opens its own descriptors
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds.setdefault(path, os.open(path, os.O_RDONLY))
        return json.loads(os.pread(fd, int(length), int(offset)))

    def resolve(self, value: str, base: str) -> str:
        """A path from a manifest, relative ones against ``base``."""
        path = pathlib.Path(os.path.expanduser(value))
        return str(path if path.is_absolute() else pathlib.Path(base) / path)

    def content_path(self, value: str) -> str:
        return self.resolve(value, self._content_base)

    def __getitem__(self, index: int) -> dict:
        c_off, c_len, line, a_off, a_len, problem = self._index[index]
        spec = self.spec
        content_row = None if c_off < 0 else self._read(spec.content, c_off, c_len)
        row = {
            "content": None if content_row is None else content_row[spec.content_col],
            "task": spec.task,
            "where": f"{spec.content or spec.audio}:{line if line >= 0 else '?'}",
        }
        if a_off < 0:  # no audio row (kept only to be skipped and counted)
            row.update(id=str(content_row[spec.id_col]), audio=None)
        else:
            audio_row = self._read(spec.audio, a_off, a_len)
            row.update(id=str(audio_row[spec.id_col]), audio=self.resolve(audio_row["audio"], self._audio_base))
        if problem != OK:
            reason, detail = ROW_PROBLEMS[problem]
            row["problem"] = (reason, f"id {row['id']!r} {detail.format(audio=spec.audio)}")
        return row

    def __getstate__(self):
        return {**self.__dict__, "_fds": {}}

    def __del__(self):
        for fd in getattr(self, "_fds", {}).values():
            with contextlib.suppress(OSError):
                os.close(fd)
