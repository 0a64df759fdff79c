"""Misalignment rates with seeded bootstrap confidence intervals, and the paired comparison of two runs."""

from __future__ import annotations

from typing import Sequence

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


def bootstrap_ratio_ci(num: Sequence[float], den: Sequence[float], seed: int, n_boot: int = 2000,
                       level: float = 0.95) -> tuple[float, float]:
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
