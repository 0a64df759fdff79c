"""Misalignment rates with seeded bootstrap confidence intervals, and the paired comparison of two runs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def bootstrap_ci(values: Sequence[float], seed: int, n_boot: int = 2000, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def bootstrap_ratio_ci(
    num: Sequence[float], den: Sequence[float], seed: int, n_boot: int = 2000, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of sum(num) / sum(den), resampling units (documents) with their pairs kept together."""
    a, b = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    if a.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(n_boot, a.size))
    ratios = a[idx].sum(axis=1) / b[idx].sum(axis=1)
    lo, hi = np.quantile(ratios, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def rates(p_misaligned: Sequence[float], seed: int, n_boot: int = 2000) -> dict:
    """The two rates the paper reports: mean P(misaligned), and the share of items where it exceeds 0.5."""
    p = np.asarray(p_misaligned, dtype=float)
    chose = (p > 0.5).astype(float)
    return {
        "n": int(p.size),
        "mean_p_misaligned": float(p.mean()) if p.size else float("nan"),
        "mean_p_misaligned_ci": bootstrap_ci(p, seed, n_boot),
        "share_misaligned": float(chose.mean()) if p.size else float("nan"),
        "share_misaligned_ci": bootstrap_ci(chose, seed + 1, n_boot),
    }


def paired_difference(a: dict[str, float], b: dict[str, float], seed: int, n_boot: int = 2000) -> dict:
    """B minus A on the items both runs scored: resampling items keeps each item's pair together."""
    common = sorted(set(a) & set(b))
    if not common:
        return {"n": 0}
    d = np.asarray([b[k] - a[k] for k in common])
    lo, hi = bootstrap_ci(d, seed, n_boot)
    rng = np.random.default_rng(seed + 7)
    boots = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    # two-sided bootstrap p-value for "no difference"
    p = float(min(1.0, 2 * min((boots <= 0).mean(), (boots >= 0).mean())))
    return {"n": len(common), "diff_mean_p_misaligned": float(d.mean()), "ci": (lo, hi), "p_value": p}


# ---------------------------------------------------------------- seeds as the unit of inference
#
# A training run (seed) is the experimental unit: items are measured many times within one run, so bootstrapping items
# alone treats one run's luck as if it were replicated. Every per-seed summary (a mean over items, or a paired
# difference over the same items) already carries the item noise of its seed; a t-interval over those summaries then
# carries both components with the degrees of freedom the seeds give. It is exact when the per-seed summaries are
# normal (a mean of ~100 items nearly is) and, unlike any resampling of two or three seeds, calibrated at 2 and 3 seeds
# (tests/evals/test_stats_calibration.py). The item set is treated as fixed: the claim is about these items.

SEEDS_X_ITEMS = "seeds x items"
ITEMS_ONLY = "items only"


def seed_interval(per_seed: Sequence[float], level: float = 0.95, floor_var: float = 0.0) -> dict:
    """Mean of per-seed values with a Student-t CI and the two-sided p-value for zero (df = seeds - 1).
    With one seed there is no CI: training noise was not measured.

    ``floor_var``: the per-seed values' own item-level sampling variance (mean over seeds), used in place of the seeds'
    variance when the seeds agree exactly: a tie (common for accuracy on a few dozen items, in steps of 1/n) would
    otherwise give a zero-width interval and p = 0, while each value alone is only known to its item noise. Only on an
    exact tie: flooring every small sample variance would make the interval conservative (100% coverage at 2 seeds in
    tests/evals/test_stats_calibration.py) where the plain t is exact."""
    from scipy import stats as st

    x = np.asarray([v for v in per_seed if v is not None and np.isfinite(v)], dtype=float)
    out = {
        "n_seeds": int(x.size),
        "mean": float(x.mean()) if x.size else float("nan"),
        "ci": [float("nan")] * 2,
        "p": None,
        "sd_seeds": None,
    }
    if x.size < 2:
        return out
    var = float(x.var(ddof=1))
    sd = float(np.sqrt(var if var > 1e-15 else floor_var))
    se = float(sd / np.sqrt(x.size))
    t = float(st.t.ppf(1 - (1 - level) / 2, x.size - 1))
    out.update(
        ci=[out["mean"] - t * se, out["mean"] + t * se],
        sd_seeds=sd,
        p=float(2 * st.t.sf(abs(out["mean"]) / se, x.size - 1)) if se > 0 else float(out["mean"] == 0),
    )
    return out


def variance_components(diffs: Sequence[Sequence[float]]) -> dict:
    """Variance components of a paired contrast from its per-item differences, one row per seed (the same items in
    every row): ``seed_var`` (between training runs, beyond what item noise explains) and ``item_var`` (item x seed
    residual, whose mean over n items adds item_var / n to each run's difference). With one seed only the within-seed
    item variance is known (an upper bound of item_var) and seed_var is None."""
    d = np.asarray(diffs, dtype=float)
    if d.ndim != 2 or d.shape[1] < 2:
        raise ValueError("variance_components needs a (seeds x items) array with at least 2 items")
    s, n = d.shape
    if s < 2:
        return {
            "n_seeds": 1,
            "n_items": n,
            "item_var": float(d[0].var(ddof=1)),
            "seed_var": None,
            "mean": float(d.mean()),
        }
    resid = d - d.mean(axis=1, keepdims=True) - d.mean(axis=0, keepdims=True) + d.mean()
    item_var = float((resid**2).sum() / ((n - 1) * (s - 1)))
    seed_means = d.mean(axis=1)
    seed_var = max(0.0, float(seed_means.var(ddof=1)) - item_var / n)
    return {"n_seeds": s, "n_items": n, "item_var": item_var, "seed_var": seed_var, "mean": float(d.mean())}


def t_test_power(effect: float, sd_unit: float, n_units: int, alpha: float = 0.05) -> float:
    """Power of the two-sided one-sample t-test over ``n_units`` per-seed differences of standard deviation
    ``sd_unit``."""
    from scipy import stats as st

    if n_units < 2:
        return float("nan")
    df = n_units - 1
    noncentrality = effect / (sd_unit / np.sqrt(n_units))
    critical_t = st.t.ppf(1 - alpha / 2, df)
    # P(T > critical_t), P(T < -critical_t) by symmetry
    upper, lower = st.nct.sf(critical_t, df, noncentrality), st.nct.sf(critical_t, df, -noncentrality)
    return float(np.nan_to_num(upper) + np.nan_to_num(lower))


def per_seed_sd(seed_var: float, item_var: float, n_items: int) -> float:
    """The standard deviation of one run's mean difference over ``n_items`` items."""
    return float(np.sqrt(seed_var + item_var / max(1, n_items)))


def min_detectable_effect(sd_unit: float, n_seeds: int, power: float = 0.8, alpha: float = 0.05) -> float:
    """The smallest true difference the seed-level t-test detects with the given power (inf below 2 seeds)."""
    from scipy.optimize import brentq

    if n_seeds < 2:
        return float("inf")
    if sd_unit <= 0:
        return 0.0
    hi = sd_unit
    while t_test_power(hi, sd_unit, n_seeds, alpha) < power:  # bracket: the noncentral t is NaN far out
        hi *= 2
    return float(brentq(lambda e: t_test_power(e, sd_unit, n_seeds, alpha) - power, 0.0, hi, xtol=1e-10))


def seeds_needed(
    effect: float,
    seed_var: float,
    item_var: float,
    n_items: int,
    power: float = 0.8,
    alpha: float = 0.05,
    max_seeds: int = 10_000,
) -> int | None:
    """The fewest seeds (at least 2) whose seed-level t-test detects ``effect`` with the given power; None past
    max_seeds."""
    sd = per_seed_sd(seed_var, item_var, n_items)
    if sd == 0:
        return 2
    lo, hi = 2, max_seeds
    power -= 1e-9  # the MDE of n seeds needs n seeds, not n + 1 by a rounding error
    if t_test_power(abs(effect), sd, hi, alpha) < power:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if t_test_power(abs(effect), sd, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return lo
