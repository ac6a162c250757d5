"""Evaluation metrics (signal-level, numpy/librosa): ``uniflow_jax.metrics.audio``."""
