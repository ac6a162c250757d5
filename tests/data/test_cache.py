"""The latent cache: written once with the frozen encoders, read back by the same pipeline, same loss."""

import jax
import jax.numpy as jnp
import numpy as np
from conftest import ROWS, make_config
from flax import nnx

from uniflow_jax import config_lib, instructions, nnx_utils, parallel, tasks
from uniflow_jax.data import cache, pipeline
from uniflow_jax.models import uniflow
from uniflow_jax.training import objectives


def with_instructions(batch: dict, dim: int) -> dict:
    """The train step's bank lookup, with a random bank of 70 instructions of 5 tokens."""
    bank = np.random.default_rng(0).standard_normal((len(tasks.TASKS) * 10, 5, dim)).astype(np.float32)
    out = {k: v for k, v in batch.items() if k not in pipeline.HOST_KEYS}
    out["instruction"] = bank[batch["instruction_id"]]
    out["instruction_mask"] = np.ones(out["instruction"].shape[:2], bool)
    return out


def test_cached_batches_match_on_the_fly_batches(tmp_path, corpus):
    config = make_config(corpus, crop_seconds=dict(se=5.0, sr=5.0, t2m=5.0, v2a=5.0))  # clips are shorter
    summary = cache.build(config, tmp_path / "cache", ["train"])
    assert summary["train"]["examples"] == {t.short: ROWS for t in tasks.TASKS}
    assert summary["train"]["skips"] == "skipped rows: none"

    raw = next(iter(pipeline.train_dataset(config, 8)))
    config.data.cache = str(tmp_path / "cache")
    stream = iter(pipeline.train_dataset(config, 8))
    read = next(stream)
    np.testing.assert_array_equal(raw["id"], read["id"])
    for key in ("task", "instruction_id", "waveform_lengths", "audio_lengths", "duration", "phoneme", "video"):
        np.testing.assert_array_equal(raw[key], read[key], err_msg=key)
    assert "waveform" not in read and "text_ids" not in read
    frames = raw["waveform"].shape[1] // 480
    assert read["waveform_mean"].shape == (8, frames, config.model.vae.latent_dim)
    assert read["text_features"].shape == (8, raw["text_ids"].shape[1], config.model.t5.d_model)

    # The loss on cached features (written with the cache command's encoders) equals the loss with the encoders
    # that training runs on the fly: both come from weights/frozen.py's random-weight rule (no weight files).
    cfg = config_lib.uniflow_config(config)
    mesh = parallel.make_mesh((8, 1, 1))
    with jax.set_mesh(mesh):
        model_def, state = nnx_utils.create_sharded(lambda: uniflow.UniFlow(cfg, rngs=nnx.Rngs(0)), mesh)
        # The frozen encoders as training builds them (a random instruction bank file: the loss below brings its own).
        bank = {instructions.key(t.id, k): np.zeros((3, config.model.t5.d_model), np.float32)
                for t in tasks.TASKS for k in range(tasks.NUM_INSTRUCTIONS)}  # fmt: skip
        instructions.write_h5(bank, tmp_path / "bank.h5")
        config.model.instructions = str(tmp_path / "bank.h5")
        objective = objectives.make(config, mesh)
        frozen_def, frozen_state = objective.frozen_graphdef, objective.frozen["encoders"]

    @jax.jit
    def loss(s, f, b):
        model = nnx.merge(model_def, s)
        return model.loss(nnx.merge(frozen_def, f), b, model.draws(jax.random.key(3), b)).total

    # Cached posteriors equal the on-the-fly VAE's at every valid frame (XLA's conv order aside).
    moments = jax.jit(lambda f, w: nnx.merge(frozen_def, f).vae.encode_moments(w))
    mean, _ = moments(frozen_state, jnp.asarray(raw["waveform"]))
    valid = np.arange(frames)[None] < (raw["waveform_lengths"] // 480)[:, None]
    np.testing.assert_allclose(read["waveform_mean"][valid], np.asarray(mean)[valid], atol=1e-6)
    d = config.model.content_dim
    on_the_fly = loss(state, frozen_state, jax.tree.map(jnp.asarray, with_instructions(raw, d)))
    from_cache = loss(state, frozen_state, jax.tree.map(jnp.asarray, with_instructions(read, d)))
    np.testing.assert_allclose(from_cache, on_the_fly, rtol=1e-5)
    # The stream goes on (all tasks mixed) with bucket shapes.
    for batch in [next(stream) for _ in range(4)]:
        assert batch["waveform_mean"].shape[1] in (50, 100)
