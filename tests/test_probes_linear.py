"""Logistic and ridge probes: scikit-learn as the oracle, closed forms, input checks."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from probes.linear import auroc, fit_logistic, fit_ridge


def _problem(n: int = 300, d: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=d) + rng.normal(size=d)
    w = rng.normal(size=d)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(X @ w * 0.5 - 0.3)))).astype(int)
    return X, y


@pytest.mark.parametrize("C", [1.0, 0.05])
def test_logistic_matches_sklearn(C):
    sk = pytest.importorskip("sklearn.linear_model")
    X, y = _problem()
    ours = fit_logistic(X, y, C=C, max_iter=500)
    ref = sk.LogisticRegression(C=C, tol=1e-12, max_iter=100_000).fit(X, y)
    assert ours.converged
    np.testing.assert_allclose(ours.coef, ref.coef_[0], rtol=1e-4, atol=1e-5)
    assert ours.intercept == pytest.approx(ref.intercept_[0], rel=1e-4, abs=1e-5)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X)[:, 1], atol=1e-6)


def test_logistic_gradient_is_zero_at_solution():
    X, y = _problem(seed=3)
    fit = fit_logistic(X, y, C=1.0)
    p = fit.predict_proba(X)
    grad_w = X.T @ (p - y) + fit.coef  # C = 1
    assert np.abs(grad_w).max() < 1e-6
    assert abs(np.sum(p - y)) < 1e-6  # intercept not penalised


def test_ridge_matches_closed_form_and_sklearn():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 6)) + 2.0
    y = X @ rng.normal(size=6) + 0.7 + rng.normal(size=80)
    fit = fit_ridge(X, y, penalty=1.0, device="cpu")
    Xc, yc = X - X.mean(0), y - y.mean()
    w = np.linalg.solve(Xc.T @ Xc + np.eye(6), Xc.T @ yc)
    np.testing.assert_allclose(fit.coef, w, rtol=1e-10)
    assert fit.intercept == pytest.approx(y.mean() - X.mean(0) @ w)
    np.testing.assert_allclose(fit.predict(X), X @ w + fit.intercept)
    sk = pytest.importorskip("sklearn.linear_model")
    ref = sk.Ridge(alpha=1.0).fit(X, y)
    np.testing.assert_allclose(fit.coef, ref.coef_, rtol=1e-8)


def test_auroc_matches_sklearn_with_ties():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, size=200)
    s = np.round(rng.uniform(size=200) + 0.3 * y, 1)
    assert auroc(y, s) == pytest.approx(metrics.roc_auc_score(y, s))


def test_bad_inputs_raise():
    X, y = _problem(n=40)
    Xn = X.copy()
    Xn[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"^X: contains NaN"):
        fit_logistic(Xn, y)
    with pytest.raises(ValueError, match=r"^X: contains NaN"):
        fit_ridge(Xn, y.astype(float))
    with pytest.raises(ValueError, match=r"^y: length"):
        fit_logistic(X, y[:-1])
    with pytest.raises(ValueError, match=r"^y: length"):
        fit_ridge(X, y[:-1])
    with pytest.raises(ValueError, match=r"^y: values must be 0 or 1"):
        fit_logistic(X, y * 2)
    with pytest.raises(ValueError, match="both classes"):
        fit_logistic(X, np.zeros(40))
    with pytest.raises(ValueError, match=r"^C:"):
        fit_logistic(X, y, C=0.0)
    with pytest.raises(ValueError, match=r"^max_iter:"):
        fit_logistic(X, y, max_iter=0)
    with pytest.raises(ValueError, match=r"^penalty:"):
        fit_ridge(X, y, penalty=-1.0)
    with pytest.raises(TypeError, match=r"^X: expected numbers"):
        fit_ridge(np.array([["a"]] * 40), y)
    with pytest.raises(ValueError, match=r"^X: expected 2"):
        fit_logistic(X[:, 0], y)
    fit = fit_logistic(X, y)
    with pytest.raises(ValueError, match="features"):
        fit.predict_proba(X[:, :3])


def test_logistic_is_the_shared_solver():
    """probes.linear.fit_logistic and ctd_stats.logistic give the same fit, bit for bit."""
    from ctd_stats.logistic import fit_logistic_l2

    X, y = _problem(seed=5)
    ours = fit_logistic(X, y, C=0.5, tol=1e-10)
    ref = fit_logistic_l2(X, y, C=0.5, tol=1e-10)
    assert np.array_equal(ours.coef, ref.coef) and ours.intercept == ref.intercept
    assert ours.n_iter == ref.n_iter and ours.converged == ref.converged


def test_ridge_penalty_is_recorded_and_zero_is_least_squares() -> None:
    X, _ = _problem(seed=6)
    target = X @ np.arange(X.shape[1]) + 0.5
    fit = fit_ridge(X, target, penalty=0.0, device="cpu")
    assert fit.penalty == 0.0
    np.testing.assert_allclose(fit.coef, np.arange(X.shape[1]), atol=1e-8)
    assert fit.intercept == pytest.approx(0.5, abs=1e-8)
    assert fit_ridge(X, target, penalty=2.5, device="cpu").penalty == 2.5
