"""Tensors out of a PyTorch ``torch.save`` file, without torch and without running pickled code.

A ``.pt`` file (torch ≥ 1.6) is a zip: ``<root>/data.pkl`` is a pickle whose tensors refer, through
persistent ids, to raw little-endian storages ``<root>/data/<key>``. The released VAE ships as such a file
(a training wrapper's checkpoint: ``{"state_dict": {...}, ...}``). Unpickling it with ``pickle`` would
import and call whatever the file names; here every global resolves to an inert stand-in except the few
that rebuild tensors and ordered dicts, so a file can only ever produce data. Objects of other classes
(hyper-parameter containers, optimizer state, ...) come back as :class:`Opaque` records.
"""

from __future__ import annotations

import collections
import pathlib
import pickle
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class Opaque:
    """A pickled object of a class we do not construct: its qualified name, arguments and state."""

    qualified_name = "?"

    def __init__(self, *args: Any, **kwargs: Any):
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"Opaque({self.qualified_name})"


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple, stride: tuple, *_: Any) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2``: a (possibly strided) view of a storage, copied out."""
    if not size:
        return storage[offset].copy()
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=[s * itemsize for s in stride])
    return np.array(view)


def _rebuild_parameter(data: np.ndarray, *_: Any) -> np.ndarray:
    return data


_SAFE_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, archive: zipfile.ZipFile, root: str):
        super().__init__(file)
        self.archive, self.root = archive, root
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        return type(name, (Opaque,), {"qualified_name": f"{module}.{name}"})  # never imported

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r} (not a torch tensor storage)")
        _, storage_type, key, _location, _numel = pid
        if key not in self.storages:
            raw = self.archive.read(f"{self.root}/data/{key}")
            self.storages[key] = np.frombuffer(raw, storage_type.dtype)
        return self.storages[key]


def load(path: str | pathlib.Path) -> Any:
    """The object a ``torch.save`` zip file holds, tensors as numpy arrays (on the CPU, little-endian)."""
    path = pathlib.Path(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path}: not a torch zip checkpoint (the legacy pre-1.6 format is not read without torch: "
            "re-save it with torch.save, or give the VAE weights as safetensors)"
        )
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ValueError(f"{path}: expected one <root>/data.pkl in the archive, found {pickles}")
        root = pickles[0][: -len("/data.pkl")]
        byteorder = f"{root}/byteorder"
        if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
            raise ValueError(f"{path}: big-endian tensors are not supported")
        with archive.open(pickles[0]) as file:
            return _Unpickler(file, archive, root).load()


def state_dict(obj: Any, key: str = "state_dict") -> dict[str, np.ndarray]:
    """The flat name → array mapping of a loaded checkpoint: ``obj[key]`` when present, else ``obj``."""
    found = obj.get(key, obj) if isinstance(obj, dict) else obj
    if not isinstance(found, dict):
        raise ValueError(f"expected a dict of tensors (or one under {key!r}), got {type(found).__name__}")
    return {str(k): v for k, v in found.items() if isinstance(v, np.ndarray)}
