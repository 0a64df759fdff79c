"""Seed-level inference is calibrated where the old item-only bootstrap was not: simulated experiments with a known
zero effect, seed-level and item-level noise at the small-scale replication's measured sizes, 2, 3 and 8 seeds.

The seed-level t-interval over per-seed paired differences (evals.stats.seed_interval, what results.json reports
for pooled rows) must exclude zero in at most 6% of 400 simulations at every seed count, and cover a known effect
about 95% of the time; the old method (each item averaged over seeds, then a bootstrap over items) is printed beside
it (pytest -s) and must be the overconfident one it was found to be."""

from __future__ import annotations

import numpy as np
import pytest

from evals.stats import (
    min_detectable_effect,
    paired_difference,
    per_seed_sd,
    seed_interval,
    seeds_needed,
    t_test_power,
    variance_components,
)

# The replication's variance components of a condition-minus-baseline difference (cloze, base stage; see
# docs/results/small-scale-replication.md, "Power"): between-seed sd of a run's mean difference, and the per-item
# item x seed residual sd. 108 items.
SEED_SD, ITEM_SD, N_ITEMS = 0.026, 0.17, 108
SIMS = 400


def _simulate(rng, n_seeds: int, effect: float) -> tuple[np.ndarray, np.ndarray]:
    """(seeds x items) P(misaligned) for the baseline and the condition: item levels shared, each run its own offset,
    each item its own per-run noise."""
    mu = rng.beta(4, 4, size=N_ITEMS)

    def run(shift):
        seed_off = rng.normal(0, SEED_SD / np.sqrt(2), size=(n_seeds, 1))
        return np.clip(mu + shift + seed_off + rng.normal(0, ITEM_SD / np.sqrt(2), size=(n_seeds, N_ITEMS)), 0, 1)

    return run(0.0), run(effect)


def _rates(n_seeds: int, effect: float, seed: int) -> tuple[float, float]:
    """(share of seed-level CIs that miss `effect`, share of item-only CIs that miss it)."""
    rng = np.random.default_rng(seed)
    miss_seed = miss_items = 0
    for k in range(SIMS):
        a, b = _simulate(rng, n_seeds, effect)
        d = b - a  # as results.json does it: t over per-seed means, floored at their item noise
        lo, hi = seed_interval(d.mean(axis=1), floor_var=float(np.mean(d.var(axis=1, ddof=1) / N_ITEMS)))["ci"]
        miss_seed += not (lo <= effect <= hi)
        old = paired_difference(dict(enumerate(a.mean(0))), dict(enumerate(b.mean(0))), seed=k, n_boot=500)
        miss_items += not (old["ci"][0] <= effect <= old["ci"][1])
    return miss_seed / SIMS, miss_items / SIMS


@pytest.mark.parametrize("n_seeds", [2, 3, 8])
def test_zero_effect_false_positives_at_most_6_percent(n_seeds):
    seed_rate, items_rate = _rates(n_seeds, 0.0, seed=n_seeds)
    print(
        f"\nzero effect, {n_seeds} seeds, {SIMS} simulations: CI excludes zero in {seed_rate:.1%} (seeds x items, "
        f"t over seeds) vs {items_rate:.1%} (old: items only)"
    )
    assert seed_rate <= 0.06
    assert items_rate >= 0.25  # the old method's overconfidence, at the replication's variance components


@pytest.mark.parametrize("n_seeds", [2, 3, 8])
def test_known_effect_is_covered_about_95_percent(n_seeds):
    seed_rate, items_rate = _rates(n_seeds, 0.03, seed=100 + n_seeds)
    print(
        f"\neffect 0.03, {n_seeds} seeds: coverage {1 - seed_rate:.1%} (seeds x items) "
        f"vs {1 - items_rate:.1%} (items only)"
    )
    assert 0.92 <= 1 - seed_rate <= 0.98


def test_variance_components_recover_the_simulated_sizes():
    rng = np.random.default_rng(7)
    seed_sd, item_sd, n_seeds, n_items = 0.03, 0.12, 40, 400
    d = rng.normal(0, seed_sd, size=(n_seeds, 1)) + rng.normal(0, item_sd, size=(n_seeds, n_items))
    vc = variance_components(d)
    assert vc["item_var"] == pytest.approx(item_sd**2, rel=0.05)
    assert vc["seed_var"] == pytest.approx(seed_sd**2, rel=0.35)
    one = variance_components(d[:1])
    assert one["seed_var"] is None and one["item_var"] == pytest.approx(item_sd**2, rel=0.2)


def test_power_mde_and_seeds_needed_agree():
    sd = per_seed_sd(SEED_SD**2, ITEM_SD**2, N_ITEMS)
    mde = min_detectable_effect(sd, 8)
    assert t_test_power(mde, sd, 8) == pytest.approx(0.8, abs=1e-6)
    assert min_detectable_effect(sd, 2) > min_detectable_effect(sd, 3) > mde  # more seeds, smaller effects
    assert min_detectable_effect(sd, 1) == float("inf")
    n = seeds_needed(mde, SEED_SD**2, ITEM_SD**2, N_ITEMS)
    assert n == 8  # the seeds needed for the 8-seed MDE is 8
    # a simulation at that design detects it about 80% of the time
    rng = np.random.default_rng(3)
    hits = sum(seed_interval(rng.normal(mde, sd, size=8))["p"] < 0.05 for _ in range(2000))
    assert 0.76 <= hits / 2000 <= 0.84
