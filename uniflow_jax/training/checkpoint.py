"""Checkpoints of a run (orbax): the latest K full states for resuming, plus the best params by validation.

``<workdir>/checkpoints/<step>/``: ``state`` (the sharded train state), ``data`` (the input iterator's state
— every host walks the same global stream, so one copy serves every host count), ``metadata`` (step,
process count, mesh, the config). Saves are asynchronous and atomic: orbax writes into a temporary folder and
renames it when complete, so a kill at any moment leaves the previous checkpoints intact (temporary leftovers
are removed at the next start). ``<workdir>/best/<step>/``: ``params`` (EMA when kept) and ``metadata`` of
the lowest validation loss.

Restoring builds abstract targets with the *current* mesh's shardings, so a checkpoint written on 8 devices
restores on 1 or 4.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from uniflow_jax.training.state import TrainState

# Orbax splits every replicated array across its replicas so each writes a share — worth it for big arrays
# on a pod, but each split is an eager slice compiled per shape: ~20 s for the first save of a small model
# on 8 devices. Arrays whose share would be under this size are written whole by one replica.
MIN_BYTES_PER_REPLICA_WRITE = 4 << 20


def register_array_handler() -> None:
    """Makes orbax write small replicated arrays from one replica (see ``MIN_BYTES_PER_REPLICA_WRITE``)."""
    handler = ocp.type_handlers.ArrayHandler(min_slice_bytes_for_replica_parallel=MIN_BYTES_PER_REPLICA_WRITE)
    ocp.type_handlers.register_type_handler(jax.Array, handler, override=True)


class Checkpointer:
    def __init__(self, workdir: str | pathlib.Path, *, keep: int = 2, asynchronous: bool = True):
        register_array_handler()
        workdir = pathlib.Path(workdir).absolute()
        self.manager = ocp.CheckpointManager(
            workdir / "checkpoints",
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True, enable_async_checkpointing=asynchronous, cleanup_tmp_directories=True
            ),
        )
        self.best = ocp.CheckpointManager(
            workdir / "best",
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1,
                best_fn=lambda metrics: metrics["val_loss"],
                best_mode="min",
                create=True,
                enable_async_checkpointing=asynchronous,
                cleanup_tmp_directories=True,
            ),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: TrainState, data_state: Any, metadata: Mapping[str, Any]) -> None:
        """Starts an asynchronous save of everything needed to resume at ``step``."""
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state.to_dict()),
                data=ocp.args.JsonSave(data_state),
                metadata=ocp.args.JsonSave(dict(metadata)),
            ),
            force=True,
        )

    def restore(
        self, abstract_state: TrainState, buffers: dict, step: int | None = None
    ) -> tuple[TrainState, Any, dict]:
        """(state on the current mesh, data-iterator state, metadata) of ``step`` (default: the latest)."""
        step = self.manager.latest_step() if step is None else step
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state.to_dict()),
                data=ocp.args.JsonRestore(),
                metadata=ocp.args.JsonRestore(),
            ),
        )
        return TrainState.from_dict(dict(restored["state"]), buffers), restored["data"], dict(restored["metadata"])

    def save_best(self, step: int, params: dict, val_loss: float, metadata: Mapping[str, Any]) -> None:
        """Keeps ``params`` if ``val_loss`` is the lowest so far (orbax drops the worse one)."""
        self.best.save(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardSave(params), metadata=ocp.args.JsonSave({**metadata, "val_loss": val_loss})
            ),
            metrics={"val_loss": float(val_loss)},
            force=True,
        )

    def wait(self) -> None:
        self.manager.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
        self.best.close()


def run_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
    """The config a training run wrote to ``<workdir>/config.json`` (lists where it had tuples)."""
    path = pathlib.Path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {workdir} a workdir of python -m uniflow_jax.train?")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


def read_metadata(workdir: str | pathlib.Path, step: int | None = None, *, best: bool = False) -> dict:
    """The metadata of a checkpoint (latest, or the best) without restoring arrays."""
    root = pathlib.Path(workdir) / ("best" if best else "checkpoints")
    steps = sorted(int(p.name) for p in root.iterdir() if p.name.isdigit()) if root.exists() else []
    if not steps:
        raise FileNotFoundError(f"no {'best ' if best else ''}checkpoint in {root}")
    step = steps[-1] if step is None else step
    return json.loads((root / str(step) / "metadata" / "metadata").read_text())


def restore_params(
    workdir: str | pathlib.Path, abstract_params: dict, *, best: bool = False, ema: bool = False
) -> tuple[dict, int]:
    """Params only (for sampling, export or fine-tuning) from a run's latest or best checkpoint — the EMA
    copy with ``ema`` — placed on the shardings of ``abstract_params`` (ShapeDtypeStructs); and the step."""
    root = pathlib.Path(workdir).absolute() / ("best" if best else "checkpoints")
    with ocp.CheckpointManager(root, options=ocp.CheckpointManagerOptions(create=False)) as manager:
        step = manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {root}")
        if best:
            args = ocp.args.Composite(params=_partial(abstract_params))
            return manager.restore(step, args=args)["params"], step
        name = "ema" if ema else "params"
        return manager.restore(step, args=ocp.args.Composite(state=_partial({name: abstract_params})))["state"][
            name
        ], step


def _partial(target: Any) -> ocp.args.PyTreeRestore:
    """Restores the subtree ``target`` names (with its shardings) and nothing else of the saved tree."""
    restore_args = ocp.checkpoint_utils.construct_restore_args(target)
    return ocp.args.PyTreeRestore(target, restore_args=restore_args, partial_restore=True)
