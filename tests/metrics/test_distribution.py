"""Fréchet distance, KL divergence and Inception Score against closed forms and known distributions."""

import math

import numpy as np
import pytest

from uniflow_jax.metrics import distribution


def test_frechet_distance_of_gaussians_is_the_closed_form():
    # diagonal covariances: |mu1 - mu2|² + Σ (sqrt(s1) - sqrt(s2))²
    mu1, mu2 = np.array([0.0, 0.0]), np.array([1.0, 2.0])
    s1, s2 = np.diag([1.0, 4.0]), np.diag([4.0, 9.0])
    assert distribution.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(5.0 + 1.0 + 1.0)
    # one dimension: (m1 - m2)² + (σ1 - σ2)²
    assert distribution.frechet_distance([3.0], [[4.0]], [1.0], [[1.0]]) == pytest.approx(4.0 + 1.0)
    # equal covariances, any (non-diagonal) matrix: only the means count
    a = np.array([[2.0, 0.5, 0.1], [0.5, 1.0, 0.3], [0.1, 0.3, 1.5]])
    assert distribution.frechet_distance(np.ones(3), a, np.zeros(3), a) == pytest.approx(3.0, abs=1e-9)


def test_frechet_distance_of_samples_approaches_the_closed_form():
    rng = np.random.default_rng(0)
    x = rng.multivariate_normal([0.0, 0.0], np.diag([1.0, 4.0]), 200_000)
    y = rng.multivariate_normal([1.0, 2.0], np.diag([4.0, 9.0]), 200_000)
    fd = distribution.frechet_distance(*distribution.gaussian_statistics(x), *distribution.gaussian_statistics(y))
    assert fd == pytest.approx(7.0, abs=0.1)
    same = distribution.gaussian_statistics(x)
    assert distribution.frechet_distance(*same, *same) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_retries_a_failed_square_root_with_an_offset(monkeypatch):
    # fewer clips than embedding dims make singular covariances; where sqrtm then fails (inf/nan), both
    # diagonals get 1e-6 and the distance stays finite and close
    sqrtm, calls = distribution.scipy.linalg.sqrtm, []

    def failing_once(matrix):
        calls.append(matrix)
        return np.full_like(matrix, np.inf) if len(calls) == 1 else sqrtm(matrix)

    monkeypatch.setattr(distribution.scipy.linalg, "sqrtm", failing_once)
    s1, s2 = np.diag([1.0, 4.0]), np.diag([4.0, 9.0])
    assert distribution.frechet_distance(np.zeros(2), s1, np.zeros(2), s2) == pytest.approx(2.0, abs=1e-5)
    np.testing.assert_allclose(calls[1], (s1 + 1e-6 * np.eye(2)) @ (s2 + 1e-6 * np.eye(2)))


def test_gaussian_statistics_need_two_rows():
    with pytest.raises(ValueError, match="at least two"):
        distribution.gaussian_statistics(np.ones((1, 4)))


def test_kl_divergence():
    p = np.array([[0.25, 0.25, 0.5], [0.1, 0.0, 0.9]])
    np.testing.assert_allclose(distribution.kl_divergence(p, p), [0.0, 0.0], atol=1e-12)
    # 0.5 ln(0.5 / 0.9) + 0.5 ln(0.5 / 0.1)
    value = distribution.kl_divergence(np.array([0.5, 0.5]), np.array([0.9, 0.1]))
    assert value == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(5.0))
    # a class the generated clip rules out costs log(1 / floor), not infinity
    assert distribution.kl_divergence(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(
        -math.log(distribution.KL_FLOOR)
    )


def test_inception_score_limits():
    uniform = np.full((12, 5), 0.2)
    assert distribution.inception_score(uniform) == (pytest.approx(1.0), 0.0)
    one_hot = np.eye(4)[np.arange(12) % 4]  # confident, every class used equally
    assert distribution.inception_score(one_hot)[0] == pytest.approx(4.0)
    assert distribution.inception_score(one_hot, splits=3) == (pytest.approx(4.0), pytest.approx(0.0))
    same_class = np.eye(4)[np.zeros(12, int)]  # confident but all the same: no diversity
    assert distribution.inception_score(same_class)[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="cannot split"):
        distribution.inception_score(uniform, splits=13)


def test_softmax():
    probabilities = distribution.softmax(np.array([[0.0, math.log(3.0)], [1000.0, 1000.0]]))
    np.testing.assert_allclose(probabilities, [[0.25, 0.75], [0.5, 0.5]])
