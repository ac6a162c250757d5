"""A seconds-fast model for tests and smoke runs: real strides, rates and input formats, tiny widths."""

from uniflow_jax import config_lib


def get_config():
    config = config_lib.base_config("tiny")
    config.model.content_dim = 32
    config.model.video_dim = 32  # = the tiny CLIP's width
    config.model.clip.update(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4
    )
    config.model.dit.context_dim = config.model.dit.ta_context_dim = 32
    config.model.vae.channels = 8
    config.model.phoneme.update(d_model=32, num_layers=2)
    config.model.score.update(d_model=32, num_layers=2)
    config.model.adapter.update(num_heads=4, filter_channels=16)
    config.model.t5.update(vocab_size=256, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
    config.flow.num_steps = 4
    config.train.update(global_batch_size=8, num_steps=20, log_every=5, checkpoint_every=10, eval_every=0)
    config.optimizer.update(learning_rate=1e-3, warmup_steps=5)
    config.data.buckets = [
        dict(latent=50, phoneme=16, score=16, video=10, text=16),
        dict(latent=100, phoneme=32, score=32, video=20, text=32),
    ]
    return config
