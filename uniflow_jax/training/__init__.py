"""Training: state, step, checkpoints, metrics, objectives."""
