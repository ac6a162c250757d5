"""UniFlow-Audio v1 'small' (upstream flow_matching_small.yaml): the released model's sizes."""

from uniflow_jax import config_lib


def get_config():
    return config_lib.base_config("small")
