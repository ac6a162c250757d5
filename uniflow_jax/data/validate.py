"""Check every manifest and audio file of a config before training: ``python -m uniflow_jax.data.validate``.

    python -m uniflow_jax.data.validate --config configs/demo.py [--splits train,val] [--noaudio]

Reads each dataset's manifests (a malformed line is reported as ``file:line: reason``), then loads every
row exactly as training would (audio checks, content, crops) and prints, per dataset, the usable rows,
their hours and the skipped rows per reason. Exit status 1 when a manifest is malformed, 0 otherwise.
"""

from __future__ import annotations

import collections
import dataclasses
import sys

import grain
from absl import app, flags
from ml_collections import config_flags
from tqdm import tqdm

from uniflow_jax.data import pipeline
from uniflow_jax.data.loader import SKIP_REASONS, ExampleLoader
from uniflow_jax.data.manifest import DatasetSpec, ManifestError, ManifestSource


def _define_flags() -> None:
    """Flags of the command (defined only when run, so importing this module defines none)."""
    config_flags.DEFINE_config_file("config", None, "Experiment config (a get_config() file).")
    flags.DEFINE_list("splits", ["train", "val"], "Dataset lists of config.data to check.")
    flags.DEFINE_bool("audio", True, "Also load every row (audio checks, content, crops).")
    flags.DEFINE_integer("threads", 8, "Reader threads.")
    flags.mark_flags_as_required(["config"])


def check_rows(config, sources: list[ManifestSource], threads: int) -> list[dict]:
    """Loads every row of every source once; per dataset: rows, usable, seconds, skips per reason."""
    options = dataclasses.replace(pipeline.load_options(config), on_bad_input="skip")
    loader = ExampleLoader(sources, options)
    reports = []
    for i, source in enumerate(sources):
        rows = pipeline.tagged_rows(source, i).random_map(loader, seed=config.seed)
        skips: collections.Counter = collections.Counter()
        seconds = 0.0
        read = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=4 * threads)
        for sample in tqdm(rows.to_iter_dataset(read), total=len(source), desc=source.spec.label, leave=False):
            if "skip" in sample:
                skips[sample["skip"]] += 1
            else:
                seconds += len(sample["waveform"]) / options.sample_rate
        reports.append(
            {"dataset": source.spec.label, "task": source.spec.task, "rows": len(source), "seconds": seconds}
            | {"usable": len(source) - sum(skips.values()), "skips": dict(skips)}
        )
    return reports


def format_report(reports: list[dict]) -> str:
    lines = [f"{'dataset':32s} {'task':4s} {'rows':>7s} {'usable':>7s} {'hours':>7s}  skipped"]
    for r in reports:
        skipped = ", ".join(f"{k} {r['skips'][k]}" for k in SKIP_REASONS if r["skips"].get(k)) or "-"
        hours = r["seconds"] / 3600
        lines.append(f"{r['dataset'][:32]:32s} {r['task']:4s} {r['rows']:7d} {r['usable']:7d} {hours:7.3f}  {skipped}")
    return "\n".join(lines)


def validate(config, splits: list[str], audio: bool, threads: int) -> int:
    """Prints the reports of ``splits``; returns the exit status."""
    status = 0
    for split in splits:
        entries = list(config.data[split])
        print(f"== {split}: {len(entries)} dataset(s)")
        sources = []
        for entry in entries:
            try:
                sources.append(ManifestSource(DatasetSpec.from_config(entry), "skip"))
            except (ManifestError, KeyError) as error:
                print(f"MALFORMED {error}")
                status = 1
        if audio and sources:
            print(format_report(check_rows(config, sources, threads)))
        else:
            for source in sources:
                print(f"{source.spec.label}: {len(source)} rows, manifests OK")
    if status:
        print("validation FAILED: fix the manifest lines above", file=sys.stderr)
    return status


def main(argv: list[str]) -> None:
    del argv
    f = flags.FLAGS
    sys.exit(validate(f.config, f.splits, f.audio, f.threads))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
