"""The tables of docs/results/small-scale-replication.md, recomputed from a run's per_item.parquet and results.json.

    python scripts/replication_tables.py docs/results/small-scale-replication      # the shipped files
    python scripts/replication_tables.py runs/study                                  # after `make study`

Prints markdown: propensity levels and differences with seed-level CIs (the headline), their item-only CIs beside
them, the answer-label split, capability and perplexity, and how far each run moved from the starting model (mean
|p - 0.5| and the per-item correlation with the untrained model, which results.json does not carry).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from curate.experiment.report import format_value  # noqa: E402  (the report's format, from a script)


def fmt(value, ci=None, digits=3, sign=False):
    return format_value(value, ci, digits, sign, without_ci="")


def main(run_dir: Path) -> None:
    res = json.loads((run_dir / "results.json").read_text())
    items = pq.read_table(run_dir / "per_item.parquet").to_pylist()
    seeds, base = res["seeds"], res["baseline"]
    last_iteration = max(res["iterations"])
    prop = [metric for metric in res["metrics"] if metric.startswith("propensity/")]
    print("## Levels (pooled over seeds: t over seeds; [items only] beside)\n")
    print("| condition | stage | metric | mean P(misaligned) [95% CI, seeds x items] | items only | label-balanced |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in res["results"]:
        final_pooled = row["seed"] == "pooled" and row["iteration"] == last_iteration
        if row["metric"] in prop and (final_pooled or row["condition"] == "start"):
            balanced = row["label_balanced"]
            print(
                f"| {row['condition']} | {row['stage']} | {row['metric'].split('/', 2)[2]} | "
                f"{fmt(row['value'], row['ci'])} | {fmt(row['value'], row.get('ci_items_only') or row['ci'])} | "
                f"{fmt(balanced['value'], balanced['ci'])} |"
            )
    for key, title in (
        ("differences_vs_baseline", f"Differences against {base}"),
        ("contrasts", "Other contrasts"),
        ("posttrained_minus_base", "Post-trained minus base"),
    ):
        print(f"\n## {title}\n")
        print(
            "| condition | ref | stage | metric | per seed (items only) | pooled [95% CI, seeds x items] | p | "
            "label-balanced | yes / no / other | label-bias shift |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for diff in res[key]:
            if diff["seed"] != "pooled" or diff["iteration"] != last_iteration:
                continue
            per_seed = [
                other
                for other in res[key]
                if other["seed"] != "pooled"
                and other["condition"] == diff["condition"]
                and other.get("baseline") == diff.get("baseline")
                and other.get("stage") == diff.get("stage")
                and other["metric"] == diff["metric"]
                and other["iteration"] == last_iteration
            ]
            label_split = diff.get("label_split") or {}
            split = (
                " / ".join(fmt(label_split[label]["value"], digits=3, sign=True) for label in ("yes", "no", "other"))
                if label_split
                else ""
            )
            bal = diff.get("label_balanced")
            print(
                f"| {diff['condition']} | {diff.get('baseline', diff['condition'] + ' base')} | "
                f"{diff.get('stage', 'posttrained')} | "
                f"{diff['metric']} | "
                + "; ".join(fmt(other["diff"], other["ci"], 3, True) for other in per_seed)
                + " | "
                f"{fmt(diff['diff'], diff['ci'], 3, True)} | {diff['p']:.3g} | "
                f"{fmt(bal['diff'], bal['ci'], 3, True) if bal else ''} | "
                f"{split} | {'yes' if diff.get('label_bias_shift') else ''} |"
            )
    print("\n## How far each run moved from the starting model (base stage, per seed)\n")
    print(
        "| metric | condition | seed | mean P(misaligned) | mean abs(p - 0.5) | correlation with start | "
        "log-odds change |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for metric in prop:
        start = {row["item"]: row["value"] for row in items if row["metric"] == metric and row["condition"] == "start"}
        if not start:
            continue
        keys = sorted(start)
        start_p = np.array([start[item] for item in keys])
        print(
            f"| {metric.split('/', 2)[2]} | start | | {start_p.mean():.3f} | {np.abs(start_p - 0.5).mean():.3f} | 1 | |"
        )
        for condition in res["conditions"]:
            for seed in seeds:
                run_values = {
                    row["item"]: row["value"]
                    for row in items
                    if row["metric"] == metric
                    and row["condition"] == condition
                    and row["seed"] == seed
                    and row["stage"] == "base"
                    and row["iteration"] == last_iteration
                }
                if not run_values:
                    continue
                run_p = np.array([run_values[item] for item in keys])
                log_odds_change = np.log(
                    np.clip(run_p, 1e-6, 1 - 1e-6) / (1 - np.clip(run_p, 1e-6, 1 - 1e-6))
                ) - np.log(np.clip(start_p, 1e-6, 1 - 1e-6) / (1 - np.clip(start_p, 1e-6, 1 - 1e-6)))
                print(
                    f"| | {condition} | {seed} | {run_p.mean():.3f} | {np.abs(run_p - 0.5).mean():.3f} | "
                    f"{np.corrcoef(run_p, start_p)[0, 1]:.3f} | {log_odds_change.mean():+.3f} |"
                )
    print("\n## Capability and perplexity (pooled; seeds x items)\n")
    print("| condition | stage | metric | value [95% CI] | difference against baseline [95% CI] |")
    print("| --- | --- | --- | --- | --- |")
    for row in res["results"]:
        if row["kind"] != "propensity" and row["seed"] == "pooled" and row["iteration"] == last_iteration:
            diff = next(
                (
                    other
                    for other in res["differences_vs_baseline"]
                    if other["seed"] == "pooled"
                    and other["condition"] == row["condition"]
                    and other["stage"] == row["stage"]
                    and other["metric"] == row["metric"]
                    and other["iteration"] == last_iteration
                ),
                None,
            )
            print(
                f"| {row['condition']} | {row['stage']} | {row['metric']} | {fmt(row['value'], row['ci'])} | "
                f"{fmt(diff['diff'], diff['ci'], 3, True) if diff else ''} |"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results/small-scale-replication"))
