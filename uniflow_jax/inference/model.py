"""A loaded model: weights from a converted release, a training run or a random init, on a mesh, with all a
request needs (frozen encoders, tokenizer, instructions, CLIP on demand)."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Sequence

import jax
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx

from uniflow_jax import config_lib, instructions, parallel, tasks
from uniflow_jax.frontends import score, text, video
from uniflow_jax.inference.generator import Generator
from uniflow_jax.models import clip, uniflow
from uniflow_jax.training import checkpoint
from uniflow_jax.training import state as train_state
from uniflow_jax.weights import converted as converted_folder
from uniflow_jax.weights import frozen as frozen_weights
from uniflow_jax.weights import release

FrozenSource = Callable[[jax.sharding.Mesh], tuple[nnx.GraphDef, nnx.State]]


@dataclasses.dataclass
class Request:
    """A model sample, its noise seed, its forced length in latent frames (or None: predicted), whether its
    length is its input's (SE/SR/V2A, each output frame conditioned on its own input frame), and its exact
    length in samples (or None: the latent length's)."""

    task: tasks.Task
    sample: dict
    seed: int = 0
    frames: int | None = None
    aligned: bool = False
    samples: int | None = None


class LoadedModel:
    """The flow model with its weights — a training run's checkpoint or a random init — placed on the mesh,
    its frozen VAE/T5 (CLIP on demand), the tokenizer and the instruction features: all a request needs.

    Build it with :meth:`from_workdir` or :meth:`random`.
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        load: Callable[[Callable[[], nnx.Module], train_state.TrainState], tuple[dict, int | None, str]],
        resource_dir: pathlib.Path | None = None,
        frozen: FrozenSource | None = None,
        clip_tower: FrozenSource | None = None,
    ):
        """``load(make, shardings)``: (the params of ``make()``'s module placed on ``shardings.params``, their
        checkpoint step or None, a description of the weights). ``resource_dir``: the checkpoint folder's
        front-end files (``svs/m4singer_pinyin2ph.txt``), or None. ``frozen`` / ``clip_tower``: ``mesh -> (graphdef,
        state)`` of the frozen encoders / the CLIP tower (default: the files ``model.frozen_weights`` names)."""
        self.config = config
        self.resource_dir = resource_dir
        self.cfg = config_lib.uniflow_config(config)
        self.clip_cfg = config_lib.clip_config(config)
        self.mesh = parallel.make_mesh(config.mesh.shape)
        rules = config_lib.mesh_rules(config)
        make = lambda: uniflow.UniFlow(self.cfg, rngs=nnx.Rngs(config.seed))  # noqa: E731  (as training builds it)
        with jax.set_mesh(self.mesh), parallel.axis_rules(rules):
            spec = train_state.ModelSpec.of(make)
            shardings = train_state.shardings(spec, optax.identity(), self.mesh, rules, ema=False)
            self.params, self.step, self.description = load(make, shardings)
            buffers = train_state.buffers(make, shardings)
            # The frozen parts as training builds them: a toy run with random frozen weights gets the same ones.
            frozen_state = (frozen or (lambda mesh: frozen_weights.frozen_encoders(config, mesh)))(self.mesh)
        state = nnx.merge_state(nnx.State(self.params), nnx.State(buffers))
        self.generator = Generator(self.cfg, (spec.graphdef, state), frozen_state)
        self.tokenizer = self._encode = None
        if config.data.tokenizer:
            longest = max(bucket["text"] for bucket in config.data.buckets)  # captions are cut there in training
            self.tokenizer = text.T5Tokenizer(config.data.tokenizer, max_length=longest)
            t5_def, t5_state = nnx.split(nnx.merge(*frozen_state).t5)
            self._encode = instructions.text_encoder(t5_def, t5_state, text.T5Tokenizer(config.data.tokenizer))
        self._bank = instructions.read_h5(config.model.instructions) if config.model.instructions else None
        self._encoded: dict[str, np.ndarray] = {}
        self._clip = None
        self._clip_source = clip_tower or (lambda mesh: frozen_weights.clip_encoder(config, mesh))

    @classmethod
    def random(cls, config: ml_collections.ConfigDict, seed: int, workdir: pathlib.Path) -> LoadedModel:
        """``config``'s model with random weights from ``seed``; without ``data.tokenizer``, one trained on the
        task instructions (written to ``workdir``, read at once)."""
        config = config.copy_and_resolve_references()
        config.seed = seed
        if not config.data.tokenizer:
            vocab = config.model.t5.vocab_size
            config.data.tokenizer = str(text.train_tokenizer(instructions.all_texts(), workdir / "spiece", vocab))

        def init(make, shardings) -> tuple[dict, None, str]:
            return train_state.create(make, optax.identity(), seed, shardings, ema=False).params, None, "RANDOM weights"

        return cls(config, init)

    @classmethod
    def from_workdir(
        cls, workdir: str | pathlib.Path, *, kind: str = "best", mesh_shape: Sequence[int] | None = None
    ) -> LoadedModel:
        """A run's model: ``kind`` "best" (the best params by validation, else the latest) or "latest"."""
        workdir = pathlib.Path(workdir)
        config = checkpoint.run_config(workdir)
        if config.get("objective", "uniflow") != "uniflow":
            raise ValueError(f"{workdir} trained objective {config.objective!r}; sampling needs a 'uniflow' run")
        if mesh_shape is not None:
            config.mesh.shape = tuple(mesh_shape)
        best = kind == "best"
        if best:
            try:
                metadata = checkpoint.read_metadata(workdir, best=True)
            except FileNotFoundError:
                logging.warning("%s has no best checkpoint (validation never ran): using the latest", workdir)
                best = False
        ema = not best and config.train.ema_decay > 0  # the best params are the EMA already when the run kept one

        def restore(make, shardings) -> tuple[dict, int, str]:
            abstract = train_state.abstract(make, optax.identity(), shardings, ema=False).params
            params, step = checkpoint.restore_params(workdir, abstract, best=best, ema=ema)
            detail = f"best by validation, val loss {metadata['val_loss']:.4g}" if best else "latest"
            return params, step, f"{workdir} step {step} ({detail}{', EMA' if ema else ''})"

        model = cls(config, restore)
        logging.info("loaded %s", model.description)
        return model

    @classmethod
    def from_converted(cls, folder: str | pathlib.Path, *, mesh_shape: Sequence[int] | None = None) -> LoadedModel:
        """A released checkpoint converted by ``python -m uniflow_jax.convert`` (weights, frozen encoders,
        instructions, tokenizer and front-end files all from ``folder``)."""
        folder = pathlib.Path(folder)
        config = converted_folder.read_config(folder)
        if mesh_shape is not None:
            config.mesh.shape = tuple(mesh_shape)
        cfg, clip_cfg, rules = (
            config_lib.uniflow_config(config),
            config_lib.clip_config(config),
            config_lib.mesh_rules(config),
        )

        def load(make, shardings) -> tuple[dict, None, str]:
            abstract = train_state.abstract(make, optax.identity(), shardings, ema=False).params
            return converted_folder.restore(folder, "model", abstract), None, f"{folder} (converted release)"

        def frozen(mesh):
            make = lambda: uniflow.FrozenEncoders(cfg, rngs=nnx.Rngs(0))  # noqa: E731
            return converted_folder.restore_module(folder, "frozen", make, mesh, rules)

        def clip_tower(mesh):
            make = lambda: clip.CLIPVisionEncoder(clip_cfg, rngs=nnx.Rngs(0))  # noqa: E731
            return converted_folder.restore_module(folder, "clip", make, mesh, rules)

        model = cls(config, load, resource_dir=folder, frozen=frozen, clip_tower=clip_tower)
        logging.info("loaded %s", model.description)
        return model

    def encode_text(self, sentence: str) -> np.ndarray:
        """An instruction → frozen-T5 features (L, D), as training encodes the instruction bank."""
        if self._encode is None:
            raise ValueError("the run has no data.tokenizer: free-text instructions cannot be encoded")
        if sentence not in self._encoded:
            self._encoded[sentence] = self._encode([sentence])[0]
        return self._encoded[sentence]

    def instruction(self, task: tasks.Task, free_text: str | None, index: int) -> np.ndarray:
        if free_text:
            return self.encode_text(free_text)
        if self._bank is not None:
            return instructions.select(self._bank, task.id, index)
        return self.encode_text(tasks.instructions()[task.id][index])

    def pinyin_table(self, path: str | pathlib.Path | None = None) -> dict[str, list[str]]:
        """The SVS pinyin → phones table: ``path``, else the one in :attr:`resource_dir`."""
        if path is None and self.resource_dir is not None:
            path = self.resource_dir / release.PINYIN_TABLE
        if path is None:
            raise ValueError(
                "a music score needs the pinyin table: give --pinyin_table m4singer_pinyin2ph.txt (a release "
                f"checkpoint folder has it as {release.PINYIN_TABLE})"
            )
        return score.read_pinyin_table(path)

    def caption_ids(self, caption: str) -> np.ndarray:
        if self.tokenizer is None:
            raise ValueError("the run has no data.tokenizer: captions (t2a, t2m) cannot be tokenised")
        return self.tokenizer.encode(caption)

    def clip_features(self, frames: np.ndarray) -> np.ndarray:
        """Video frames (N, H, W, 3) uint8 → per-frame features of the frozen CLIP (N, video_dim)."""
        if self._clip is None:
            graphdef, state = self._clip_source(self.mesh)
            forward = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x)[0])
            self._clip = lambda pixels: forward(state, pixels)
        return np.asarray(self._clip(video.clip_preprocess(frames, self.clip_cfg.image_size)))

    def generate(
        self, requests: Sequence[Request], *, num_steps: int, guidance_scale: float, bucketed: bool = True
    ) -> list[np.ndarray]:
        """One waveform per request (24 kHz), at its predicted, forced or exact length; each from its own seed,
        the same whatever its batch (``bucketed`` off: no padding beyond the longest request)."""
        waves = self.generator(
            [r.sample for r in requests],
            num_steps=num_steps,
            guidance_scale=guidance_scale,
            seeds=[r.seed for r in requests],
            frames=[r.frames for r in requests],
            aligned=[r.aligned for r in requests],
            bucketed=bucketed,
        )
        return [wave if r.samples is None else wave[: r.samples] for wave, r in zip(waves, requests, strict=True)]
