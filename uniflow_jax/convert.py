"""Convert a released UniFlow-Audio v1 checkpoint once; then ``python -m uniflow_jax.sample --checkpoint OUT``.

    python -m uniflow_jax.convert --release UniFlow-Audio-small --t5 flan-t5-large \\
        --clip clip-vit-large-patch14 --out converted/small [--fusion dummy|hybrid]

``OUT`` holds our ``config.json``, one orbax checkpoint ``weights/`` with three items (``model``: the
trainable flow model, ``frozen``: VAE + Flan-T5 encoder, ``clip``: the CLIP vision tower; without ``--clip``
there is none, and V2A then takes precomputed ``--video_features`` only), the instruction
HDF5, the T5 tokenizer and the release's resource files (phone sets, singers, pinyin table), and
``conversion.json`` (sources, parameter counts, time and peak memory). Nothing is downloaded.
"""

from __future__ import annotations

import json
import pathlib
import resource
import shutil
import time
from collections.abc import Sequence

import jax
from absl import flags, logging

from uniflow_jax import cli
from uniflow_jax.weights import converted as converted_folder
from uniflow_jax.weights import release


def peak_memory_gib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def convert_release(
    release_dir: str | pathlib.Path,
    t5_dir: str | pathlib.Path,
    clip_dir: str | pathlib.Path | None,
    out: str | pathlib.Path,
    *,
    fusion: str | None = None,
) -> dict:
    """Converts and writes everything; returns the report also written to ``OUT/conversion.json``."""
    start = time.perf_counter()
    release_dir, t5_dir, out = pathlib.Path(release_dir), pathlib.Path(t5_dir), pathlib.Path(out)
    converted = release.convert(release_dir, t5_dir, clip_dir)
    config = converted.config
    if fusion is not None:
        config.model.fusion = fusion  # the tensors are the same for both variants; only inference differs
    out.mkdir(parents=True, exist_ok=True)
    for name in (*release.RESOURCE_FILES, release.INSTRUCTIONS_FILE):
        source = release_dir / name
        if source.exists():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, out / name)
        else:
            logging.warning("%s has no %s: the front ends that need it will ask for it", release_dir, name)
    # Paths inside the folder are relative to it (the sampler resolves them), so the folder can move.
    config.model.instructions = release.INSTRUCTIONS_FILE if (out / release.INSTRUCTIONS_FILE).exists() else ""
    if (t5_dir / "spiece.model").exists():
        shutil.copyfile(t5_dir / "spiece.model", out / "spiece.model")
        config.data.tokenizer = "spiece.model"
    else:
        logging.warning("%s has no spiece.model: captions cannot be tokenised", t5_dir)
    converted_folder.write(converted, out)
    report = {
        "release": str(release_dir.absolute()),
        "t5": str(t5_dir.absolute()),
        "clip": None if clip_dir is None else str(pathlib.Path(clip_dir).absolute()),
        "fusion": config.model.fusion,
        "parameters": converted.counts,
        "seconds": round(time.perf_counter() - start, 1),
        "peak_memory_gib": round(peak_memory_gib(), 2),
    }
    (out / "conversion.json").write_text(json.dumps(report, indent=1))
    return report


def _define_flags() -> None:
    flags.DEFINE_string("release", None, "Released folder: config.yaml, model.safetensors, VAE checkpoint, ...")
    flags.DEFINE_string("t5", None, "Flan-T5-large Hugging Face folder (config.json, *.safetensors, spiece.model).")
    flags.DEFINE_string(
        "clip",
        None,
        "CLIP ViT-L/14 Hugging Face folder (config.json, *.safetensors); only V2A from video files needs it.",
    )
    flags.DEFINE_string("out", None, "Output folder.")
    flags.DEFINE_enum("fusion", None, ["dummy", "hybrid"], "Override the content-fusion variant of config.yaml.")


def main(argv: Sequence[str]) -> None:
    del argv
    values = flags.FLAGS
    if not all((values.release, values.t5, values.out)):
        raise flags.ValidationError(
            "usage: python -m uniflow_jax.convert --release DIR --t5 DIR [--clip DIR] --out OUT"
        )
    with jax.default_device(jax.devices("cpu")[0]):
        report = convert_release(values.release, values.t5, values.clip, values.out, fusion=values.fusion)
    counts = ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in report["parameters"].items())
    print(f"wrote {values.out}: {counts} parameters ({report['fusion']} fusion) in {report['seconds']} s, "
          f"peak memory {report['peak_memory_gib']} GiB")  # fmt: skip


if __name__ == "__main__":
    _define_flags()
    cli.run(main)
