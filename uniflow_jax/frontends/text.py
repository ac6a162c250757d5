"""T5 tokenisation with SentencePiece (``spiece.model`` from the user's Flan-T5 folder; no download)."""

from __future__ import annotations

import pathlib
from collections.abc import Iterable

import numpy as np

EOS_ID, PAD_ID, UNK_ID = 1, 0, 2


class T5Tokenizer:
    """Text → token ids with the end-of-sequence id appended, as Hugging Face's T5 tokenizer."""

    def __init__(self, model_file: str | pathlib.Path, max_length: int = 512):
        import sentencepiece as spm

        if not pathlib.Path(model_file).exists():
            raise FileNotFoundError(f"no SentencePiece model at {model_file} (a Flan-T5 folder has spiece.model)")
        self.processor = spm.SentencePieceProcessor(model_file=str(model_file))
        self.max_length = max_length

    @classmethod
    def from_folder(cls, folder: str | pathlib.Path) -> T5Tokenizer:
        return cls(pathlib.Path(folder) / "spiece.model")

    @property
    def vocab_size(self) -> int:
        return self.processor.get_piece_size()

    def encode(self, text: str) -> np.ndarray:
        ids = self.processor.encode(text)[: self.max_length - 1]
        return np.array([*ids, EOS_ID], np.int32)


def train_tokenizer(texts: Iterable[str], model_prefix: str | pathlib.Path, vocab_size: int) -> pathlib.Path:
    """Trains a small T5-style SentencePiece model (pad 0, eos 1, unk 2) — for models trained from scratch."""
    import io

    import sentencepiece as spm

    model = io.BytesIO()  # not a path: the model file would record it, and differ between folders
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(texts)),
        model_writer=model,
        vocab_size=vocab_size,
        pad_id=PAD_ID,
        eos_id=EOS_ID,
        unk_id=UNK_ID,
        bos_id=-1,
        model_type="unigram",
        hard_vocab_limit=False,
        minloglevel=2,
        num_threads=1,  # the same texts give the same bytes
    )
    path = pathlib.Path(f"{model_prefix}.model")
    path.write_bytes(model.getvalue())
    return path
