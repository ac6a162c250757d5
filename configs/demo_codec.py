"""The demo's codec: the VAE of configs/demo.py, trained ahead of time for long enough to reconstruct.

``--config configs/demo_codec.py:CODEC_DIR`` where CODEC_DIR is a demo corpus of its own (``--seed 1``: none of
the demo's clips). scripts/train_demo_codec.sh builds that corpus, runs this and exports the weights that the
package ships (``uniflow_jax/resources/demo_codec.safetensors``); scripts/demo.sh uses them unless
``RETRAIN_CODEC=1``.
"""

import pathlib

from uniflow_jax import config_lib


def get_config(corpus: str = "codec_data"):
    config = config_lib.load_config_file(str(pathlib.Path(__file__).with_name("vae_demo.py")), corpus)
    config.train.update(num_steps=3000, global_batch_size=16, eval_every=500, log_every=100, checkpoint_every=500)
    config.optimizer.update(learning_rate=1e-3, warmup_steps=100)
    config.vae_training.update(segment_seconds=0.5)
    return config
