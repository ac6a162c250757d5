"""Train UniFlow (or its VAE) at any scale: ``python -m uniflow_jax.train --config configs/<name>.py --workdir DIR``.

The same command runs on one CPU, a GPU cluster or a TPU pod slice (every process runs it; see README).
A workdir with checkpoints is resumed from the latest one; SIGTERM (preemption) saves at the next step
boundary and exits cleanly. The loop itself is ``training/loop.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from absl import flags, logging
from ml_collections import config_flags

from uniflow_jax import cli, parallel
from uniflow_jax.training import loop

FLAGS = flags.FLAGS


def _define_flags() -> None:
    config_flags.DEFINE_config_file("config", None, "Experiment config (configs/<name>.py).", lock_config=False)
    flags.DEFINE_string("workdir", None, "Run folder: checkpoints, metrics.jsonl, TensorBoard.", required=True)
    flags.DEFINE_string("coordinator_address", None, "Multi-process runs off TPU/SLURM: host:port of process 0.")
    flags.DEFINE_integer("num_processes", None, "Multi-process runs: how many processes.")
    flags.DEFINE_integer("process_id", None, "Multi-process runs: this process's index.")
    flags.DEFINE_multi_string(
        "compiled",
        [],
        "A train step compiled ahead (python -m uniflow_jax.aot --save) for "
        "these devices: its batch shape is not compiled again (repeat for several buckets).",
    )
    flags.mark_flag_as_required("config")


def main(argv: Sequence[str]) -> None:
    del argv
    parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    logging.info("process %d of %d, %d devices", jax.process_index(), jax.process_count(), jax.device_count())
    loop.train(FLAGS.config, FLAGS.workdir, compiled=FLAGS.compiled)


if __name__ == "__main__":
    _define_flags()
    cli.run(main)
