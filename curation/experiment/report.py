"""The experiment's one report: DIR/results.json (conditions x seeds x stages x metrics, each value with its 95%
CI; paired differences against the baseline condition) and DIR/report/report.md with PNGs.

Metrics are named `propensity/<suite>/<mode>/<system prompt>` (mean P(misaligned)), `capability/<suite>` (accuracy:
acc_norm for multiple choice, acc for LAMBADA) and `perplexity/<suite>` (held-out perplexity). With several
seeds, `seed: "pooled"` rows average each item over the seeds before bootstrapping over items.
Nothing time-dependent goes into results.json, so a resumed run's file is identical to an uninterrupted run's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from curation.experiment.graph import MARKER, START, Node, _slug
from evals.charts import pyplot, save
from evals.capability import MAIN_METRIC   # per item: acc_norm (multiple choice), acc (LAMBADA), as eval capability headlines
from evals.perplexity import ppl_with_ci
from evals.stats import bootstrap_ci, paired_difference

FORMAT = "curate-experiment-results/1"


def _r(x, nd: int = 6):
    if isinstance(x, (list, tuple)):
        return [_r(v, nd) for v in x]
    if x is None or isinstance(x, (int, np.integer)):
        return None if x is None else int(x)
    return None if not np.isfinite(x) else round(float(x), nd)


MEAN_KINDS = ("propensity", "capability")                      # per-item means; perplexity pools NLL over tokens


def _read_items(run: Path, kind: str, meta: dict | None = None) -> dict[str, tuple]:
    """Per item: propensity -> (p_misaligned,), capability -> (score,), perplexity -> (nll, tokens)."""
    out = {}
    if kind == "capability":
        slug = meta["suite"].replace(":", "_").replace("/", "_")
        col = MAIN_METRIC[meta["suite_kind"]]
        with open(run / "items" / f"{slug}.jsonl") as f:
            for line in f:
                r = json.loads(line)
                out[r["id"]] = (float(r[col]),)
        return out
    name = "items.jsonl" if kind == "propensity" else "docs.jsonl"
    with open(run / name) as f:
        for line in f:
            r = json.loads(line)
            if kind == "propensity":
                if r["p_misaligned"] is not None:
                    out[r["id"]] = (r["p_misaligned"],)
            else:
                out[r["id"]] = (r["nll"], r["tokens"])
    return out


def _value(kind: str, items: dict[str, tuple], seed: int, n_boot: int) -> dict:
    if kind == "propensity":
        p = np.array([v[0] for v in items.values()])
        return {"value": float(p.mean()), "ci": list(bootstrap_ci(p, seed, n_boot)), "n": int(p.size),
                "share_misaligned": float((p > 0.5).mean()), "share_misaligned_ci": list(bootstrap_ci((p > 0.5).astype(float), seed + 1, n_boot))}
    if kind == "capability":
        a = np.array([v[0] for v in items.values()])
        return {"value": float(a.mean()), "ci": list(bootstrap_ci(a, seed, n_boot)), "n": int(a.size)}
    keys = sorted(items)
    nll = np.array([items[k][0] for k in keys])
    tok = np.array([items[k][1] for k in keys], dtype=float)
    v, ci = ppl_with_ci(nll, tok, seed, n_boot)
    return {"value": v, "ci": list(ci), "n": len(keys), "tokens": int(tok.sum())}


def _paired(kind: str, a: dict, b: dict, seed: int, n_boot: int) -> dict:
    """B minus A on the items both have, resampling items (pairs stay together)."""
    if kind in MEAN_KINDS:
        d = paired_difference({k: v[0] for k, v in a.items()}, {k: v[0] for k, v in b.items()}, seed, n_boot)
        return {"n": d["n"], "diff": d.get("diff_mean_p_misaligned"), "ci": list(d.get("ci", (None, None))), "p": d.get("p_value")}
    common = sorted(set(a) & set(b))
    if not common:
        return {"n": 0, "diff": None, "ci": [None, None], "p": None}
    na, nb = np.array([a[k][0] for k in common]), np.array([b[k][0] for k in common])
    ta, tb = np.array([a[k][1] for k in common], float), np.array([b[k][1] for k in common], float)
    diff = float(np.exp(nb.sum() / tb.sum()) - np.exp(na.sum() / ta.sum()))
    idx = np.random.default_rng(seed).integers(0, len(common), size=(n_boot, len(common)))
    boots = np.exp(nb[idx].sum(1) / tb[idx].sum(1)) - np.exp(na[idx].sum(1) / ta[idx].sum(1))
    lo, hi = np.quantile(boots, [0.025, 0.975])
    p = float(min(1.0, 2 * min((boots <= 0).mean(), (boots >= 0).mean())))
    return {"n": len(common), "diff": diff, "ci": [float(lo), float(hi)], "p": p}


def _pool(per_seed: list[dict], kind: str) -> dict:
    """Each item averaged over the seeds that scored it (perplexity: NLL and tokens summed)."""
    keys = set.intersection(*(set(d) for d in per_seed))
    if kind in MEAN_KINDS:
        return {k: (float(np.mean([d[k][0] for d in per_seed])),) for k in keys}
    return {k: (float(sum(d[k][0] for d in per_seed)), float(sum(d[k][1] for d in per_seed))) for k in keys}


def collect(out: Path, nodes: dict[str, Node]) -> tuple[dict, dict]:
    """{(condition, seed, stage, iteration, metric): (kind, items, meta)} and the lineage per (condition, seed, stage, iteration)."""
    data, lineage = {}, {}
    for n in nodes.values():
        if n.kind != "eval":
            continue
        m = json.loads((out / n.dir / MARKER).read_text())
        stage, it = n.params["tag"], n.params["iteration"]
        cond = n.condition or START
        lineage[(cond, n.seed, stage, it)] = m.get("lineage", {})
        for run in m["outputs"]["runs"]:
            if run["kind"] == "propensity":
                metric = f"propensity/{run['suite']}/{run['mode']}/{_slug(run['system_prompt'])}"
                meta = {"suite": run["suite"], "mode": run["mode"], "system_prompt": run["system_prompt"]}
            elif run["kind"] == "capability":
                metric, meta = f"capability/{run['suite']}", {"suite": run["suite"], "score": MAIN_METRIC[run["suite_kind"]]}
            else:
                metric, meta = f"perplexity/{run['suite']}", {"suite": run["suite"]}
            items = _read_items(out / n.dir / run["dir"], run["kind"], {**meta, "suite_kind": run.get("suite_kind")})
            data[(cond, n.seed, stage, it, metric)] = (run["kind"], items, meta)
    return data, lineage


def build_results(out: Path, report_node: Node, nodes: dict[str, Node]) -> dict:
    p = report_node.params
    seed, n_boot, base = p["seed"], p["n_boot"], p["baseline"]
    data, lineage = collect(out, nodes)
    seeds = p["seeds"]
    view = "pooled" if len(seeds) > 1 else seeds[0]
    for key in [k for k in data if k[0] == START]:   # one model, no replicates: it stands in every seed view
        data[(START, view) + key[2:]] = data.pop(key)
    lineage = {((START, view) + k[2:] if k[0] == START else k): v for k, v in lineage.items()}
    conds = ([START] if any(k[0] == START for k in data) else []) + p["conditions"]
    if len(seeds) > 1:   # pooled rows
        groups: dict[tuple, list] = {}
        for (c, s, st, it, metric), (kind, items, meta) in data.items():
            groups.setdefault((c, st, it, metric), []).append((kind, items, meta))
        for (c, st, it, metric), g in groups.items():
            if len(g) == len(seeds) and c != START:
                data[(c, "pooled", st, it, metric)] = (g[0][0], _pool([x[1] for x in g], g[0][0]), g[0][2])
    order = lambda k: (conds.index(k[0]), str(k[1]), k[2], k[3], k[4])  # noqa: E731
    rows, diffs = [], []
    for key in sorted(data, key=order):
        c, s, st, it, metric = key
        kind, items, meta = data[key]
        v = _value(kind, items, seed, n_boot)
        rows.append({"condition": c, "seed": s, "stage": st, "iteration": it, "kind": kind, "metric": metric, **meta,
                     **{k: _r(x) for k, x in v.items()}})
        if c not in (base, START) and (base, s, st, it, metric) in data:
            d = _paired(kind, data[(base, s, st, it, metric)][1], items, seed, n_boot)
            diffs.append({"condition": c, "baseline": base, "seed": s, "stage": st, "iteration": it, "kind": kind,
                          "metric": metric, "n": d["n"], "diff": _r(d["diff"]), "ci": _r(d["ci"]), "p": _r(d["p"])})
    moved = []     # each condition's base model minus the starting model: how far training moved it, same items
    start = {k[4]: v[1] for k, v in data.items() if k[0] == START}
    for (c, s, st, it, metric), (kind, items, _) in sorted(data.items(), key=lambda kv: order(kv[0])):
        if st == "base" and c != START and metric in start:
            d = _paired(kind, start[metric], items, seed, n_boot)
            moved.append({"condition": c, "seed": s, "iteration": it, "kind": kind, "metric": metric, "n": d["n"],
                          "diff": _r(d["diff"]), "ci": _r(d["ci"]), "p": _r(d["p"])})
    changes = []   # post-trained minus base (final checkpoint), per condition: how much of the effect survives
    for (c, s, st, it, metric), (kind, items, _) in sorted(data.items(), key=lambda kv: order(kv[0])):
        if st == "posttrained" and (c, s, "base", it, metric) in data:
            d = _paired(kind, data[(c, s, "base", it, metric)][1], items, seed, n_boot)
            changes.append({"condition": c, "seed": s, "iteration": it, "kind": kind, "metric": metric, "n": d["n"],
                            "diff": _r(d["diff"]), "ci": _r(d["ci"]), "p": _r(d["p"])})
    # the lineage's own `stage` is the training stage (pretrain/midtrain/cpt): kept as `training`, beside the eval stage
    lin = [{"condition": c, "seed": s, "stage": st, "iteration": it,
            **{("training" if k == "stage" else k): v for k, v in l.items()}} for (c, s, st, it), l in
           sorted(lineage.items(), key=lambda kv: (conds.index(kv[0][0]), str(kv[0][1]), kv[0][2], kv[0][3]))]
    trained = [r for r in rows if r["condition"] != START]
    return {"format": FORMAT, "experiment": p["experiment"], "baseline": base, "conditions": p["conditions"],
            "reference": START if START in conds else None,
            "seeds": seeds, "stages": sorted({r["stage"] for r in trained}), "iterations": sorted({r["iteration"] for r in trained}),
            "metrics": sorted({r["metric"] for r in rows}), "ci": {"level": 0.95, "method": "percentile bootstrap over items",
                                                                    "n_boot": n_boot, "seed": seed},
            "results": rows, "differences_vs_baseline": diffs, "posttrained_minus_base": changes, "change_from_start": moved,
            "lineage": lin}


# ---------------------------------------------------------------- figures and markdown

def _final(res: dict) -> int:
    return max(res["iterations"])


def _seed_view(res: dict) -> object:
    return "pooled" if len(res["seeds"]) > 1 else res["seeds"][0]


def _bars(res: dict, kind: str, path: Path, ylabel: str, title: str) -> Path | None:
    sv, it = _seed_view(res), _final(res)
    rows = [r for r in res["results"] if r["kind"] == kind and r["seed"] == sv and r["iteration"] == it]
    if not rows:
        return None
    rows += [dict(r, stage="base") for r in res["results"] if r["kind"] == kind and r["condition"] == START]
    plt = pyplot()
    groups = sorted({(r["stage"], r["metric"]) for r in rows})
    conds = ([START] if res.get("reference") else []) + res["conditions"]
    width = 0.8 / len(conds)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups) + 2), 4.2))
    for i, c in enumerate(conds):
        xs, vals, lo, hi = [], [], [], []
        for g, (st, metric) in enumerate(groups):
            r = next((r for r in rows if r["condition"] == c and r["stage"] == st and r["metric"] == metric), None)
            if r and r["value"] is not None:
                xs.append(g + i * width - 0.4 + width / 2)
                vals.append(r["value"])
                lo.append(r["value"] - r["ci"][0])
                hi.append(r["ci"][1] - r["value"])
        ax.bar(xs, vals, width, yerr=[lo, hi], capsize=3, label="starting model" if c == START else c,
               **({"color": "0.75"} if c == START else {}))
    ax.set_xticks(range(len(groups)), [f"{st}\n{m.split('/', 1)[1]}" for st, m in groups], fontsize=8)
    ax.set_ylabel(ylabel)
    if kind in MEAN_KINDS:
        ax.set_ylim(0, 1)
        ax.axhline(0.5, color="grey", lw=0.6, ls=":")
    ax.set_title(title)
    return save(fig, path, [ax])


def _headline(res: dict, path: Path) -> Path | None:
    """In the manner of the paper's Figure 2: each condition's change in misalignment against the baseline, base and
    post-trained, with paired-bootstrap 95% CIs."""
    sv, it = _seed_view(res), _final(res)
    ds = [d for d in res["differences_vs_baseline"] if d["kind"] == "propensity" and d["seed"] == sv and d["iteration"] == it
          and d["diff"] is not None]
    if not ds:
        return None
    plt = pyplot()
    metrics = sorted({d["metric"] for d in ds})
    conds = [c for c in res["conditions"] if c != res["baseline"]]
    label_w = 0.075 * max(len(c) for c in conds)   # inches for the condition names, shown once (shared y axis)
    fig, axes = plt.subplots(1, len(metrics), figsize=(label_w + 2.6 * len(metrics) + 0.6, 0.5 * len(conds) + 2.4),
                             squeeze=False, sharey=True)
    for ax, metric in zip(axes[0], metrics):
        for j, (st, mk) in enumerate((("base", "o"), ("posttrained", "s"))):
            pts = [(conds.index(d["condition"]), d) for d in ds if d["metric"] == metric and d["stage"] == st]
            if not pts:
                continue
            y = [k + (j - 0.5) * 0.25 for k, _ in pts]
            x = [d["diff"] for _, d in pts]
            err = [[d["diff"] - d["ci"][0] for _, d in pts], [d["ci"][1] - d["diff"] for _, d in pts]]
            ax.errorbar(x, y, xerr=err, fmt=mk, capsize=3, label=st)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_ylim(-0.6, len(conds) - 0.4)
        ax.set_yticks(range(len(conds)), conds)
        suite, mode, sp = (metric.split("/", 1)[1].split("/") + ["", ""])[:3]
        ax.set_title(f"{suite}: {mode}" + (f", system prompt {sp}" if mode == "chat" else ""), fontsize=9)
        ax.set_xlabel("P(misaligned) difference", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(f"Change in misalignment against `{res['baseline']}` (paired bootstrap over items, 95% CI)", fontsize=10)
    return save(fig, path, axes[0][-1:], legend_size=7)


def _trajectory(res: dict, path: Path) -> Path | None:
    if len(res["iterations"]) < 2:
        return None
    sv = _seed_view(res)
    rows = [r for r in res["results"] if r["seed"] == sv and r["stage"] == "base"]
    start = {r["metric"]: r for r in res["results"] if r["condition"] == START}   # step 0 of every line
    metrics = sorted({r["metric"] for r in rows})
    plt = pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics) + 1, 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for c in res["conditions"]:
            pts = sorted((r["iteration"], r["value"], r["ci"]) for r in rows if r["condition"] == c and r["metric"] == metric)
            if pts and metric in start and start[metric]["value"] is not None:
                pts.insert(0, (0, start[metric]["value"], start[metric]["ci"]))
            if pts:
                xs = [p[0] for p in pts]
                ax.plot(xs, [p[1] for p in pts], marker="o", label=c)
                ax.fill_between(xs, [p[2][0] for p in pts], [p[2][1] for p in pts], alpha=0.15)
        ax.set_xlabel("training step (checkpoint; 0 = the starting model)" if start else "training step (checkpoint)")
        ax.set_title(metric, fontsize=9)
    return save(fig, path, axes[0], legend_size=7)


def _fmt(v, ci, nd=3):
    if v is None:
        return "n/a"
    return f"{v:.{nd}f} [{ci[0]:.{nd}f}, {ci[1]:.{nd}f}]"


def _markdown(res: dict, pngs: dict) -> str:
    sv, it = _seed_view(res), _final(res)
    L = [f"# Experiment `{res['experiment']}`", "",
         f"Conditions: {', '.join(res['conditions'])} (baseline `{res['baseline']}`); seeds {res['seeds']}; "
         f"stages {', '.join(res['stages'])}; checkpoints {res['iterations']}. Every value has a 95% percentile-bootstrap CI "
         f"over items ({res['ci']['n_boot']} resamples, seed {res['ci']['seed']}); differences are paired (same items).", ""]
    for key, title in (("headline", "Change against the baseline"), ("misalignment", "Misalignment rate"),
                       ("capability", "Capability (accuracy)"), ("perplexity", "Held-out perplexity"),
                       ("trajectory", "Over training")):
        if pngs.get(key):
            L += [f"## {title}", "", f"![{key}]({Path(pngs[key]).name})", ""]
    L += [f"## Values (seed {sv}, checkpoint {it})", "", "| condition | stage | metric | n | value [95% CI] |", "| --- | --- | --- | --- | --- |"]
    for r in res["results"]:
        if r["seed"] == sv and (r["iteration"] == it or r["condition"] == START):
            L.append(f"| {r['condition']} | {r['stage']} | {r['metric']} | {r['n']} | {_fmt(r['value'], r['ci'])} |")
    ds = [d for d in res["differences_vs_baseline"] if d["seed"] == sv and d["iteration"] == it]
    if ds:
        L += ["", f"## Paired differences against `{res['baseline']}`", "", "| condition | stage | metric | n | difference [95% CI] | p |",
              "| --- | --- | --- | --- | --- | --- |"]
        for d in ds:
            L.append(f"| {d['condition']} | {d['stage']} | {d['metric']} | {d['n']} | {_fmt(d['diff'], d['ci'], 4)} | "
                     f"{'n/a' if d['p'] is None else format(d['p'], '.3g')} |")
    mv = [d for d in res.get("change_from_start", []) if d["seed"] == sv and d["iteration"] == it]
    if mv:
        L += ["", "## Change from the starting model (each condition's base model minus `start`, paired)", "",
              "How far training moved each model on the same items: a condition that moves as far as the baseline does, "
              "in the same direction, has no effect of its own.", "",
              "| condition | metric | n | change [95% CI] | p |", "| --- | --- | --- | --- | --- |"]
        for d in mv:
            L.append(f"| {d['condition']} | {d['metric']} | {d['n']} | {_fmt(d['diff'], d['ci'], 4)} | "
                     f"{'n/a' if d['p'] is None else format(d['p'], '.3g')} |")
    ch = [d for d in res["posttrained_minus_base"] if d["seed"] == sv]
    if ch:
        L += ["", "## Post-trained minus base (per condition; capability retention in the capability and perplexity rows)", "",
              "| condition | metric | n | change [95% CI] | p |", "| --- | --- | --- | --- | --- |"]
        for d in ch:
            L.append(f"| {d['condition']} | {d['metric']} | {d['n']} | {_fmt(d['diff'], d['ci'], 4)} | "
                     f"{'n/a' if d['p'] is None else format(d['p'], '.3g')} |")
    if len(res["seeds"]) > 1:
        L += ["", "Per-seed values are in results.json (`seed`: each replicate, and `pooled`)."]
    L += ["", "## Lineage", "", "| condition | seed | stage | training | post-training | checkpoint | mix lock (sha256) | "
          "mix tokens | tokens tokenised |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for l in res["lineage"]:
        mix, blend = l.get("mix") or {}, l.get("blend") or {}
        L.append(f"| {l['condition']} | {l['seed']} | {l['stage']} | {l.get('training', '')} | {l.get('posttrain') or '-'} | "
                 f"{l['iteration']} | `{str(mix.get('lock_sha256', ''))[:16]}` | {mix.get('tokens', '')} | {blend.get('tokens', '')} |")
    L += ["", "Record of the run (toolkit commit, versions, host, durations, seeds): ../experiment.json"]
    return "\n".join(L) + "\n"


def write_report(out: Path, report_node: Node, nodes: dict[str, Node], node_dir: Path) -> Path:
    res = build_results(out, report_node, nodes)
    rdir = node_dir / "report"
    rdir.mkdir(parents=True, exist_ok=True)
    pngs = {"headline": _headline(res, rdir / "headline.png"),
            "misalignment": _bars(res, "propensity", rdir / "misalignment.png", "mean P(misaligned), 95% CI",
                                  "Misalignment rate per condition"),
            "capability": _bars(res, "capability", rdir / "capability.png", "accuracy (acc_norm; LAMBADA acc), 95% CI",
                                "Capability per condition"),
            "perplexity": _bars(res, "perplexity", rdir / "perplexity.png", "perplexity, 95% CI", "Held-out perplexity"),
            "trajectory": _trajectory(res, rdir / "trajectory.png")}
    (rdir / "report.md").write_text(_markdown(res, pngs))
    (node_dir / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    return node_dir / "results.json"


def publish(out: Path, src: Path) -> None:
    """The report node's results.json and report/ at the top of the output directory (each replaced atomically)."""
    import os
    import shutil

    tmp = out / "results.json.tmp"
    shutil.copyfile(src / "results.json", tmp)
    os.replace(tmp, out / "results.json")
    staging, old = out / ".report.tmp", out / ".report.old"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(src / "report", staging)
    shutil.rmtree(old, ignore_errors=True)
    if (out / "report").exists():
        os.replace(out / "report", old)
    os.replace(staging, out / "report")
    shutil.rmtree(old, ignore_errors=True)
