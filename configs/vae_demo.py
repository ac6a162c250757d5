"""The demo's waveform VAE (Oobleck, small widths), trained from scratch on every target of the demo corpus.

``--config configs/vae_demo.py:DEMO_DIR``; its export (``python -m uniflow_jax.export``) is the frozen VAE of
configs/demo.py.
"""

import pathlib

from uniflow_jax import config_lib


def get_config(corpus: str = "demo_data"):
    config = config_lib.load_config_file(str(pathlib.Path(__file__).with_name("demo.py")), corpus)
    config.objective = "vae"
    config.train.update(num_steps=150, global_batch_size=16, eval_every=150, log_every=25, checkpoint_every=150)
    config.optimizer.update(learning_rate=1e-3, warmup_steps=20)
    config.vae_training.update(segment_seconds=0.4)
    return config
