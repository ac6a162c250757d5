"""Input-pipeline throughput on this machine: ``python -m uniflow_jax.data.throughput --config configs/tiny.py``.

    python -m uniflow_jax.data.throughput --config configs/tiny.py [--corpus DIR] [--batch_size 16] [--batches 40]
        [--workers 0,2]

Reads the demo corpus (built into a temporary folder unless ``--corpus`` names one) with the config's buckets
and the realistic mix of the original recipe (all seven tasks, ``time_align_balanced`` weights) and prints
batches/s, samples/s and seconds of audio per second: with on-the-fly decoding for each worker count, and
from the latent cache (written first, with the config's frozen encoders).
"""

from __future__ import annotations

import json
import pathlib
import tempfile
import time

import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from uniflow_jax import instructions
from uniflow_jax.data import cache, pipeline
from uniflow_jax.demo import corpus as demo_corpus
from uniflow_jax.demo import specs as demo_specs
from uniflow_jax.frontends import text


def _define_flags() -> None:
    """Flags of the command (defined only when run, so importing this module defines none)."""
    config_flags.DEFINE_config_file("config", None, "The model config (configs/tiny.py).", lock_config=False)
    flags.mark_flag_as_required("config")
    flags.DEFINE_string("corpus", None, "A demo corpus folder (default: build one in a temporary folder).")
    flags.DEFINE_integer("batch_size", 16, "Samples per batch.")
    flags.DEFINE_integer("batches", 40, "Timed batches per setting (after 3 warm-up batches).")
    flags.DEFINE_list("workers", ["0", "2"], "Worker-process counts to measure (0: threads only).")
    flags.DEFINE_bool("cached", True, "Also measure reading the latent cache.")
    flags.DEFINE_string("json", None, "Write the figures to this JSON file too.")


def demo_config(
    config: ml_collections.ConfigDict, corpus: pathlib.Path, workdir: pathlib.Path
) -> ml_collections.ConfigDict:
    """``config`` reading the demo corpus (video files through CLIP pixels), with a tokenizer trained on it."""
    config = config.copy_and_resolve_references()
    config.data.train = demo_specs.dataset_specs(str(corpus), "train")
    captions = [
        json.loads(line)["caption"]
        for task in ("t2a", "t2m")
        for line in (corpus / "train" / task / "content.jsonl").read_text().splitlines()
    ]
    texts = list(instructions.all_texts()) + captions
    config.data.tokenizer = str(text.train_tokenizer(texts, workdir / "spiece", config.model.t5.vocab_size))
    config.data.video_input = "frames"
    return config


def measure(config: ml_collections.ConfigDict, batch_size: int, batches: int) -> dict:
    iterator = iter(pipeline.train_dataset(config, batch_size))
    for _ in range(3):
        next(iterator)
    start, seconds = time.perf_counter(), 0.0
    for _ in range(batches):
        batch = next(iterator)
        seconds += float(np.sum(batch["waveform_lengths"])) / config.model.sample_rate
    elapsed = time.perf_counter() - start
    return {
        "batches_per_s": batches / elapsed,
        "samples_per_s": batches * batch_size / elapsed,
        "audio_seconds_per_s": seconds / elapsed,
    }


def main(argv: list[str]) -> None:
    del argv
    f = flags.FLAGS
    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(tmp)
        corpus = pathlib.Path(f.corpus) if f.corpus else workdir / "corpus"
        if not f.corpus:
            demo_corpus.build(corpus)
        config = demo_config(f.config, corpus, workdir)
        results = {}
        for workers in map(int, f.workers):
            config.data.worker_count = workers
            results[f"on_the_fly_workers_{workers}"] = measure(config, f.batch_size, f.batches)
        if f.cached:
            started = time.perf_counter()
            cache.build(config, workdir / "cache", ["train"])
            results["cache_build_seconds"] = time.perf_counter() - started
            config.data.cache, config.data.worker_count = str(workdir / "cache"), 0
            results["cached_workers_0"] = measure(config, f.batch_size, f.batches)
    print(f"input pipeline, demo corpus, batch {f.batch_size}, {f.batches} batches per setting:")
    for name, figures in results.items():
        if isinstance(figures, dict):
            print(
                f"  {name:24s} {figures['batches_per_s']:7.2f} batches/s {figures['samples_per_s']:8.1f} samples/s"
                f" {figures['audio_seconds_per_s']:8.1f} s of audio/s"
            )
        else:
            print(f"  {name:24s} {figures:7.1f} s")
    if f.json:
        pathlib.Path(f.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
