"""results.json's arithmetic on known per-item records: pooled rows and differences are a t-interval over per-seed
values (seeds x items), per-seed ones an item bootstrap (items only), the label split and label-balanced rate, the
log-odds change from the starting model, a label-bias shift named as such, and the power table from a pilot."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as st

from curate.experiment import analysis
from curate.experiment.report import build_results, rebuild, write_per_item

METRIC = "propensity/h/cloze/none"
ITEMS = [f"q{k:02d}" for k in range(40)]
LABEL = {i: ("yes" if k < 16 else "no" if k < 24 else "other") for k, i in enumerate(ITEMS)}
PARAMS = {
    "experiment": "t",
    "baseline": "base",
    "conditions": ["base", "cond"],
    "seeds": [0, 1, 2],
    "n_boot": 300,
    "seed": 0,
    "contrasts": [],
}
METAS = {METRIC: {"suite": "h", "mode": "cloze", "system_prompt": None, "variants": False}}


def _records(shift_yes: float, shift_no: float, shift_other: float, seeds=(0, 1, 2)) -> list[dict]:
    rng = np.random.default_rng(1)
    mu = {i: rng.uniform(0.3, 0.7) for i in ITEMS}
    recs = [
        {
            "kind": "propensity",
            "metric": METRIC,
            "condition": "start",
            "seed": None,
            "stage": "start",
            "iteration": 0,
            "item": i,
            "label": LABEL[i],
            "value": mu[i],
            "tokens": None,
        }
        for i in ITEMS
    ]
    for s in seeds:
        for c in ("base", "cond"):
            off = rng.normal(0, 0.005)
            for i in ITEMS:
                sh = {"yes": shift_yes, "no": shift_no, "other": shift_other}[LABEL[i]] if c == "cond" else 0.0
                v = float(np.clip(mu[i] + off + sh + rng.normal(0, 0.05), 0.001, 0.999))
                recs.append(
                    {
                        "kind": "propensity",
                        "metric": METRIC,
                        "condition": c,
                        "seed": s,
                        "stage": "base",
                        "iteration": 4,
                        "item": i,
                        "label": LABEL[i],
                        "value": v,
                        "tokens": None,
                    }
                )
    return recs


def _per_seed(recs, c, s):
    return {r["item"]: r["value"] for r in recs if r["condition"] == c and r["seed"] == s}


def test_pooled_values_and_differences_are_t_intervals_over_seeds():
    recs = _records(0.04, 0.04, 0.04)
    res = analysis.build(recs, PARAMS, METAS, [])
    d = next(x for x in res["differences_vs_baseline"] if x["seed"] == "pooled")
    diffs = [
        np.array([_per_seed(recs, "cond", s)[i] - _per_seed(recs, "base", s)[i] for i in ITEMS]) for s in (0, 1, 2)
    ]
    per = [d.mean() for d in diffs]
    var = np.var(per, ddof=1)
    half = st.t.ppf(0.975, 2) * np.sqrt(var) / np.sqrt(3)
    assert d["ci_method"] == "seeds x items" and d["n_seeds"] == 3 and d["n"] == 40
    assert d["diff"] == pytest.approx(np.mean(per), abs=1e-6)
    assert d["ci"] == pytest.approx([np.mean(per) - half, np.mean(per) + half], abs=1e-5)
    assert d["per_seed"] == pytest.approx(per, abs=1e-6)
    seeds = [x for x in res["differences_vs_baseline"] if x["seed"] != "pooled"]
    assert [x["seed"] for x in seeds] == [0, 1, 2] and all(x["ci_method"] == "items only" for x in seeds)
    row = next(r for r in res["results"] if r["condition"] == "cond" and r["seed"] == "pooled")
    assert row["ci_method"] == "seeds x items" and len(row["ci_items_only"]) == 2
    # the same shift on every label: no label-bias shift, the balanced difference agrees with the plain one
    assert not d["label_bias_shift"] and d["label_balanced"]["diff"] == pytest.approx(d["diff"], abs=0.01)
    assert {k: v["n"] for k, v in d["label_split"].items()} == {"yes": 16, "no": 8, "other": 16}
    moved = next(x for x in res["change_from_start"] if x["condition"] == "cond" and x["seed"] == "pooled")
    assert moved["logodds_change"]["diff"] > 0 and moved["logodds_change"]["ci_method"] == "seeds x items"


def test_opposite_moves_of_the_yes_and_no_halves_are_a_label_bias_shift():
    res = analysis.build(_records(-0.12, 0.12, 0.0), PARAMS, METAS, [])
    d = next(x for x in res["differences_vs_baseline"] if x["seed"] == "pooled")
    assert d["label_bias_shift"] and d["label_split"]["yes"]["value"] < 0 < d["label_split"]["no"]["value"]
    # 16 "yes" items moved down, 8 "no" items up: the plain mean weighs the halves 2:1, the balanced rate 1:1
    y, n, o = (d["label_split"][k]["value"] for k in ("yes", "no", "other"))
    assert d["diff"] == pytest.approx((16 * y + 8 * n + 16 * o) / 40, abs=1e-5)
    assert d["label_balanced"]["diff"] == pytest.approx((24 * (y + n) / 2 + 16 * o) / 40, abs=1e-5)
    assert d["label_balanced"]["diff"] - d["diff"] > 0.015
    from curate.experiment.report import _markdown

    assert "label-bias shift" in _markdown(res, {})


def test_one_seed_is_items_only_and_says_so():
    res = analysis.build(_records(0.04, 0.04, 0.04, seeds=(0,)), {**PARAMS, "seeds": [0]}, METAS, [])
    assert not [r for r in res["results"] if r["seed"] == "pooled"]
    assert {x["ci_method"] for x in res["differences_vs_baseline"]} == {"items only"}
    from curate.experiment.report import _markdown

    md = _markdown(res, {})
    assert "training noise was not measured" in md and "one seed: items only, training noise not measured" in md


def test_report_rebuilds_from_per_item_file_alone(tmp_path):
    recs = _records(0.04, -0.01, 0.0)
    run = tmp_path / "run"
    run.mkdir()
    write_per_item(run / "per_item.parquet", recs, PARAMS, METAS, [])
    first = build_results(run / "per_item.parquet")
    (run / "results.json").write_text(json.dumps(first, indent=1) + "\n")
    other = tmp_path / "again"
    out = rebuild(run, other)
    assert out.read_bytes() == (run / "results.json").read_bytes()
    assert (other / "report" / "report.md").is_file() and (other / "report" / "headline.png").is_file()
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "mine.txt").write_text("x")
    with pytest.raises(Exception, match="not written by"):
        rebuild(run, tmp_path / "foreign")
    assert (tmp_path / "foreign" / "mine.txt").read_text() == "x"


def test_seeds_that_agree_exactly_still_carry_their_item_noise():
    """Two seeds with the same accuracy (60 items, steps of 1/60) must not give a zero-width CI and p = 0."""
    from evals.stats import seed_interval

    assert seed_interval([-0.05, -0.05])["p"] == 0.0  # no floor: the degenerate answer
    s = seed_interval([-0.05, -0.05], floor_var=0.03**2)
    assert s["ci"][0] < -0.05 < s["ci"][1] and s["p"] > 0.05
