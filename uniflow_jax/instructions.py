"""Task instructions: the 10 texts per task, encoded once by the frozen T5 encoder and cached.

The released checkpoints ship them pre-encoded in ``instructions/t5_embeddings.h5`` (keys ``{task}_{k}``,
arrays (L, 1024)); :func:`read_h5` reads that file and :func:`write_h5` writes one we encoded.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from uniflow_jax import tasks
from uniflow_jax.frontends.text import T5Tokenizer

Bank = dict[str, np.ndarray]  # "{task}_{k}" -> (L, D)


def key(task: str, index: int) -> str:
    return f"{tasks.get(task).id}_{index}"


def text_encoder(graphdef: nnx.GraphDef, state: nnx.State, tokenizer: T5Tokenizer) -> Callable[[str], np.ndarray]:
    """text → T5 last hidden state (L, D) of its tokens (EOS included); padded to a multiple of 32 so that a
    handful of programs serve every length (padded keys are masked, so the valid rows do not change)."""
    forward = jax.jit(lambda s, ids, mask: nnx.merge(graphdef, s)(ids, mask))

    def encode(text: str) -> np.ndarray:
        ids = tokenizer.encode(text)
        width = -(-len(ids) // 32) * 32
        padded = np.zeros((1, width), np.int32)
        padded[0, : len(ids)] = ids
        out = forward(state, jnp.asarray(padded), jnp.arange(width)[None] < len(ids))
        return np.asarray(out[0, : len(ids)])

    return encode


def encode_all(encode: Callable[[str], np.ndarray]) -> Bank:
    """All instructions of every task, keyed as the released HDF5 file."""
    return {key(task, k): encode(text) for task, texts in tasks.instructions().items() for k, text in enumerate(texts)}


def read_h5(path: str | pathlib.Path) -> Bank:
    import h5py

    with h5py.File(path, "r") as f:
        return {name: np.asarray(f[name], np.float32) for name in f}


def write_h5(bank: Bank, path: str | pathlib.Path) -> None:
    import h5py

    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for name, value in bank.items():
            f.create_dataset(name, data=value)


def select(bank: Bank, task: str, index: int = 0) -> np.ndarray:
    name = key(task, index)
    if name not in bank:
        raise KeyError(f"no instruction {name!r}; the bank has indices 0..9 per task")
    return bank[name]


def all_texts() -> Sequence[str]:
    return [text for texts in tasks.instructions().values() for text in texts]
