"""`curate eval report`: compare propensity runs (training conditions, base vs post-trained) in markdown and PNG, with
capability runs (`curate eval capability`) beside them per condition."""

from __future__ import annotations

import json
from pathlib import Path

from curation.core.errors import CurationError
from curation.core.outputs import claim
from evals.charts import pyplot, save
from evals.stats import paired_difference


def load_run(run_dir: str | Path) -> dict:
    run = Path(run_dir)
    path = run / "summary.json"
    if not path.exists():
        raise CurationError(
            f"{run}: no summary.json; pass a directory written by `curate eval propensity` or `capability`"
        )
    s = json.loads(path.read_text())
    s["_dir"] = str(run)
    s["_label"] = " / ".join(x for x in (s.get("condition"), s.get("tag")) if x) or run.name
    return s


def _item_p(run: dict) -> dict[str, float]:
    """Per-item P(misaligned), read once per run (a run can appear in several comparisons)."""
    if "_item_p" not in run:
        out = {}
        with open(Path(run["_dir"]) / "items.jsonl") as f:
            for line in f:
                r = json.loads(line)
                if r["p_misaligned"] is not None:
                    out[r["id"]] = r["p_misaligned"]
        run["_item_p"] = out
    return run["_item_p"]


def _bar_chart(runs: list[dict], key: str, path: Path, title: str) -> Path:
    import numpy as np

    plt = pyplot()

    groups = sorted({g for r in runs for g in r[key]}) if key != "overall" else ["overall"]
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(groups) * max(1, len(runs) / 2) + 2), 4.2))
    x = np.arange(len(groups))
    for i, run in enumerate(runs):
        vals, lo, hi = [], [], []
        for g in groups:
            r = run["overall"] if key == "overall" else run[key].get(g)
            if r is None:
                vals.append(np.nan), lo.append(0), hi.append(0)
                continue
            v, (a, b) = r["mean_p_misaligned"], r["mean_p_misaligned_ci"]
            vals.append(v), lo.append(v - a), hi.append(b - v)
        ax.bar(x + i * width - 0.4 + width / 2, vals, width, yerr=[lo, hi], capsize=3, label=run["_label"])
    ax.set_xticks(
        x,
        [g.split("/")[-1] for g in groups],
        rotation=30 if len(groups) > 3 else 0,
        ha="right" if len(groups) > 3 else "center",
    )
    ax.set_ylabel("mean P(misaligned), 95% CI")
    ax.set_ylim(0, 1)
    ax.axhline(0.5, color="grey", lw=0.6, ls=":")
    ax.set_title(title)
    return save(fig, path, [ax])


REPORT_FILES = ("report.md", "report.json", "overall.png", "by_category.png", "capability.png")


def _capability_chart(runs: list[dict], path: Path) -> Path:
    """Each suite's headline metric (acc_norm, LAMBADA acc) per run, 95% CI; perplexity suites are in the table only."""
    import numpy as np

    plt = pyplot()

    from evals.capability import MAIN_METRIC

    suites = sorted({n for r in runs for n, v in r["suites"].items() if v["kind"] != "perplexity"})
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(suites) + 2), 4.2))
    x = np.arange(len(suites))
    for i, run in enumerate(runs):
        vals, lo, hi = [], [], []
        for n in suites:
            v = run["suites"].get(n)
            m = v[MAIN_METRIC[v["kind"]]] if v else None
            (
                vals.append(m["value"] if m else np.nan),
                lo.append(m["value"] - m["ci"][0] if m else 0),
                hi.append(m["ci"][1] - m["value"] if m else 0),
            )
        ax.bar(x + i * width - 0.4 + width / 2, vals, width, yerr=[lo, hi], capsize=3, label=run["_label"])
    ax.set_xticks(x, suites, rotation=30, ha="right")
    ax.set_ylabel("acc_norm (LAMBADA: acc), 95% CI")
    ax.set_ylim(0, 1)
    ax.set_title("Capability by run")
    save(fig, path, [ax])
    return path


def _capability_section(props: list[dict], caps: list[dict]) -> list[str]:
    """One row per condition/tag: the propensity rate beside every capability suite's headline metric."""
    from evals.capability import MAIN_METRIC, fmt_metric

    suites = list(dict.fromkeys(n for r in caps for n in r["suites"]))
    by_label: dict[str, dict] = {}
    for r in props:
        by_label.setdefault(r["_label"], {})["prop"] = r
    for r in caps:
        by_label.setdefault(r["_label"], {})["cap"] = r
    lines = [
        "",
        "## Capability beside propensity",
        "",
        "![capability](capability.png)",
        "",
        "| condition / tag | mean P(misaligned) | "
        + " | ".join(
            f"{n} ({MAIN_METRIC[next(r['suites'][n]['kind'] for r in caps if n in r['suites'])]})" for n in suites
        )
        + " |",
        "| --- | --- | " + " | ".join("---" for _ in suites) + " |",
    ]
    for label, d in by_label.items():
        p = d.get("prop")
        cells = [f"{p['overall']['mean_p_misaligned']:.3f}" if p else ""]
        for n in suites:
            v = d.get("cap", {}).get("suites", {}).get(n) if d.get("cap") else None
            cells.append(f"{fmt_metric(v[MAIN_METRIC[v['kind']]])} (n={v['n']})" if v else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def make_report(run_dirs: list[str | Path], output: str | Path, seed: int = 0, overwrite: bool = False) -> Path:
    """``overwrite``: replace an existing report's own files (report.md/json and its PNGs); refused otherwise."""
    if not run_dirs:
        raise CurationError("pass at least one run directory")
    loaded = [load_run(run_dir) for run_dir in run_dirs]
    runs = [run for run in loaded if run.get("kind") != "capability"]
    caps = [run for run in loaded if run.get("kind") == "capability"]
    owned = claim(output, "eval report", inputs=run_dirs, overwrite=overwrite)  # never a run, never another's files
    owned.replace_previous(overwrite, "report")  # only this command's files, so a stale chart cannot outlive its report
    owned.own(*REPORT_FILES)
    out = owned.root
    if not runs:
        lines = ["# Capability report"] + _capability_section([], caps)
        _capability_chart(caps, out / "capability.png")
        report = out / "report.md"
        report.write_text("\n".join(lines) + "\n")
        (out / "report.json").write_text(
            json.dumps({"runs": [run["_dir"] for run in caps], "pngs": [str(out / "capability.png")]}, indent=1)
        )
        return report
    overall_png = _bar_chart(runs, "overall", out / "overall.png", "Misalignment rate by run")
    cat_png = _bar_chart(runs, "by_category", out / "by_category.png", "Misalignment rate by category")
    lines = [
        "# Propensity report",
        "",
        "![overall](overall.png)",
        "",
        "![by category](by_category.png)",
        "",
        "| run | model | mode | system prompt | items | mean P(misaligned) [95% CI] | share P>0.5 [95% CI] |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        overall = run["overall"]
        mean_ci, share_ci = overall["mean_p_misaligned_ci"], overall["share_misaligned_ci"]
        lines.append(
            f"| {run['_label']} | {run['model']} | {run['mode']} | {json.dumps(run.get('system_prompt'))} | "
            f"{overall['n']} | {overall['mean_p_misaligned']:.3f} [{mean_ci[0]:.3f}, {mean_ci[1]:.3f}] | "
            f"{overall['share_misaligned']:.3f} [{share_ci[0]:.3f}, {share_ci[1]:.3f}] |"
        )
    # paired comparisons: every run against the first, on the items both scored
    if len(runs) > 1:
        lines += [
            "",
            f"## Paired differences against `{runs[0]['_label']}` (same items, paired bootstrap over items only: "
            "one run each, so training noise is not in these CIs; `curate experiment` pools seeds)",
            "",
            "| run | items in common | difference in mean P(misaligned) [95% CI] | p |",
            "| --- | --- | --- | --- |",
        ]
        base = _item_p(runs[0])
        for index, run in enumerate(runs[1:], start=1):
            paired = paired_difference(base, _item_p(run), seed + index)
            if paired["n"]:
                lines.append(
                    f"| {run['_label']} | {paired['n']} | {paired['diff_mean_p_misaligned']:+.3f} "
                    f"[{paired['ci'][0]:+.3f}, {paired['ci'][1]:+.3f}] | {paired['p_value']:.3g} |"
                )
            else:
                lines.append(f"| {run['_label']} | 0 | (no items in common) | |")
    # base vs post-trained, paired by condition
    tagged: dict[str, dict[str, dict]] = {}
    for run in runs:
        if run.get("tag"):
            tagged.setdefault(run.get("condition") or "", {})[run["tag"]] = run
    pairs = {condition: by_tag for condition, by_tag in tagged.items() if "base" in by_tag and len(by_tag) > 1}
    if pairs:
        lines += [
            "",
            "## Base vs post-trained",
            "",
            "| condition | base | post-trained | change (paired) [95% CI] |",
            "| --- | --- | --- | --- |",
        ]
        for cond, by_tag in sorted(pairs.items()):
            base_run = by_tag["base"]
            for tag, tagged_run in sorted(by_tag.items()):
                if tag == "base":
                    continue
                paired = paired_difference(_item_p(base_run), _item_p(tagged_run), seed)
                change = (
                    f"{paired['diff_mean_p_misaligned']:+.3f} [{paired['ci'][0]:+.3f}, {paired['ci'][1]:+.3f}]"
                    if paired["n"]
                    else "n/a"
                )
                lines.append(
                    f"| {cond or '(none)'} ({tag}) | {base_run['overall']['mean_p_misaligned']:.3f} | "
                    f"{tagged_run['overall']['mean_p_misaligned']:.3f} | {change} |"
                )
    pngs = [str(overall_png), str(cat_png)]
    if caps:
        lines += _capability_section(runs, caps)
        pngs.append(str(_capability_chart(caps, out / "capability.png")))
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    (out / "report.json").write_text(json.dumps({"runs": [run["_dir"] for run in loaded], "pngs": pngs}, indent=1))
    return report
