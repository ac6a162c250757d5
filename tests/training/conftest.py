"""A tiny demo corpus (every task, numpy speech) and a config file pointing at it, for the training tests."""

import json
import pathlib

import pytest

from uniflow_jax import instructions
from uniflow_jax.demo import corpus as demo_corpus
from uniflow_jax.frontends import text

REPO = pathlib.Path(__file__).resolve().parents[2]

CONFIG_FILE = """
from uniflow_jax import config_lib
from uniflow_jax.demo import specs as demo_specs


def get_config():
    config = config_lib.load_config_file("{repo}/configs/tiny.py")
    config.data.train = demo_specs.dataset_specs("{corpus}", "train")
    config.data.val = demo_specs.dataset_specs("{corpus}", "val")
    config.data.tokenizer = "{corpus}/spiece.model"
    config.data.video_input = "frames"
    config.data.read_threads = 2
    # One bucket: one compiled step per run (longer TTS/SVS clips are skipped, as too long).
    config.data.buckets = [dict(latent=75, phoneme=32, score=32, video=15, text=32)]
    config.data.crop_seconds = dict(se=1.0, sr=1.0, t2m=1.0, v2a=1.0)
    config.data.max_seconds = dict(tts=1.5, svs=1.5)
    config.train.update(num_steps=20, log_every=1, checkpoint_every=10, keep_checkpoints=5)
    return config
"""


@pytest.fixture(scope="session")
def train_config_file(tmp_path_factory) -> pathlib.Path:
    """A config file (tiny model, tiny demo corpus) usable in-process and by ``python -m uniflow_jax.train``."""
    root = tmp_path_factory.mktemp("train_corpus")
    corpus = root / "demo"
    demo_corpus.build(corpus, num_train=4, num_val=2, speech_engine="numpy")
    captions = [
        json.loads(line)["caption"]
        for task in ("t2a", "t2m")
        for split in ("train", "val")
        for line in (corpus / split / task / "content.jsonl").read_text().splitlines()
    ]
    text.train_tokenizer((captions + list(instructions.all_texts())) * 5, corpus / "spiece", 256)
    path = root / "train_config.py"
    path.write_text(CONFIG_FILE.format(repo=REPO, corpus=corpus))
    return path
