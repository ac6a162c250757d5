"""Distribution metrics of generated audio over the embeddings and class predictions of an audio classifier
(as ``audioldm_eval`` computes them on PANNs CNN14): Fréchet distance, paired KL divergence and Inception
Score. Pure numpy/scipy: the classifier is whatever model the caller runs."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.special

KL_FLOOR = 1e-6  # floor of the generated probabilities inside the log (audioldm_eval's EPS)

SETTINGS = {
    "fd": (
        "Fréchet distance between Gaussians fitted (mean, unbiased covariance) to the generated and the reference "
        "embedding rows: |mu_g - mu_r|^2 + tr(S_g + S_r - 2 (S_g S_r)^(1/2))"
    ),
    "kl": (
        "per item KL(reference || generated) of the softmax class probabilities (audioldm_eval's 'KL', softmax), "
        f"generated probabilities floored at {KL_FLOOR:g}, nats"
    ),
    "is": (
        "Inception Score exp(E_x KL(p(y|x) || p(y))) of the generated items' softmax class probabilities, items "
        "split in order into equal chunks; mean and std over the chunks"
    ),
}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities over the last axis."""
    return scipy.special.softmax(np.asarray(logits, np.float64), axis=-1)


def gaussian_statistics(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of embedding rows (rows × dims); at least two rows."""
    embeddings = np.asarray(embeddings, np.float64)
    if embeddings.ndim != 2 or len(embeddings) < 2:
        raise ValueError(f"need at least two embedding rows (rows × dims), got shape {embeddings.shape}")
    return embeddings.mean(axis=0), np.cov(embeddings, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2). A singular product gets
    1e-6 added to both diagonals, as the reference FID/FAD code does."""
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(sigma1)) * 1e-6
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean.real))


def kl_divergence(reference: np.ndarray, generated: np.ndarray) -> np.ndarray:
    """KL(reference ‖ generated) in nats per row of class probabilities (rows × classes); 0 for identical
    rows, and a zero reference probability contributes nothing."""
    p, q = np.asarray(reference, np.float64), np.asarray(generated, np.float64)
    return np.sum(scipy.special.xlogy(p, p) - scipy.special.xlogy(p, np.maximum(q, KL_FLOOR)), axis=-1)


def inception_score(probabilities: np.ndarray, splits: int = 1) -> tuple[float, float]:
    """Inception Score (mean, std over ``splits`` consecutive chunks) of class probabilities (items ×
    classes): 1 for identical predictions, the number of classes for confident, evenly used ones."""
    probabilities = np.asarray(probabilities, np.float64)
    if not 1 <= splits <= len(probabilities):
        raise ValueError(f"cannot split {len(probabilities)} items into {splits} chunks")
    scores = []
    for chunk in np.array_split(probabilities, splits):
        marginal = chunk.mean(axis=0, keepdims=True)
        kl = np.sum(scipy.special.xlogy(chunk, chunk) - scipy.special.xlogy(chunk, marginal), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))
