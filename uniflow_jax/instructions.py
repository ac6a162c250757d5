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


def text_encoder(
    graphdef: nnx.GraphDef, state: nnx.State, tokenizer: T5Tokenizer
) -> Callable[[Sequence[str]], list[np.ndarray]]:
    """texts → the T5 last hidden state (L, D) of each one's tokens (EOS included), in one batched call:
    padded to the longest, rounded up to a multiple of 32, so that a handful of programs serve every length
    (padded keys are masked, so the valid rows do not change)."""
    forward = jax.jit(lambda s, ids, mask: nnx.merge(graphdef, s)(ids, mask))

    def encode(texts: Sequence[str]) -> list[np.ndarray]:
        ids = [tokenizer.encode(text) for text in texts]
        lengths = np.array([len(tokens) for tokens in ids])
        width = -(-lengths.max() // 32) * 32
        padded = np.zeros((len(ids), width), np.int32)
        for row, tokens in enumerate(ids):
            padded[row, : len(tokens)] = tokens
        out = np.asarray(forward(state, jnp.asarray(padded), jnp.arange(width)[None] < lengths[:, None]))
        return [out[row, :n] for row, n in enumerate(lengths)]

    return encode


def encode_all(encode: Callable[[Sequence[str]], list[np.ndarray]]) -> Bank:
    """All instructions of every task, keyed as the released HDF5 file (one batched call)."""
    keyed = [(key(task, k), text) for task, texts in tasks.instructions().items() for k, text in enumerate(texts)]
    return dict(zip([name for name, _ in keyed], encode([text for _, text in keyed]), strict=True))


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
