"""UniFlow-Audio v1 'large' (upstream flow_matching_large.yaml): the released model's sizes."""

from uniflow_jax import config_lib


def get_config():
    return config_lib.base_config("large")
