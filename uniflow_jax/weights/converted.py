"""A folder written by ``python -m uniflow_jax.convert``: our config and one orbax checkpoint of the release's
weights (items ``model``, ``frozen`` and, when converted with ``--clip``, ``clip``); writing it and restoring it
sharded on a mesh."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable

import jax
import ml_collections
import orbax.checkpoint as ocp
from flax import nnx

from uniflow_jax import parallel
from uniflow_jax.weights import release

ITEMS = ("model", "frozen", "clip")
WEIGHTS_DIR = "weights"


def write(converted: release.Converted, out: str | pathlib.Path) -> None:
    """``converted`` as our config + one orbax checkpoint (float32 arrays)."""
    out = pathlib.Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(converted.config.to_json_best_effort(indent=1))
    trees = {name: nnx.to_pure_dict(getattr(converted, name)) for name in ITEMS if getattr(converted, name) is not None}
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
        args = {name: ocp.args.StandardSave(tree) for name, tree in trees.items()}
        checkpointer.save(out / WEIGHTS_DIR, ocp.args.Composite(**args), force=True)


def restore(folder: str | pathlib.Path, item: str, abstract: dict) -> dict:
    """One item of a converted checkpoint, placed on the shardings of ``abstract`` (ShapeDtypeStructs)."""
    if item not in ITEMS:
        raise ValueError(f"item must be one of {ITEMS}, got {item!r}")
    path = pathlib.Path(folder).absolute() / WEIGHTS_DIR
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {folder} a folder written by python -m uniflow_jax.convert?")
    if not has_item(folder, item):
        hint = " (convert again with --clip CLIP_FOLDER, or give V2A --video_features)" if item == "clip" else ""
        raise FileNotFoundError(f"{folder} was converted without its {item!r} weights{hint}")
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
        restored = checkpointer.restore(path, ocp.args.Composite(**{item: ocp.args.StandardRestore(abstract)}))
    return restored[item]


def has_item(folder: str | pathlib.Path, item: str) -> bool:
    """Whether a converted folder holds ``item`` (a release converted without ``--clip`` has no ``clip``)."""
    return (pathlib.Path(folder) / WEIGHTS_DIR / item).is_dir()


def read_config(folder: str | pathlib.Path) -> ml_collections.ConfigDict:
    """A converted folder's config, its folder-relative paths (instructions, tokenizer) made absolute."""
    folder = pathlib.Path(folder)
    path = folder / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {folder} a folder written by python -m uniflow_jax.convert?")
    config = ml_collections.ConfigDict(json.loads(path.read_text()))
    for holder, key in ((config.model, "instructions"), (config.data, "tokenizer")):
        if holder[key] and not pathlib.Path(holder[key]).is_absolute():
            holder[key] = str(folder.absolute() / holder[key])
    return config


def restore_module(
    folder: str | pathlib.Path,
    item: str,
    make: Callable[[], nnx.Module],
    mesh: jax.sharding.Mesh,
    rules: parallel.LogicalRules,
) -> tuple[nnx.GraphDef, nnx.State]:
    """``make()``'s module with the weights of ``item``, placed on ``mesh`` by its logical axes."""
    graphdef, abstract = nnx.split(nnx.eval_shape(make))
    shardings = parallel.state_shardings(abstract, mesh, rules)
    target = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        nnx.to_pure_dict(abstract),
        nnx.to_pure_dict(shardings),
    )
    nnx.replace_by_pure_dict(abstract, restore(folder, item, target))
    return graphdef, abstract
