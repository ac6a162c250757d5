"""UniFlow-Audio v1 'base' (upstream flow_matching_base.yaml): the released model's sizes."""

from uniflow_jax import config_lib


def get_config():
    return config_lib.base_config("base")
