"""Will it fit, how fast can it go: ``python -m uniflow_jax.aot --config configs/<size>.py --topology v5e-16``.

Compiles the real train step (``--part train``: the one ``python -m uniflow_jax.train`` runs, with the config's
mesh, shardings, remat policy, gradient accumulation and donated state, on the largest bucket) or the real
sampler + VAE decode (``--part sample``, one chip of the slice) for a TPU slice, on this host — no TPU needed,
only libtpu (``pip install -e ".[tpu]"``) — and prints the TPU compiler's own per-chip memory against the chip's
HBM (fits / does not fit, with the margin), its FLOP count beside our analytic one, bytes accessed, the roofline
lower bound on the step time and the MFU ceiling it implies. ``--save`` serialises the compiled program; ``python -m
uniflow_jax.train --compiled=FILE`` on that slice runs the saved train step instead of compiling it.

Examples::

    python -m uniflow_jax.aot --config configs/large.py --topology v5e-16
    python -m uniflow_jax.aot --config configs/large.py --topology v5e-16 --config.train.grad_accum_steps=4
    python -m uniflow_jax.aot --config configs/base.py --topology v5p-8 --config.mesh.shape='(1,-1,1)'
    python -m uniflow_jax.aot --config configs/small.py --topology v5e-1 --part sample
"""

from __future__ import annotations

import json
import pathlib
import sys
from collections.abc import Sequence

from absl import flags
from ml_collections import config_flags

from uniflow_jax import cli, hardware, planning
from uniflow_jax.training import step as train_step

FLAGS = flags.FLAGS


def _define_flags() -> None:
    config_flags.DEFINE_config_file("config", None, "Experiment config (configs/<size>.py).", lock_config=False)
    flags.DEFINE_string("topology", None, "TPU slice as Cloud TPU names it: v5e-8, v5e-16, v5p-8, v6e-8, ...")
    flags.DEFINE_integer("num_slices", 1, "Slices joined over the data-centre network (multislice).")
    flags.DEFINE_enum("part", "train", ["train", "sample"], "The train step, or the sampler + VAE decode.")
    flags.DEFINE_integer("bucket", -1, "Train: which of data.buckets (default the largest, the most memory).")
    flags.DEFINE_bool("count", True, "Count FLOPs and bytes on unrolled twins (a few more, smaller compiles).")
    flags.DEFINE_bool("memory", True, "Compile the program itself for its memory (false: only count, on the twins).")
    flags.DEFINE_integer("sampler_batch", 8, "Sample: requests per batch.")
    flags.DEFINE_float("sampler_seconds", 10.0, "Sample: seconds of audio per request.")
    flags.DEFINE_integer("sampler_steps", 25, "Sample: Euler steps.")
    flags.DEFINE_float("guidance", 5.0, "Sample: classifier-free guidance scale.")
    flags.DEFINE_string(
        "save", None, "Write the compiled train step here: `train --compiled=FILE` on that slice loads it."
    )
    flags.DEFINE_string("json", None, "Also write the figures to this JSON file.")
    flags.mark_flags_as_required(["config", "topology"])


def main(argv: Sequence[str]) -> None:
    del argv
    if FLAGS.save and (FLAGS.part != "train" or not FLAGS.memory):
        sys.exit("error: --save writes the train step (--part=train, compiled: --memory=true), the program "
                 "`train --compiled` loads; nothing loads a saved sampler")  # fmt: skip
    sampler = dict(batch=FLAGS.sampler_batch, seconds=FLAGS.sampler_seconds, steps=FLAGS.sampler_steps,
                   guidance=FLAGS.guidance)  # fmt: skip
    try:
        figures = planning.plan(FLAGS.config, FLAGS.topology, part=FLAGS.part, num_slices=FLAGS.num_slices,
                                counted=FLAGS.count, memory=FLAGS.memory, bucket=FLAGS.bucket,
                                sampler=sampler)  # fmt: skip
    except (hardware.LibTPUMissing, ValueError) as e:
        sys.exit(f"error: {e}")
    compiled = figures.pop("compiled", None)
    figures["config"] = pathlib.Path(config_flags.get_config_filename(FLAGS["config"])).stem
    print(planning.describe(figures))
    if FLAGS.save and compiled is None:
        print(f"not written to {FLAGS.save}: the compiler refused the program")
    elif FLAGS.save:
        train_step.save_program(compiled, FLAGS.save)
        print(f"wrote the compiled train step to {FLAGS.save} (on {FLAGS.topology}: train --compiled={FLAGS.save})")
    if FLAGS.json:
        pathlib.Path(FLAGS.json).write_text(json.dumps(cli.json_ready(figures), indent=1) + "\n")
        print(f"wrote {FLAGS.json}")


if __name__ == "__main__":
    _define_flags()
    cli.run(main)
