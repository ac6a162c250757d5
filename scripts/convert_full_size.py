"""Convert a synthetic *full-size* release (random values under the real names and shapes of the key
manifests) and print the converter's time and peak memory.

    python scripts/convert_full_size.py [--size base] [--manifests ../shared/upstream_ref] [--work DIR]

The folder is built first (model.safetensors, the VAE .pt, Flan-T5-large and CLIP ViT-L/14 folders: ~7 GB
for ``base``), then ``python -m uniflow_jax.convert`` runs in its own process so that its peak memory is
its own. ``--work`` keeps the files (default: a temporary folder, deleted afterwards).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

from uniflow_jax import config_lib
from uniflow_jax.weights import key_manifest, synthetic

MANIFESTS = {
    "model": "state_dict_flow_matching_{size}.txt",
    "vae": "state_dict_stable_vae.txt",
    "t5": "state_dict_flan_t5_large_encoder.txt",
    "clip": "state_dict_clip_vit_large_patch14_vision.txt",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="base", choices=["small", "base", "large"])
    parser.add_argument("--manifests", default=str(pathlib.Path(__file__).resolve().parents[2] / "shared/upstream_ref"))
    parser.add_argument("--work", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = pathlib.Path(args.work or scratch)
        start = time.perf_counter()
        shapes = {
            part: key_manifest.read_manifest(pathlib.Path(args.manifests) / name.format(size=args.size))
            for part, name in MANIFESTS.items()
        }
        shapes["t5"].pop("shared.weight")  # tied to encoder.embed_tokens.weight; a real folder may hold either
        release, t5_dir, clip_dir = synthetic.build(root, config_lib.base_config(args.size), shapes)
        size_gb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e9
        print(f"built a synthetic {args.size} release + Flan-T5 + CLIP ({size_gb:.1f} GB) in "
              f"{time.perf_counter() - start:.0f} s")  # fmt: skip
        out = root / "converted"
        command = [sys.executable, "-m", "uniflow_jax.convert", f"--release={release}", f"--t5={t5_dir}",
                   f"--clip={clip_dir}", f"--out={out}"]  # fmt: skip
        subprocess.run(command, check=True)
        report = json.loads((out / "conversion.json").read_text())
        print(json.dumps({k: report[k] for k in ("parameters", "seconds", "peak_memory_gib")}))


if __name__ == "__main__":
    main()
