"""Power before running: the minimum detectable effect of each planned contrast, from a pilot's per-item outputs.

A contrast's per-seed paired difference over n items varies as seed_var + item_var / n
(evals.stats.variance_components); the seed-level t-test over S seeds then detects, with 80% power at alpha 0.05,
differences of at least the minimum detectable effect (noncentral t, df = S - 1).
`curate experiment plan EXP --pilot RESULTS.json [--effect 0.03]` prints it for every contrast against the baseline
(and aligned minus misaligned), and the seeds an effect needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curate.experiment.graph import stance_contrasts
from curation.core.errors import CurationError
from evals.stats import min_detectable_effect, per_seed_sd, seeds_needed, variance_components

# Assumed without a pilot (and for the seed component of a one-seed pilot): the small-scale replication's pooled
# components (docs/results/small-scale-replication.md, "Power"), propensity metrics, base stage.
ASSUMED = {
    "seed_var": 0.026**2,
    "item_var": 0.17**2,
    "source": "the small-scale replication's variance components, cloze, its three contrasts that differ "
    '(docs/results/small-scale-replication.md, "Power")',
}
POWER, ALPHA = 0.8, 0.05


@dataclass
class Components:
    seed_var: float
    item_var: float
    source: str


def _pilot_path(pilot: str | Path) -> Path:
    from curate.experiment.report import PER_ITEM

    p = Path(pilot)
    cand = p if p.suffix == ".parquet" else (p / PER_ITEM if p.is_dir() else p.parent / PER_ITEM)
    if not cand.is_file():
        raise CurationError(
            f"{pilot}: no {PER_ITEM} beside it; pass the results.json of a `curate experiment run` "
            "output directory (runs that kept per-item outputs)"
        )
    return cand


def pilot_components(pilot: str | Path) -> dict[tuple[str, str, str], dict]:
    """{(condition, reference, metric): variance components} for every propensity contrast of the pilot against its
    baseline (and its stance contrast), at its final checkpoint, base stage, on the items every seed scored."""
    from curate.experiment.report import read_per_item

    records, params, _, _ = read_per_item(_pilot_path(pilot))
    cells: dict[tuple, dict[str, float]] = {}
    for r in records:
        if r["kind"] == "propensity" and r["stage"] == "base" and r["seed"] is not None:
            cells.setdefault((r["condition"], r["seed"], r["iteration"], r["metric"]), {})[r["item"]] = r["value"]
    if not cells:
        raise CurationError(
            f"{pilot}: the pilot has no propensity outputs of trained models; a pilot needs them to "
            "estimate variance components"
        )
    final = max(k[2] for k in cells)
    seeds = sorted({k[1] for k in cells})
    base = params["baseline"]
    pairs = [(c, base) for c in params["conditions"] if c != base] + [tuple(p) for p in params.get("contrasts", [])]
    out = {}
    for metric in sorted({k[3] for k in cells}):
        for c, ref in pairs:
            have = [s for s in seeds if (c, s, final, metric) in cells and (ref, s, final, metric) in cells]
            if not have:
                continue
            keys = sorted(set.intersection(*(set(cells[(x, s, final, metric)]) for s in have for x in (c, ref))))
            if len(keys) < 2:
                continue
            d = [[cells[(c, s, final, metric)][k] - cells[(ref, s, final, metric)][k] for k in keys] for s in have]
            if not np.any(d):  # bit-identical runs (a filter that removed nothing): no information on variance
                continue
            out[(c, ref, metric)] = variance_components(d)
    if not out:
        raise CurationError(
            f"{pilot}: no condition and baseline share a seed and items; the pilot cannot size a contrast"
        )
    return out


def _choose(comps: dict, metric: str) -> Components:
    """The mean over the pilot's contrasts on this metric (or on all metrics when it has none on this one): a pilot
    has few seeds, and one contrast's seed variance from two seeds rests on one degree of freedom, so the contrasts
    are pooled rather than each sized from its own noisy estimate."""
    same = [v for (_, _, m), v in comps.items() if m == metric] or list(comps.values())
    label = (
        f"pooled over the pilot's {len(same)} contrasts on {metric}"
        if any(m == metric for *_, m in comps)
        else f"pooled over all {len(same)} of the pilot's contrasts"
    )
    item_var = float(np.mean([v["item_var"] for v in same]))
    seed_vals = [v["seed_var"] for v in same if v["seed_var"] is not None]
    if seed_vals:
        seed_var = float(np.mean(seed_vals))
        n_seeds = max(v["n_seeds"] for v in same)
        label += f" ({n_seeds} seeds)"
    else:
        seed_var = ASSUMED["seed_var"]
        label += f"; seed variance assumed (one pilot seed): {ASSUMED['source']}"
    return Components(seed_var, item_var, label)


def planned_items(ef) -> dict[str, int]:
    """Items each propensity suite of the experiment will score (its files, limit_per_file, evals.seed)."""
    from curation.core.items import load_items

    out = {}
    for s in ef.exp.evals.propensity:
        try:
            out[s.name] = len(
                load_items(
                    [ef.resolve(i) for i in s.items], limit_per_file=s.limit_per_file, subset_seed=ef.exp.evals.seed
                )
            )
        except CurationError:
            out[s.name] = 0
    return out


def power_table(
    ef, seeds: list[int], pilot: str | Path | None = None, effect: float | None = None
) -> tuple[list[dict], list[str]]:
    """Rows (contrast, metric, seeds, items, sd per seed, minimum detectable effect, seeds needed) and notes."""
    from curate.experiment.graph import slug

    exp = ef.exp
    comps = pilot_components(pilot) if pilot is not None else None
    notes = []
    if comps is None:
        notes.append(
            f"no --pilot: assumed seed variance {ASSUMED['seed_var']:.2g} (sd {ASSUMED['seed_var'] ** 0.5:.3f}) and "
            f"item variance {ASSUMED['item_var']:.2g} (sd {ASSUMED['item_var'] ** 0.5:.3f}) per item, from "
            f"{ASSUMED['source']}; a pilot of your own setup (two or more seeds) replaces these"
        )
    base = exp.baseline_name
    contrasts = [(c.name, base) for c in exp.conditions if c.name != base] + [tuple(p) for p in stance_contrasts(exp)]
    n_items = planned_items(ef)
    rows = []
    for s in exp.evals.propensity:
        for mode in s.modes:
            for prompt in s.system_prompts if mode in ("chat", "generate") else [None]:
                metric = f"propensity/{s.name}/{mode}/{slug(prompt)}"
                comp = (
                    _choose(comps, metric)
                    if comps is not None
                    else Components(ASSUMED["seed_var"], ASSUMED["item_var"], "assumed")
                )
                n = n_items.get(s.name, 0)
                sd = per_seed_sd(comp.seed_var, comp.item_var, n)
                for c, ref in contrasts:
                    row = {
                        "contrast": f"{c} - {ref}",
                        "metric": metric,
                        "seeds": len(seeds),
                        "items": n,
                        "sd_per_seed": sd,
                        "seed_share": comp.seed_var / sd**2 if sd else None,
                        "mde": min_detectable_effect(sd, len(seeds), POWER, ALPHA),
                        "from": comp.source,
                    }
                    if effect is not None:
                        row["effect"] = effect
                        row["seeds_needed"] = seeds_needed(effect, comp.seed_var, comp.item_var, n, POWER, ALPHA)
                    rows.append(row)
    return rows, notes
