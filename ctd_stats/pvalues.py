"""Valid p-values for the null hypothesis H0: R(λ) > α of a bounded risk.

Losses are in [0, 1]; ``n`` calibration points give the empirical risk r̂ = mean L_i. Each
function returns, for a whole grid of candidate parameters at once, a p-value that is
*super-uniform* under the null: P(p ≤ t) ≤ t for every t ∈ [0, 1] whenever R ≥ α.

=================  =====================================================  ==================
method             p-value                                                losses
=================  =====================================================  ==================
``binomial``       P(Bin(n, α) ≤ k), k = Σ L_i an integer count            binary only
``hoeffding``      exp(−2n (α − r̂)₊²)                                      [0, 1]
``hoeffding_kl``   exp(−n h(min(r̂, α), α)), h the Bernoulli KL             [0, 1]
``bentkus``        e · P(Bin(n, α) ≤ ⌈n r̂⌉)                                 [0, 1]
``hb``             min(hoeffding_kl, bentkus) (the LTT paper's default)     [0, 1]
``wsr``            1 / max_t K_t, K_t = Π_{i≤t} (1 − ν_i (L_i − α))          [0, 1], ordered
=================  =====================================================  ==================

The binomial p-value is the uniformly most powerful one for binary losses and is computed from
INTEGER counts: recovering k as ``ceil(n * r̂)`` from a float flips it by one in a few percent of
cases (floor is anti-conservative, ceil over-conservative), so the count functions take counts.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Final, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from ._validation import as_float_array, as_int_array, check_choice, check_level, check_positive_int
from .typing import FloatArray, IntArray

__all__ = [
    "METHODS",
    "PValueMethod",
    "bentkus_pvalue",
    "binomial_pvalue",
    "binomial_upper_bound",
    "hb_pvalue",
    "hoeffding_kl_pvalue",
    "hoeffding_pvalue",
    "pvalues",
    "pvalues_from_counts",
    "wsr_pvalue",
]

PValueMethod = Literal["binomial", "hoeffding", "hoeffding_kl", "bentkus", "hb", "wsr"]
METHODS: Final[tuple[str, ...]] = ("binomial", "hoeffding", "hoeffding_kl", "bentkus", "hb", "wsr")
# Methods that depend on the data only through the empirical risk (so counts suffice).
COUNT_METHODS: Final[tuple[str, ...]] = ("binomial", "hoeffding", "hoeffding_kl", "bentkus", "hb")


try:  # the ufunc behind scipy.stats.binom.cdf, without its per-call argument handling
    from scipy.special._ufuncs import _binom_cdf as _BINOM_CDF_UFUNC
except ImportError:  # pragma: no cover - a scipy that moved it: use the public (slower) path
    _BINOM_CDF_UFUNC = None  # type: ignore[assignment]


# --------------------------------------------------------------------------- validation
# Public functions validate once here (scipy's ``_xxx_iv`` pattern); the kernels below trust
# their inputs, so LTT and Pareto testing call the kernels on data they validated themselves.
def counts_iv(
    counts: ArrayLike,
    n: object,
    *,
    ndim: int | tuple[int, ...] = (0, 1),
    names: tuple[str, str] = ("counts", "n"),
) -> tuple[IntArray, int]:
    """Integer loss counts 0 ≤ k ≤ n and the number of points n (named as the caller's)."""
    n = check_positive_int(n, names[1])
    k = as_int_array(counts, names[0], ndim=ndim, low=0, high=n)
    return k, n


def _risk_iv(risk: ArrayLike, n: int) -> tuple[FloatArray, int]:
    n = check_positive_int(n, "n")
    r = as_float_array(risk, "risk", ndim=(0, 1), low=0.0, high=1.0)
    return r, n


def losses_iv(losses: ArrayLike, method: str) -> FloatArray:
    """A loss matrix (n,) or (n, m) in [0, 1]; binary if ``method`` is ``"binomial"``."""
    x = as_float_array(losses, "losses", ndim=(1, 2), low=0.0, high=1.0)
    check_binary(x, method)
    return x


def check_binary(x: FloatArray, method: str) -> None:
    if method == "binomial" and not np.all((x == 0) | (x == 1)):
        raise ValueError(
            "losses: the binomial p-value needs binary (0/1) losses; "
            "use method='hb' or 'wsr' for losses in [0, 1]"
        )


# --------------------------------------------------------------------------- kernels
def _binom_cdf(k: IntArray | FloatArray, n: int | IntArray, alpha: float) -> FloatArray:
    """``scipy.stats.binom.cdf(k, n, alpha)`` for integer-valued 0 ≤ k ≤ n, bit for bit.

    ``n`` is one size or an array broadcastable with ``k`` (one size per grid point; n = 0
    gives 1). ``binom.cdf`` evaluates the same ufunc on floor(k), clips to [0, 1] and returns 1
    for k ≥ n; its argument broadcasting costs ~50 µs per call, the ufunc ~1 µs per 100 values.
    """
    # Integer arrays go to the float64 ufunc as they are: it casts them exactly.
    kf = k if isinstance(k, np.ndarray) else np.asarray(k, dtype=np.float64)
    nf: float | IntArray | FloatArray = float(n) if isinstance(n, int) else n
    if not isinstance(nf, float) and nf.shape != kf.shape:
        kf, nf = np.broadcast_arrays(kf, nf)
    if _BINOM_CDF_UFUNC is None:  # pragma: no cover
        return np.asarray(stats.binom.cdf(kf, nf, alpha), dtype=np.float64)
    # n = 0 (then k = 0) is evaluated at n = 1 and overwritten by 1 below: no 0/0 to silence
    # (np.errstate costs more than the cdf of 100 values).
    size = nf if isinstance(nf, float) else np.maximum(nf, 1)
    out: FloatArray = np.asarray(_BINOM_CDF_UFUNC(kf, size, alpha))  # 0-d: a scalar back
    # In place: np.clip / np.where would each cost more than the 100 cdf values themselves.
    np.minimum(out, 1.0, out=out)
    np.maximum(out, 0.0, out=out)
    out[kf >= nf] = 1.0
    return out


def binomial_kernel(k: IntArray | FloatArray, n: int | IntArray, alpha: float) -> FloatArray:
    """P(Bin(n, α) ≤ k); 0 for α ≥ 1, where the null R > α is empty (a budget of 1 always holds)."""
    if alpha >= 1.0:
        return np.zeros(np.broadcast(k, n).shape)
    return _binom_cdf(k, n, alpha)


def _hoeffding(r: FloatArray, n: int | IntArray, alpha: float) -> FloatArray:
    gap = np.maximum(alpha - r, 0.0)
    return np.exp(-2.0 * n * gap * gap)


def _bernoulli_kl(a: FloatArray, b: float) -> FloatArray:
    """h(a, b) = a log(a/b) + (1 − a) log((1 − a)/(1 − b)), with 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        first = np.where(a > 0, a * np.log(np.where(a > 0, a, 1.0) / b), 0.0)
        second = np.where(a < 1, (1 - a) * np.log(np.where(a < 1, 1 - a, 1.0) / (1 - b)), 0.0)
    return np.asarray(first + second, dtype=np.float64)


def _hoeffding_kl(r: FloatArray, n: int | IntArray, alpha: float) -> FloatArray:
    return np.exp(-n * _bernoulli_kl(np.minimum(r, alpha), alpha))


def _bentkus(r: FloatArray, n: int | IntArray, alpha: float) -> FloatArray:
    # A relative slack of a few ulps keeps k/n → k exact; the rest rounds up (conservative).
    k = np.ceil(n * r * (1 - 4 * np.finfo(np.float64).eps))
    return np.minimum(1.0, math.e * _binom_cdf(k, n, alpha))


def _hb(r: FloatArray, n: int | IntArray, alpha: float) -> FloatArray:
    return np.minimum(_hoeffding_kl(r, n, alpha), _bentkus(r, n, alpha))


def wsr_kernel(x: FloatArray, alpha: float, delta: float) -> FloatArray:
    squeeze = x.ndim == 1
    x = x.reshape(x.shape[0], -1)
    n = x.shape[0]
    steps = np.arange(1, n + 1, dtype=np.float64)[:, None]
    mu_hat = (0.5 + np.cumsum(x, axis=0)) / (steps + 1)
    sigma2_hat = (0.25 + np.cumsum((x - mu_hat) ** 2, axis=0)) / (steps + 1)
    # Predictable: the bet at step i uses the variance estimate after step i − 1.
    sigma2_prev = np.vstack([np.full((1, x.shape[1]), 0.25), sigma2_hat[:-1]])
    nu = np.minimum(np.sqrt(2 * math.log(1 / delta) / (n * sigma2_prev)), 1 / (1 - alpha))
    with np.errstate(divide="ignore"):
        log_wealth = np.cumsum(np.log1p(-nu * (x - alpha)), axis=0)
    p: FloatArray = np.minimum(1.0, np.exp(-np.max(log_wealth, axis=0)))
    return p.reshape(()) if squeeze else p


def from_counts(
    k: IntArray | FloatArray, n: int | IntArray, alpha: float, method: str
) -> FloatArray:
    """Kernel of :func:`pvalues_from_counts`: validated 0 ≤ k ≤ n, method not wsr.

    ``n`` is one size or an integer array broadcastable with ``k`` (one sample size per grid
    point and risk, the conditional risks of :mod:`ctd_stats.risks`); where n = 0 the p-value
    is 1 (nothing observed, never certified). ``k`` may be float-valued sums of losses in
    [0, 1] for the methods other than binomial.
    """
    if method == "binomial":
        return binomial_kernel(k, n, alpha)
    if isinstance(n, int):
        return np.asarray(_RISK_KERNELS[method](k / n, n, alpha), dtype=np.float64)
    size = np.maximum(n, 1)
    p = np.asarray(_RISK_KERNELS[method](k / size, size, alpha), dtype=np.float64)
    return np.where(n == 0, 1.0, p)


def from_losses(x: FloatArray, alpha: float, method: str, delta: float) -> FloatArray:
    """Kernel of :func:`pvalues` (validated losses, binary when method is binomial)."""
    if method == "wsr":
        return wsr_kernel(x, alpha, delta)
    n = x.shape[0]
    if method == "binomial":
        return binomial_kernel(x.sum(axis=0).astype(np.int64), n, alpha)
    return np.asarray(_RISK_KERNELS[method](x.sum(axis=0) / n, n, alpha), dtype=np.float64)


def _zero_loss_pvalue(n: int, alpha: float, method: str) -> float:
    """p-value of the most favourable calibration: n points, no loss (non-increasing in n)."""
    return float(from_counts(np.zeros(1, dtype=np.int64), n, alpha, method)[0])


@functools.lru_cache(maxsize=1024)  # a pure function of scalars, asked again on every empty set
def min_n_for_zero_losses(
    alpha: float, level: float, method: str, *, strict: bool = False, limit: int = 10**9
) -> int | None:
    """Smallest n at which zero losses give a p-value ≤ ``level`` (< if strict), or None.

    Used to say, when nothing was certified, how large a calibration set must be for the most
    favourable outcome to certify anything. None for ``wsr`` (order-dependent) or past ``limit``.
    """
    if method not in COUNT_METHODS:
        return None

    def ok(n: int) -> bool:
        p = _zero_loss_pvalue(n, alpha, method)
        return p < level if strict else p <= level

    if method == "binomial" and alpha < 1.0:
        # p(n) = (1 − α)^n: start at the analytic answer and step to the exact one (a few
        # cdf calls instead of a bisection; the same smallest n, p being decreasing in n).
        guess = max(1, min(limit, math.ceil(math.log(level) / math.log1p(-alpha))))
        while guess > 1 and ok(guess - 1):
            guess -= 1
        while not ok(guess):
            guess += 1
            if guess > limit:
                return None
        return guess
    return smallest_n(ok, limit=limit)


def smallest_n(ok: Callable[[int], bool], *, limit: int) -> int | None:
    """Smallest n ≥ 1 with ``ok(n)`` for a monotone ``ok`` (doubling, then bisection), or None
    when the doubling passes ``limit``. The one search behind every "min_n" of the package."""
    hi = 1
    while not ok(hi):
        hi *= 2
        if hi > limit:
            return None
    lo = hi // 2  # ok(lo) is False (or lo == 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


# --------------------------------------------------------------------------- public
def binomial_pvalue(counts: ArrayLike, n: int, *, alpha: float) -> FloatArray:
    """Exact binomial p-value P(Bin(n, α) ≤ k) for H0: R > α with binary losses.

    ``counts`` are the integer numbers of losses equal to 1 (one per grid point). Equals
    ``scipy.stats.binomtest(k, n, α, alternative="less").pvalue``. Under R ≥ α the count is
    stochastically at least Bin(n, α), so P(p ≤ t) ≤ t exactly (super-uniform).
    """
    k, n = counts_iv(counts, n)
    return binomial_kernel(k, n, check_level(alpha, "alpha"))


def hoeffding_pvalue(risk: ArrayLike, n: int, *, alpha: float) -> FloatArray:
    """Hoeffding p-value exp(−2n(α − r̂)₊²) for losses in [0, 1]."""
    r, n = _risk_iv(risk, n)
    return _hoeffding(r, n, check_level(alpha, "alpha"))


def hoeffding_kl_pvalue(risk: ArrayLike, n: int, *, alpha: float) -> FloatArray:
    """Hoeffding–KL (Chernoff) p-value exp(−n h(min(r̂, α), α)) for losses in [0, 1]."""
    r, n = _risk_iv(risk, n)
    return _hoeffding_kl(r, n, check_level(alpha, "alpha"))


def bentkus_pvalue(risk: ArrayLike, n: int, *, alpha: float) -> FloatArray:
    """Bentkus p-value e · P(Bin(n, α) ≤ ⌈n r̂⌉), capped at 1, for losses in [0, 1].

    ``n * r̂`` is rounded up, which is the conservative direction; pass risks computed as
    ``sum / n`` (as :func:`pvalues` does) so integer sums stay exact.
    """
    r, n = _risk_iv(risk, n)
    return _bentkus(r, n, check_level(alpha, "alpha"))


def hb_pvalue(risk: ArrayLike, n: int, *, alpha: float) -> FloatArray:
    """Hoeffding–Bentkus p-value min(Hoeffding–KL, Bentkus) (Angelopoulos et al. 2022)."""
    r, n = _risk_iv(risk, n)
    return _hb(r, n, check_level(alpha, "alpha"))


def wsr_pvalue(losses: ArrayLike, *, alpha: float, delta: float = 0.1) -> FloatArray:
    """Waudby-Smith–Ramdas betting p-value 1 / max_t K_t for losses in [0, 1].

    K_t = Π_{i≤t} (1 − ν_i (L_i − α)) is a nonnegative supermartingale under H0: R ≥ α whenever
    each bet ν_i is predictable (uses L_1..L_{i−1} only) and lies in [0, 1/(1 − α)] (the upper
    end keeps the wealth nonnegative when L_i = 1). By Ville's inequality P(max_t K_t ≥ 1/t) ≤ t,
    so the p-value is valid. The bet is the LTT paper's ν_i = min(√(2 log(1/δ) / (n σ̂²_{i−1})),
    1/(1 − α)) with running mean/variance estimates; ``delta`` only tunes the bet.

    The result DEPENDS ON THE ORDER of the rows of ``losses`` (shape (n,) or (n, m)): shuffle
    exchangeable data once with a fixed seed if a canonical order is needed.
    """
    x = as_float_array(losses, "losses", ndim=(1, 2), low=0.0, high=1.0)
    alpha = check_level(alpha, "alpha")
    delta = check_level(delta, "delta")
    return wsr_kernel(x, alpha, delta)


def pvalues_from_counts(
    counts: ArrayLike, n: int, *, alpha: float, method: PValueMethod = "binomial"
) -> FloatArray:
    """p-values for a grid given integer loss counts (binary losses) and ``n``.

    ``method`` is any of :data:`METHODS` except ``"wsr"`` (which needs the ordered losses).
    """
    check_choice(method, "method", COUNT_METHODS)
    k, n = counts_iv(counts, n)
    return from_counts(k, n, check_level(alpha, "alpha"), method)


def pvalues(
    losses: ArrayLike, *, alpha: float, method: PValueMethod = "binomial", delta: float = 0.1
) -> FloatArray:
    """p-values for H0: R(λ_j) > α from a loss matrix of shape (n,) or (n, m).

    Rows are calibration points, columns grid points. ``"binomial"`` requires binary losses
    (counted as integers); the others accept losses in [0, 1]. ``delta`` only tunes the WSR bet.
    """
    check_choice(method, "method", METHODS)
    x = losses_iv(losses, method)
    alpha = check_level(alpha, "alpha")
    delta = check_level(delta, "delta")
    return from_losses(x, alpha, method, delta)


def binomial_upper_bound(counts: ArrayLike, n: int, *, delta: float) -> FloatArray:
    """Clopper–Pearson upper confidence bound U with P(R ≤ U) ≥ 1 − δ for binary losses.

    U is the largest α with P(Bin(n, α) ≤ k) ≥ δ, i.e. the dual of :func:`binomial_pvalue`:
    ``binomial_pvalue(k, n, alpha=α) ≤ δ`` exactly when α ≥ U (up to floating point);
    U = 1 if k = n.
    """
    k, n = counts_iv(counts, n)
    delta = check_level(delta, "delta")
    upper = np.where(k < n, stats.beta.ppf(1 - delta, k + 1, np.maximum(n - k, 1)), 1.0)
    return np.asarray(upper, dtype=np.float64)


_RISK_KERNELS = {
    "hoeffding": _hoeffding,
    "hoeffding_kl": _hoeffding_kl,
    "bentkus": _bentkus,
    "hb": _hb,
}
