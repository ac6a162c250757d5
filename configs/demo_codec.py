"""The demo's codec: the VAE of configs/demo.py trained from scratch, long enough to reconstruct.

``--config configs/demo_codec.py:CODEC_DIR`` where CODEC_DIR is a demo corpus of its own (``--seed 1``: none of
the demo's clips). scripts/train_demo_codec.sh builds that corpus, runs this, exports the weights and measures
them; the package ships the result (``uniflow_jax/resources/demo_codec.{safetensors,json}``), which
scripts/demo.sh uses unless ``RETRAIN_CODEC=1``. Multi-resolution STFT + multi-scale log-mel + KL (no
time-domain L1: without an adversarial loss it only pulls an output whose phase is unsure towards silence), a
cosine-decayed step size.
"""

import pathlib

from uniflow_jax import config_lib


def get_config(corpus: str = "codec_data"):
    config = config_lib.load_config_file(str(pathlib.Path(__file__).with_name("demo.py")), corpus)
    config.objective = "vae"
    config.train.update(num_steps=2000, global_batch_size=16, eval_every=500, log_every=100, checkpoint_every=250)
    config.optimizer.update(learning_rate=1e-3, warmup_steps=100, decay_steps=2000)
    config.vae_training.update(segment_seconds=0.5, l1_weight=0.0, mel_weight=1.0)
    return config
