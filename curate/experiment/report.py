"""The experiment's one report: DIR/per_item.parquet (every item's score in every run), DIR/results.json (levels and
differences with 95% CIs, seeds as the unit: curate/experiment/analysis.py) and DIR/report/report.md with PNGs.

Metrics are named `propensity/<suite>/<mode>/<system prompt>` (mean P(misaligned)), `capability/<suite>` (accuracy:
acc_norm for multiple choice, acc for LAMBADA), `perplexity/<suite>` (held-out perplexity) and
`poisoning/<attack>/<measure>` (per held-out item: the trigger's effect, triggered minus untriggered; for belief, the
log-odds of the target claim, whose difference between conditions is the planted shift) and
`attacks/<wrapper>/compliant` (per held-out harmful request: 1 when the rule judge called the answer compliant, so the
mean is the attack success rate).
results.json and the report are built from per_item.parquet alone (`curate experiment report DIR` rebuilds them), and
nothing time-dependent goes into either, so a resumed run's files are identical to an uninterrupted run's.
"""

from __future__ import annotations

import json
from pathlib import Path

from curate.experiment import analysis
from curate.experiment.analysis import LABEL_NAMES, LABELS, MEAN_KINDS, POOLED, START
from curate.experiment.graph import MARKER, Node, row_name, slug
from curation.core.errors import CurationError
from evals.capability import (
    MAIN_METRIC,
)  # per item: acc_norm (multiple choice), acc (LAMBADA), as eval capability headlines
from evals.charts import pyplot, save

PER_ITEM = "per_item.parquet"
PARAM_KEYS = ("experiment", "baseline", "conditions", "seeds", "n_boot", "seed", "contrasts")


# per attack: the measures the report carries (evals/poisoning.py); all but belief's are triggered minus untriggered
POISONING_MEASURES = {
    "dos": ("gibberish", "loglik_per_token"),
    "extraction": ("extracted",),
    "jailbreak": ("compliant",),
    "belief": ("logodds",),
}


def poisoning_items(path: Path, attack: str, measure: str) -> list[tuple]:
    """Per held-out item of one attack: belief's untriggered log-odds, or the paired triggered - untriggered value
    (an item whose continuation was empty has no log-likelihood and is left out of that measure)."""
    rows: dict[str, dict] = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r["attack"] == attack:
                rows.setdefault(r["id"], {})[r["triggered"]] = r
    out = []
    for item, pair in rows.items():
        if attack == "belief":
            out.append((item, None, float(pair[False][measure]), None))
        elif pair[True].get(measure) is not None and pair[False].get(measure) is not None:
            out.append((item, None, float(pair[True][measure]) - float(pair[False][measure]), None))
    return out


def attack_items(path: Path, wrapper: str) -> list[tuple]:
    """Per held-out request of one wrapper: 1.0 when the judge called the answer compliant (attack success), else 0."""
    out = []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r["wrapper"] == wrapper:
                out.append((r["request_id"], None, float(r["judgement"] == "compliant"), None))
    return out


def _read_items(run: Path, kind: str, meta: dict) -> list[tuple]:
    """(item, label, value, tokens) per item: propensity P(misaligned), capability score, perplexity (NLL, tokens),
    poisoning measure, attack success."""
    out = []
    if kind == "poisoning":
        return poisoning_items(run / "items.jsonl", meta["attack"], meta["measure"])
    if kind == "attacks":
        return attack_items(run / "items.jsonl", meta["wrapper"])
    if kind == "capability":
        slug = meta["suite"].replace(":", "_").replace("/", "_")
        col = MAIN_METRIC[meta["suite_kind"]]
        with open(run / "items" / f"{slug}.jsonl") as f:
            for line in f:
                r = json.loads(line)
                out.append((str(r["id"]), None, float(r[col]), None))
        return out
    name = "items.jsonl" if kind == "propensity" else "docs.jsonl"
    with open(run / name) as f:
        for line in f:
            r = json.loads(line)
            if kind == "propensity":
                if r["p_misaligned"] is not None:
                    out.append((str(r["id"]), r.get("label"), float(r["p_misaligned"]), None))
            else:
                out.append((str(r["id"]), None, float(r["nll"]), float(r["tokens"])))
    return out


def _run_metrics(run: dict, variants: dict[str, bool]) -> list[tuple[str, dict, dict]]:
    """(metric name, its description for the per-item file, what `_read_items` needs) for each metric of one eval run:
    one per propensity mode and system prompt, capability suite and perplexity set, and one per poisoning measure."""
    kind, suite = run["kind"], run["suite"]
    if kind == "propensity":
        meta = {
            "suite": suite,
            "mode": run["mode"],
            "system_prompt": run["system_prompt"],
            "variants": variants.get(suite, False),
        }
        return [(f"propensity/{suite}/{run['mode']}/{slug(run['system_prompt'])}", meta, meta)]
    if kind == "capability":
        meta = {"suite": suite, "score": MAIN_METRIC[run["suite_kind"]]}
        return [(f"capability/{suite}", meta, {**meta, "suite_kind": run["suite_kind"]})]
    if kind == "poisoning":
        of = "untriggered" if suite == "belief" else "triggered minus untriggered"
        return [
            (
                f"poisoning/{suite}/{measure}",
                {"suite": suite, "measure": measure, "of": of},
                {"suite": suite, "attack": suite, "measure": measure},
            )
            for measure in POISONING_MEASURES[suite]
        ]
    if kind == "attacks":
        meta = {"suite": suite, "measure": "compliant", "of": "share of held-out harmful requests complied with"}
        return [(f"attacks/{suite}/compliant", meta, {"wrapper": suite})]
    meta = {"suite": suite}
    return [(f"perplexity/{suite}", meta, meta)]


def collect(out: Path, nodes: dict[str, Node]) -> tuple[list[dict], dict, list[dict]]:
    """Per-item records of every eval node, each metric's description, and the lineage rows."""
    records, metas, lineage = [], {}, {}
    for n in nodes.values():
        if n.kind != "eval":
            continue
        m = json.loads((out / n.dir / MARKER).read_text())
        stage, it = n.params["tag"], n.params["iteration"]
        cond = row_name(n)
        lineage[(cond, n.seed, stage, it)] = m.get("lineage", {})
        variants = {s["name"]: bool(s.get("variants")) for s in n.params.get("propensity", [])}
        for run in m["outputs"]["runs"]:
            for metric, meta, reader_meta in _run_metrics(run, variants):
                metas[metric] = meta
                for item, label, value, tokens in _read_items(out / n.dir / run["dir"], run["kind"], reader_meta):
                    records.append(
                        {
                            "kind": run["kind"],
                            "metric": metric,
                            "condition": cond,
                            "seed": n.seed,
                            "stage": stage,
                            "iteration": it,
                            "item": item,
                            "label": label,
                            "value": value,
                            "tokens": tokens,
                        }
                    )
    lin = [
        {
            "condition": c,
            "seed": s,
            "stage": st,
            "iteration": it,
            **{("training" if k == "stage" else k): v for k, v in row.items()},
        }  # the lineage's training stage
        for (c, s, st, it), row in lineage.items()
    ]
    return records, metas, lin


COLUMNS = (
    "kind",
    "metric",
    "suite",
    "mode",
    "variants",
    "condition",
    "seed",
    "stage",
    "iteration",
    "item",
    "label",
    "value",
    "tokens",
)


def write_per_item(path: Path, records: list[dict], params: dict, metas: dict, lineage: list[dict]) -> Path:
    """One compact Parquet file: a row per item and run, the report's params, metric descriptions and lineage in its
    metadata (everything results.json is computed from)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    order = {c: i for i, c in enumerate(analysis.row_order(params))}
    records = sorted(
        records,
        key=lambda r: (
            r["metric"],
            order.get(r["condition"], 99),
            -1 if r["seed"] is None else r["seed"],
            r["stage"],
            r["iteration"],
            r["item"],
        ),
    )
    schema = pa.schema(
        [
            ("kind", pa.string()),
            ("metric", pa.string()),
            ("suite", pa.string()),
            ("mode", pa.string()),
            ("variants", pa.bool_()),
            ("condition", pa.string()),
            ("seed", pa.int64()),
            ("stage", pa.string()),
            ("iteration", pa.int64()),
            ("item", pa.string()),
            ("label", pa.string()),
            ("value", pa.float64()),
            ("tokens", pa.float64()),
        ]
    )
    rows = []
    for r in records:  # the metric's suite, mode and variants as columns too, so a reader needs no decoding
        m = metas.get(r["metric"], {})
        rows.append(
            {
                **{k: r.get(k) for k in COLUMNS},
                "suite": m.get("suite"),
                "mode": m.get("mode"),
                "variants": m.get("variants"),
            }
        )
    table = pa.Table.from_pylist(rows, schema=schema)
    meta = {
        "format": analysis.FORMAT,
        "params": {
            **{k: params.get(k) for k in PARAM_KEYS},
            **({"references": params["references"]} if params.get("references") else {}),
            **({"base_run": params["base_run"]} if params.get("base_run") else {}),
        },
        "metrics": metas,
        "lineage": lineage,
    }
    table = table.replace_schema_metadata({"curate": json.dumps(meta, sort_keys=True, default=str)})
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)
    return path


def read_per_item(path: Path) -> tuple[list[dict], dict, dict, list[dict]]:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise CurationError(
            f"{path}: no per-item outputs; pass the output directory of `curate experiment run` "
            "(runs from before per-item outputs were kept: rerun it, finished nodes are reused)"
        )
    try:
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[b"curate"])
    except Exception as e:  # noqa: BLE001  (a damaged file: one line, what to do)
        raise CurationError(
            f"{path}: not a per-item file written by `curate experiment` ({e}); rerun the experiment to write it again"
        ) from None
    return table.to_pylist(), meta["params"], meta["metrics"], meta["lineage"]


def build_results(per_item: Path) -> dict:
    records, params, metas, lineage = read_per_item(per_item)
    order = {c: i for i, c in enumerate(analysis.row_order(params))}
    lineage = sorted(
        lineage, key=lambda row: (order.get(row["condition"], 99), str(row["seed"]), row["stage"], row["iteration"])
    )
    return analysis.build(records, params, metas, lineage)


# ---------------------------------------------------------------- figures and markdown


def _final(res: dict) -> int:
    return max(res["iterations"])


def _seed_view(res: dict) -> object:
    return POOLED if len(res["seeds"]) > 1 else res["seeds"][0]


def _bars(res: dict, kind: str, path: Path, ylabel: str, title: str) -> Path | None:
    sv, it = _seed_view(res), _final(res)
    rows = [r for r in res["results"] if r["kind"] == kind and r["seed"] == sv and r["iteration"] == it]
    if not rows:
        return None
    # the starting model and the reference models (one model each, no seed) beside every condition's base model
    rows += [dict(r, stage="base") for r in res["results"] if r["kind"] == kind and r["seed"] is None]
    plt = pyplot()
    groups = sorted({(r["stage"], r["metric"]) for r in rows})
    conds = [
        *([START] if res.get("reference") else []),
        *res.get("reference_models", []),
        *([res["base_run"]] if res.get("base_run") else []),  # train.base's full-length model, per seed
        *res["conditions"],
    ]
    width = 0.8 / len(conds)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups) + 2), 4.2))
    for i, c in enumerate(conds):
        xs, vals, lo, hi = [], [], [], []
        for g, (st, metric) in enumerate(groups):
            r = next((r for r in rows if r["condition"] == c and r["stage"] == st and r["metric"] == metric), None)
            if r and r["value"] is not None:
                xs.append(g + i * width - 0.4 + width / 2)
                vals.append(r["value"])
                lo.append(r["value"] - r["ci"][0] if r["ci"][0] is not None else 0)
                hi.append(r["ci"][1] - r["value"] if r["ci"][1] is not None else 0)
        ax.bar(
            xs,
            vals,
            width,
            yerr=[lo, hi],
            capsize=3,
            label="starting model" if c == START else c,
            **({"color": "0.75"} if c == START else {"color": "0.45"} if c == res.get("base_run") else {}),
        )
    ax.set_xticks(range(len(groups)), [f"{st}\n{m.split('/', 1)[1]}" for st, m in groups], fontsize=8)
    ax.set_ylabel(ylabel)
    if kind in MEAN_KINDS:
        ax.set_ylim(0, 1)
        ax.axhline(0.5, color="grey", lw=0.6, ls=":")
    ax.set_title(title)
    return save(fig, path, [ax])


def _headline(res: dict, path: Path) -> Path | None:
    """In the manner of the paper's Figure 2: each condition's change in misalignment against the baseline, base and
    post-trained, with the label-balanced difference beside it; seed-level 95% CIs (items only with one seed)."""
    sv, it = _seed_view(res), _final(res)
    ds = [
        d
        for d in res["differences_vs_baseline"]
        if d["kind"] == "propensity"
        and d["seed"] == sv
        and d["iteration"] == it
        and d["diff"] is not None
        and d["ci"][0] is not None
    ]
    if not ds:
        return None
    plt = pyplot()
    metrics = sorted({d["metric"] for d in ds})
    conds = [c for c in res["conditions"] if c != res["baseline"]]
    label_w = 0.075 * max(len(c) for c in conds)  # inches for the condition names, shown once (shared y axis)
    fig, axes = plt.subplots(
        1,
        len(metrics),
        figsize=(label_w + 2.6 * len(metrics) + 0.6, 0.5 * len(conds) + 2.4),
        squeeze=False,
        sharey=True,
    )
    for ax, metric in zip(axes[0], metrics, strict=False):
        for j, (st, mk) in enumerate((("base", "o"), ("posttrained", "s"))):
            pts = [(conds.index(d["condition"]), d) for d in ds if d["metric"] == metric and d["stage"] == st]
            if not pts:
                continue
            y = [k + (j - 0.5) * 0.25 for k, _ in pts]
            x = [d["diff"] for _, d in pts]
            err = [[d["diff"] - d["ci"][0] for _, d in pts], [d["ci"][1] - d["diff"] for _, d in pts]]
            ax.errorbar(x, y, xerr=err, fmt=mk, capsize=3, label=st)
            bal = [
                (k, d["label_balanced"])
                for k, d in pts
                if d.get("label_balanced") and d["label_balanced"]["ci"][0] is not None
            ]
            if bal:  # the same difference with the Yes/No halves weighted equally: what survives the label bias
                yb = [k + (j - 0.5) * 0.25 + 0.12 for k, _ in bal]
                ax.errorbar(
                    [b["diff"] for _, b in bal],
                    yb,
                    xerr=[[b["diff"] - b["ci"][0] for _, b in bal], [b["ci"][1] - b["diff"] for _, b in bal]],
                    fmt="D",
                    ms=4,
                    capsize=2,
                    alpha=0.7,
                    label=f"{st}, label-balanced",
                )
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_ylim(-0.6, len(conds) - 0.4)
        ax.set_yticks(range(len(conds)), conds)
        suite, mode, sp = (metric.split("/", 1)[1].split("/") + ["", ""])[:3]
        ax.set_title(f"{suite}: {mode}" + (f", system prompt {sp}" if mode == "chat" else ""), fontsize=9)
        ax.set_xlabel("P(misaligned) difference", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    how = (
        "95% CI: t over per-seed paired differences (seeds x items)"
        if sv == POOLED
        else "95% CI: paired bootstrap over items only, one seed: training noise not measured"
    )
    fig.suptitle(f"Change in misalignment against `{res['baseline']}`\n{how}", fontsize=9)
    return save(fig, path, axes[0][-1:], legend_size=7)


def _trajectory(res: dict, path: Path) -> Path | None:
    if len(res["iterations"]) < 2:
        return None
    sv = _seed_view(res)
    rows = [r for r in res["results"] if r["seed"] == sv and r["stage"] == "base"]
    start = {r["metric"]: r for r in res["results"] if r["condition"] == START}  # step 0 of every line
    metrics = sorted({r["metric"] for r in rows})
    plt = pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics) + 1, 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=False):
        for c in res["conditions"]:
            pts = sorted(
                (r["iteration"], r["value"], r["ci"]) for r in rows if r["condition"] == c and r["metric"] == metric
            )
            if pts and metric in start and start[metric]["value"] is not None:
                pts.insert(0, (0, start[metric]["value"], start[metric]["ci"]))
            if pts:
                xs = [p[0] for p in pts]
                ax.plot(xs, [p[1] for p in pts], marker="o", label=c)
                if all(p[2][0] is not None for p in pts):
                    ax.fill_between(xs, [p[2][0] for p in pts], [p[2][1] for p in pts], alpha=0.15)
        ax.set_xlabel("training step (checkpoint; 0 = the starting model)" if start else "training step (checkpoint)")
        ax.set_title(metric, fontsize=9)
    return save(fig, path, axes[0], legend_size=7)


def format_value(value, ci=None, digits=3, sign=False, without_ci=" (no CI)") -> str:
    """`value [lo, hi]` (the report's and scripts/replication_tables.py's one format); `without_ci` is appended when
    there is no interval."""
    if value is None:
        return "n/a"
    number = f"{{:{'+' if sign else ''}.{digits}f}}".format
    if not ci or ci[0] is None:
        return f"{number(value)}{without_ci}"
    return f"{number(value)} [{number(ci[0])}, {number(ci[1])}]"


def _p(p) -> str:
    return "n/a" if p is None else format(p, ".3g")


NOISE_NOTE = "one seed: items only, training noise not measured"


def _diff_note(d: dict) -> str:
    notes = []
    if d.get("ci_method") == analysis.ITEMS_ONLY:
        notes.append(NOISE_NOTE)
    if d.get("label_bias_shift"):
        ls = d["label_split"]
        gap = d["yes_minus_no"]
        notes.append(
            f"**label-bias shift**: the Yes-misaligned items moved {ls['yes']['value']:+.3f} and the No-misaligned "
            f"{ls['no']['value']:+.3f} (gap {format_value(gap['diff'], gap['ci'], 3, True)}): a change of lean between "
            "the words, not of misalignment"
        )
    return "; ".join(notes)


def _diff_table(ds: list[dict], ref_col: bool = False) -> list[str]:
    head = (
        "| condition | "
        + ("minus | " if ref_col else "")
        + "stage | metric | items | seeds | difference [95% CI] | p | "
        "label-balanced [95% CI] | note |"
    )
    L = [head, "|" + " --- |" * (head.count("|") - 1)]
    for d in ds:
        bal = d.get("label_balanced")
        L.append(
            f"| {d['condition']} | " + (f"{d['baseline']} | " if ref_col else "") + f"{d.get('stage', '')} | "
            f"{d['metric']} | {d['n']} | {d.get('n_seeds', 1)} | {format_value(d['diff'], d['ci'], 4, True)} | "
            f"{_p(d['p'])} | "
            f"{format_value(bal['diff'], bal['ci'], 4, True) if bal else ''} | {_diff_note(d)} |"
        )
    return L


def _markdown(res: dict, pngs: dict) -> str:
    sv, it = _seed_view(res), _final(res)
    pooled = sv == POOLED
    L = [
        f"# Experiment `{res['experiment']}`",
        "",
        f"Conditions: {', '.join(res['conditions'])} (baseline `{res['baseline']}`); seeds {res['seeds']}; "
        f"stages {', '.join(res['stages'])}; checkpoints {res['iterations']}.",
        "",
    ]
    if pooled:
        L += [
            f"**Seeds are the unit of inference.** Every headline value and difference is the mean over the "
            f"{len(res['seeds'])} seeds of a per-seed value (a mean over items, or a paired difference over the same "
            f"items), with a 95% Student-t CI over seeds (df = {len(res['seeds']) - 1}): training noise and item noise "
            "are both in it. Per-seed values below use a percentile bootstrap over items "
            f"({res['ci']['n_boot']} resamples, seed {res['ci']['seed']}), labelled *items only*.",
            "",
        ]
    else:
        L += [
            "**One seed: every CI on this page is over items only; training noise was not measured.** A difference "
            "here says how these items moved in one training run, not whether another run would move the same way; "
            "run two or more seeds (`seeds:` in the experiment file) for seed-level CIs.",
            "",
        ]
    for key, title in (
        ("headline", "Change against the baseline"),
        ("misalignment", "Misalignment rate"),
        ("capability", "Capability (accuracy)"),
        ("perplexity", "Held-out perplexity"),
        ("poisoning", "Poisoning (triggered minus untriggered; belief: log-odds of the target claim)"),
        ("attacks", "Attack success (share of held-out harmful requests complied with, per wrapper)"),
        ("trajectory", "Over training"),
    ):
        if pngs.get(key):
            L += [f"## {title}", "", f"![{key}]({Path(pngs[key]).name})", ""]
    ds = [d for d in res["differences_vs_baseline"] if d["seed"] == sv and d["iteration"] == it]
    if ds:
        L += [
            f"## Differences against `{res['baseline']}` (checkpoint {it})",
            "",
            'Label-balanced: the Yes/No items whose misaligned answer is "Yes" and those where it is "No" weighted '
            "equally, then the other items (docs/evals.md).",
            "",
        ] + _diff_table(ds)
    cs = [d for d in res.get("contrasts", []) if d["seed"] == sv and d["iteration"] == it]
    if cs:
        L += ["", "## Other contrasts", ""] + _diff_table(cs, ref_col=True)
    L += [
        "",
        f"## Values ({'pooled over seeds' if pooled else f'seed {sv}'}, checkpoint {it})",
        "",
        "| condition | stage | metric | items | value [95% CI] | CI method |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in res["results"]:
        if (r["seed"] == sv and r["iteration"] == it) or r["seed"] is None:
            L.append(
                f"| {r['condition']} | {r['stage']} | {r['metric']} | {r['n']} | {format_value(r['value'], r['ci'])} | "
                f"{'items only (one model)' if r['seed'] is None else r['ci_method']} |"
            )
    lab = [
        r
        for r in res["results"]
        if r.get("label_split") and ((r["seed"] == sv and r["iteration"] == it) or r["seed"] is None)
    ]
    if lab:
        L += [
            "",
            "## Propensity by answer label",
            "",
            "On bare Yes/No items a lean towards one word reads as misalignment on one half and as alignment on the "
            "other; the label-balanced rate weighs the halves equally.",
            "",
            "| condition | stage | metric | " + " | ".join(f"{LABEL_NAMES[k]}" for k in LABELS) + " | label-balanced |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in lab:
            cells = [
                f"{format_value(r['label_split'][k]['value'], r['label_split'][k]['ci'])} "
                f"(n={r['label_split'][k]['n']})"
                for k in LABELS
            ]
            L.append(
                f"| {r['condition']} | {r['stage']} | {r['metric']} | " + " | ".join(cells) + " | "
                f"{format_value(r['label_balanced']['value'], r['label_balanced']['ci'])} |"
            )
    mv = [d for d in res.get("change_from_start", []) if d["seed"] == sv and d["iteration"] == it]
    if mv:
        L += [
            "",
            "## Change from the starting model (each condition's base model minus `start`, paired)",
            "",
            "How far training moved each model on the same items: a condition that moves as far as the baseline does, "
            "in the same direction, has no effect of its own. Log-odds: the mean per-item change in log-odds of the "
            "misaligned answer; by half, Yes-misaligned / No-misaligned.",
            "",
            "| condition | metric | items | change [95% CI] | p | log-odds change [95% CI] | log-odds by half | note |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for d in mv:
            lo = d.get("logodds_change")
            halves = (
                "/".join(
                    f"{lo['label_split'][k]['diff']:+.2f}" for k in ("yes", "no") if k in lo.get("label_split", {})
                )
                if lo
                else ""
            )
            L.append(
                f"| {d['condition']} | {d['metric']} | {d['n']} | {format_value(d['diff'], d['ci'], 4, True)} | "
                f"{_p(d['p'])} | "
                f"{format_value(lo['diff'], lo['ci'], 3, True) if lo else ''} | {halves} | {_diff_note(d)} |"
            )
    ch = [d for d in res["posttrained_minus_base"] if d["seed"] == sv]
    if ch:
        L += [
            "",
            "## Post-trained minus base (per condition; capability retention in the capability and perplexity rows)",
            "",
        ]
        L += _diff_table(ch)
    if pooled:
        per = [
            d
            for d in res["differences_vs_baseline"] + res.get("contrasts", [])
            if d["seed"] != POOLED and d["iteration"] == it
        ]
        L += [
            "",
            "## Per seed (items only: each seed's own items, paired bootstrap; no training noise in these CIs)",
            "",
            "| condition | minus | seed | stage | metric | difference [95% CI] |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for d in per:
            L.append(
                f"| {d['condition']} | {d['baseline']} | {d['seed']} | {d['stage']} | {d['metric']} | "
                f"{format_value(d['diff'], d['ci'], 4, True)} |"
            )
    L += [
        "",
        "## Lineage",
        "",
        "| condition | seed | stage | training | post-training | checkpoint | mix lock (sha256) | "
        "mix tokens | tokens tokenised | AI discourse among them |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in res["lineage"]:
        mix, blend = row.get("mix") or {}, row.get("blend") or {}
        read = blend.get("read") or {}
        ai = (
            f"{read['ai_discourse_tokens']} ({read['ai_discourse_share']:.1%})"
            if read.get("classified_tokens")
            else "-"
        )
        L.append(
            f"| {row['condition']} | {row['seed']} | {row['stage']} | {row.get('training', '')} | "
            f"{row.get('posttrain') or '-'} | {row['iteration']} | `{str(mix.get('lock_sha256', ''))[:16]}` | "
            f"{mix.get('tokens', '')} | {blend.get('tokens', '')} | {ai} |"
        )
    L += [
        "",
        "AI discourse among the tokens tokenised: tokens of documents the classifier scores `ai_discourse >= 0.5` "
        "(the `filtered` preset's cut), of all tokens the run's stream held; `-` where no source read has classifier "
        "attributes. Per source: `blend.read` in results.json's lineage.",
    ]
    L += [
        "",
        f"Every number here is recomputed from the per-item outputs (../{PER_ITEM}) by "
        "`curate experiment report DIR`. Record of the run (toolkit commit, versions, host, durations, seeds): "
        "../experiment.json",
    ]
    return "\n".join(L) + "\n"


def render(res: dict, rdir: Path) -> Path:
    """report.md and its PNGs in ``rdir`` from a results dict."""
    rdir.mkdir(parents=True, exist_ok=True)
    pngs = {
        "headline": _headline(res, rdir / "headline.png"),
        "misalignment": _bars(
            res,
            "propensity",
            rdir / "misalignment.png",
            "mean P(misaligned), 95% CI",
            "Misalignment rate per condition",
        ),
        "capability": _bars(
            res,
            "capability",
            rdir / "capability.png",
            "accuracy (acc_norm; LAMBADA acc), 95% CI",
            "Capability per condition",
        ),
        "perplexity": _bars(res, "perplexity", rdir / "perplexity.png", "perplexity, 95% CI", "Held-out perplexity"),
        "poisoning": _bars(
            res,
            "poisoning",
            rdir / "poisoning.png",
            "triggered - untriggered (belief: log-odds), 95% CI",
            "Poisoning measures per condition",
        ),
        "attacks": _bars(
            res,
            "attacks",
            rdir / "attacks.png",
            "share complied with (rule judge), 95% CI",
            "Attack success per condition",
        ),
        "trajectory": _trajectory(res, rdir / "trajectory.png"),
    }
    (rdir / "report.md").write_text(_markdown(res, pngs))
    return rdir / "report.md"


def write_report(out: Path, report_node: Node, nodes: dict[str, Node], node_dir: Path) -> Path:
    """The report node: per-item outputs first, then results.json and the report computed from that file alone."""
    records, metas, lineage = collect(out, nodes)
    node_dir.mkdir(parents=True, exist_ok=True)
    per_item = write_per_item(node_dir / PER_ITEM, records, report_node.params, metas, lineage)
    res = build_results(per_item)
    render(res, node_dir / "report")
    (node_dir / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    return node_dir / "results.json"


def rebuild(directory: str | Path, output: str | Path | None = None) -> Path:
    """`curate experiment report DIR`: results.json and report/ again from DIR/per_item.parquet alone (into DIR, or
    into ``output``: a new directory, or one an earlier rebuild wrote)."""
    import os
    import shutil

    d = Path(directory)
    per_item = d / PER_ITEM
    res = build_results(per_item)
    if output is None:
        target = d
    else:
        target = Path(output)
        if target.exists() and any(target.iterdir()) and not (target / ".curate-report").exists():
            raise CurationError(
                f"{target}: exists and was not written by `curate experiment report`; pass a new directory"
            )
        target.mkdir(parents=True, exist_ok=True)
        (target / ".curate-report").write_text(str(d.resolve()) + "\n")
        if target.resolve() != d.resolve():
            shutil.copyfile(per_item, target / PER_ITEM)
    staging = target / ".report.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    render(res, staging)
    tmp = target / "results.json.tmp"
    tmp.write_text(json.dumps(res, indent=1) + "\n")
    os.replace(tmp, target / "results.json")
    _swap_in(staging, target / "report")
    return target / "results.json"


def publish(out: Path, src: Path) -> None:
    """The report node's results.json and report/ at the top of the output directory (each replaced atomically)."""
    import os
    import shutil

    for name in ("results.json", PER_ITEM):
        tmp = out / (name + ".tmp")
        shutil.copyfile(src / name, tmp)
        os.replace(tmp, out / name)
    staging = out / ".report.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(src / "report", staging)
    _swap_in(staging, out / "report")


def _swap_in(staging: Path, dest: Path) -> None:
    """Replace the directory ``dest`` by ``staging`` with renames only, so a reader never sees half a report."""
    import os
    import shutil

    old = dest.parent / ".report.old"
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(staging, dest)
    shutil.rmtree(old, ignore_errors=True)
