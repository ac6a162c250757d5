"""A seconds-fast model for tests and smoke runs: real strides and rates, tiny widths."""

from uniflow_jax import config_lib


def get_config():
    config = config_lib.base_config("tiny")
    config.model.dit.context_dim = 32
    config.model.dit.ta_context_dim = 32
    config.model.vae.channels = 8
    config.flow.num_steps = 4
    return config
