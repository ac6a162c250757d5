"""Export trained params to safetensors with the original PyTorch names, so the original project loads them.

    python -m uniflow_jax.export --workdir RUN --out model.safetensors [--checkpoint_kind latest|best] [--ema]

A UniFlow run gives the trainable part of the original ``{Dummy,Hybrid}ContentAudioFlowMatching`` state
dict (the frozen VAE and T5 are the user's own files); a VAE run (``objective="vae"``) gives a StableVAE
state dict, which ``model.frozen_weights.vae`` of a flow-model config reads.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import jax
import numpy as np
from absl import flags
from flax import nnx
from safetensors.numpy import save_file

from uniflow_jax import cli, parallel
from uniflow_jax.training import checkpoint, objectives
from uniflow_jax.training.state import ModelSpec, pure_values
from uniflow_jax.weights import torch_import


def export(workdir: str | pathlib.Path, out: str | pathlib.Path, *, best: bool = False, ema: bool = False) -> int:
    """Writes the run's params to ``out``; returns the checkpoint step."""
    config = checkpoint.run_config(workdir)
    make, names = objectives.trained_module(config)
    spec = ModelSpec.of(lambda: make(nnx.Rngs(0)))
    mesh = parallel.make_mesh((1, 1, 1), jax.devices()[:1])
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    abstract = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), pure_values(spec.abstract_params)
    )
    params, step = checkpoint.restore_params(workdir, abstract, best=best, ema=ema)
    tensors = torch_import.export_state(spec.annotated(jax.tree.map(np.asarray, params)), names)
    pathlib.Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata={"step": str(step), "objective": config.objective})
    return step


FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Defined only when run as a program, so that importing :func:`export` adds no flags to another tool."""
    flags.DEFINE_string("workdir", None, "A run folder of python -m uniflow_jax.train.")
    flags.DEFINE_string("out", None, "Output .safetensors file.")
    flags.DEFINE_enum("checkpoint_kind", "latest", ["latest", "best"], "The latest checkpoint or the best by val.")
    flags.DEFINE_bool("ema", False, "Export the EMA params (runs with train.ema_decay > 0).")


def main(argv: Sequence[str]) -> None:
    del argv
    if not FLAGS.workdir or not FLAGS.out:
        raise flags.ValidationError("usage: python -m uniflow_jax.export --workdir RUN --out model.safetensors")
    step = export(FLAGS.workdir, FLAGS.out, best=FLAGS.checkpoint_kind == "best", ema=FLAGS.ema)
    print(f"wrote {FLAGS.out}: params of step {step} with the original names")


if __name__ == "__main__":
    _define_flags()
    cli.run(main)
