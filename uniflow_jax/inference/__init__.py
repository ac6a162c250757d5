"""Inference: loaded models, requests (checked before any work), bucketed exact generation, the batch runner, and
the Python API (:class:`UniFlowAudio`)."""

from uniflow_jax.inference.api import GeneratedAudio, UniFlowAudio
from uniflow_jax.inference.requests import InvalidRequests

__all__ = ["GeneratedAudio", "InvalidRequests", "UniFlowAudio"]
