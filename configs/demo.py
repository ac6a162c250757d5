"""The demo: a small UniFlow on all seven tasks of the synthetic demo corpus, trained in minutes on a CPU.

``--config configs/demo.py:DEMO_DIR`` (the folder ``python -m uniflow_jax.demo.corpus --out`` wrote, with its
caption tokenizer ``DEMO_DIR/spiece.model``); scripts/demo.sh runs everything end to end, training from the
latent cache (``--config.data.cache``) so that the frozen encoders run once per clip, not once per step.
Sizes are chosen for a 2-core CPU: a 4-block DiT of width 128, an 8-channel VAE with 32 latent channels.
"""

from uniflow_jax import config_lib
from uniflow_jax.demo import specs as demo_specs


def get_config(corpus: str = "demo_data"):
    config = config_lib.base_config("tiny")
    config.model.dit.update(embed_dim=128, depth=4, num_heads=4, context_dim=64, ta_context_dim=64)
    config.model.content_dim = config.model.video_dim = 64
    config.model.vae.update(channels=8, latent_dim=32)  # the demo codec (trained ahead of time: demo_codec.py)
    config.model.clip.update(image_size=32, patch_size=8, hidden_size=64, intermediate_size=128, num_layers=2)
    config.model.phoneme.update(d_model=64, num_layers=2)
    config.model.score.update(d_model=64, num_layers=2)
    config.model.adapter.update(num_heads=4, filter_channels=64, num_layers=3)
    config.model.t5.update(vocab_size=512, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4)

    config.data.train = demo_specs.dataset_specs(corpus, "train")
    config.data.val = demo_specs.dataset_specs(corpus, "val")
    config.data.tokenizer = f"{corpus}/spiece.model"
    config.data.video_input = "frames"
    config.data.read_threads = 4
    config.data.buckets = [
        dict(latent=100, phoneme=48, score=48, video=20, text=32),
        dict(latent=200, phoneme=96, score=96, video=40, text=32),
    ]
    config.data.crop_seconds = dict(se=2.0, sr=2.0, t2m=3.0, v2a=3.0)
    config.data.max_seconds = dict(tts=4.0, svs=4.0)

    config.train.update(
        num_steps=400, global_batch_size=8, log_every=25, checkpoint_every=200, eval_every=200, eval_batches=2
    )
    config.optimizer.update(learning_rate=1e-3, warmup_steps=50)
    config.flow.num_steps = 16
    return config
