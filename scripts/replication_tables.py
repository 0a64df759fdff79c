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


def fmt(v, ci=None, nd=3, sign=False):
    if v is None:
        return "n/a"
    f = f"{{:{'+' if sign else ''}.{nd}f}}".format
    return f(v) if not ci or ci[0] is None else f"{f(v)} [{f(ci[0])}, {f(ci[1])}]"


def main(d: Path) -> None:
    res = json.loads((d / "results.json").read_text())
    items = pq.read_table(d / "per_item.parquet").to_pylist()
    seeds, base = res["seeds"], res["baseline"]
    it = max(res["iterations"])
    prop = [m for m in res["metrics"] if m.startswith("propensity/")]
    print("## Levels (pooled over seeds: t over seeds; [items only] beside)\n")
    print("| condition | stage | metric | mean P(misaligned) [95% CI, seeds x items] | items only | label-balanced |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in res["results"]:
        if r["metric"] in prop and (r["seed"] == "pooled" and r["iteration"] == it or r["condition"] == "start"):
            print(
                f"| {r['condition']} | {r['stage']} | {r['metric'].split('/', 2)[2]} | {fmt(r['value'], r['ci'])} | "
                f"{fmt(r['value'], r.get('ci_items_only') or r['ci'])} | {fmt(r['label_balanced']['value'], r['label_balanced']['ci'])} |"
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
        for x in res[key]:
            if x["seed"] != "pooled" or x["iteration"] != it:
                continue
            per = [
                y
                for y in res[key]
                if y["seed"] != "pooled"
                and y["condition"] == x["condition"]
                and y.get("baseline") == x.get("baseline")
                and y.get("stage") == x.get("stage")
                and y["metric"] == x["metric"]
                and y["iteration"] == it
            ]
            ls = x.get("label_split") or {}
            split = " / ".join(fmt(ls[k]["value"], nd=3, sign=True) for k in ("yes", "no", "other")) if ls else ""
            bal = x.get("label_balanced")
            print(
                f"| {x['condition']} | {x.get('baseline', x['condition'] + ' base')} | {x.get('stage', 'posttrained')} | "
                f"{x['metric']} | " + "; ".join(fmt(y["diff"], y["ci"], 3, True) for y in per) + f" | "
                f"{fmt(x['diff'], x['ci'], 3, True)} | {x['p']:.3g} | {fmt(bal['diff'], bal['ci'], 3, True) if bal else ''} | "
                f"{split} | {'yes' if x.get('label_bias_shift') else ''} |"
            )
    print("\n## How far each run moved from the starting model (base stage, per seed)\n")
    print(
        "| metric | condition | seed | mean P(misaligned) | mean abs(p - 0.5) | correlation with start | log-odds change |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for metric in prop:
        start = {r["item"]: r["value"] for r in items if r["metric"] == metric and r["condition"] == "start"}
        if not start:
            continue
        keys = sorted(start)
        s = np.array([start[k] for k in keys])
        print(f"| {metric.split('/', 2)[2]} | start | | {s.mean():.3f} | {np.abs(s - 0.5).mean():.3f} | 1 | |")
        for c in res["conditions"]:
            for seed in seeds:
                v = {
                    r["item"]: r["value"]
                    for r in items
                    if r["metric"] == metric
                    and r["condition"] == c
                    and r["seed"] == seed
                    and r["stage"] == "base"
                    and r["iteration"] == it
                }
                if not v:
                    continue
                x = np.array([v[k] for k in keys])
                lo = np.log(np.clip(x, 1e-6, 1 - 1e-6) / (1 - np.clip(x, 1e-6, 1 - 1e-6))) - np.log(
                    np.clip(s, 1e-6, 1 - 1e-6) / (1 - np.clip(s, 1e-6, 1 - 1e-6))
                )
                print(
                    f"| | {c} | {seed} | {x.mean():.3f} | {np.abs(x - 0.5).mean():.3f} | {np.corrcoef(x, s)[0, 1]:.3f} | "
                    f"{lo.mean():+.3f} |"
                )
    print("\n## Capability and perplexity (pooled; seeds x items)\n")
    print("| condition | stage | metric | value [95% CI] | difference against baseline [95% CI] |")
    print("| --- | --- | --- | --- | --- |")
    for r in res["results"]:
        if r["kind"] != "propensity" and r["seed"] == "pooled" and r["iteration"] == it:
            d_ = next(
                (
                    x
                    for x in res["differences_vs_baseline"]
                    if x["seed"] == "pooled"
                    and x["condition"] == r["condition"]
                    and x["stage"] == r["stage"]
                    and x["metric"] == r["metric"]
                    and x["iteration"] == it
                ),
                None,
            )
            print(
                f"| {r['condition']} | {r['stage']} | {r['metric']} | {fmt(r['value'], r['ci'])} | "
                f"{fmt(d_['diff'], d_['ci'], 3, True) if d_ else ''} |"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results/small-scale-replication"))
