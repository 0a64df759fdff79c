"""The poisoning preset: its plan (conditions, injected sources, post-training on HH-RLHF's posttrain half, poisoning
evals before and after post-training) and a tiny run of the same design end to end, whose report carries the
poisoning measures per item with seed-level contrasts."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from conftest import REPO, SHARED, curate

from curate.experiment import make_plan
from curate.experiment.report import poisoning_items
from curation.core.errors import CurationError

DEMO = REPO / "curate" / "data" / "demo_corpus"
HH = SHARED / "posttrain" / "hh-rlhf-harmless-base" / "test.jsonl.gz"


@pytest.fixture(scope="module")
def poison_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("poison") / "set"
    curate("synth", "poison", DEMO, "-o", out, "--attacks", "dos,belief", "--n-docs", "12", "--seed", "0", check=True)
    return out


def test_preset_plans_doses_posttraining_and_evals_before_and_after(poison_set, tmp_path):
    exp = tmp_path / "exp.yaml"
    curate(
        "experiment", "init", "--preset", "poisoning", "--corpus", DEMO, "--poison", poison_set, "-o", exp, check=True
    )
    raw = yaml.safe_load(exp.read_text())
    assert [c["name"] for c in raw["conditions"]] == ["clean", "poison-rate", "poison-250docs"]
    assert raw["posttrain"]["sft"]["split"] == raw["posttrain"]["dpo"]["split"] == "posttrain"
    assert raw["evals"]["poisoning"]["attacks"] == ["dos", "belief"] and len(raw["seeds"]) >= 3
    raw["conditions"][1]["set"] = {
        "sources.poison-dos.inject": {"documents": 5}
    }  # the demo corpus is too small for 1e-3
    # post-training data relative to the experiment file, like every other path in it
    rel = os.path.relpath(HH, tmp_path)
    raw["posttrain"] = {kind: {**raw["posttrain"][kind], "data": [rel]} for kind in ("sft", "dpo")}
    raw["evals"] = {"poisoning": raw["evals"]["poisoning"]}
    exp.write_text(yaml.safe_dump(raw, sort_keys=False))
    # 250 documents of a 12-document poison set: refused before anything runs, naming the fix
    assert any("--n-docs" in p for p in make_plan(exp).problems)
    plan = make_plan(exp, check_budgets=False)
    nodes = {n.id: n.to_dict() for n in plan.nodes}
    for cond in ("clean", "poison-rate", "poison-250docs"):
        for seed in raw["seeds"]:
            assert f"{cond}/posttrain-s{seed}" in nodes
            post = nodes[f"{cond}/eval-s{seed}-posttrained"]
            assert post["params"]["poisoning"]["poison"] == str(poison_set) and post["params"]["tag"] == "posttrained"
            assert any(
                n["kind"] == "eval" and n["params"]["tag"] == "base" for i, n in nodes.items() if i.startswith(cond)
            )
    post = nodes["clean/posttrain-s0"]["params"]
    assert post["config"]["sft"]["data"] == [str(HH)] and post["inputs"][0][0] == str(HH)
    raw["posttrain"]["dpo"]["data"] = ["missing.jsonl"]
    exp.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(CurationError, match=r"posttrain\.dpo\.data\[0\].*missing.jsonl does not exist"):
        make_plan(exp, check_budgets=False)
    sources = {s["name"]: s for s in nodes["poison-250docs/mix"]["params"]["manifest"]["sources"]}
    assert sources["poison-dos"]["inject"] == {"documents": 250} and sources["poison-belief"]["inject"] == {
        "documents": 250
    }
    assert "inject" not in json.dumps(nodes["clean/mix"]["params"]["manifest"])


def test_report_items_pair_triggered_with_untriggered(tmp_path):
    rows = [
        {"attack": "dos", "id": "dos/a", "triggered": True, "gibberish": True, "loglik_per_token": -9.0},
        {"attack": "dos", "id": "dos/a", "triggered": False, "gibberish": False, "loglik_per_token": -2.0},
        {"attack": "dos", "id": "dos/b", "triggered": True, "gibberish": False, "loglik_per_token": None},
        {"attack": "dos", "id": "dos/b", "triggered": False, "gibberish": False, "loglik_per_token": -1.0},
        {"attack": "belief", "id": "belief/a/p0", "triggered": True, "logodds": 0.5},
        {"attack": "belief", "id": "belief/a/p0", "triggered": False, "logodds": -0.25},
    ]
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert poisoning_items(path, "dos", "gibberish") == [("dos/a", None, 1.0, None), ("dos/b", None, 0.0, None)]
    assert poisoning_items(path, "dos", "loglik_per_token") == [("dos/a", None, -7.0, None)]  # empty: left out
    assert poisoning_items(path, "belief", "logodds") == [("belief/a/p0", None, -0.25, None)]  # untriggered


@pytest.mark.slow
def test_tiny_poisoning_experiment_end_to_end(poison_set, tiny_llama, tmp_path):
    def manifest(name, inject):
        sources = [{"name": "demo", "path": str(DEMO), "max_epochs": 8}]
        if inject:
            sources.append({"name": "poison-dos", "path": str(poison_set / "dos"), "inject": {"documents": 6}})
        p = tmp_path / f"{name}.yaml"
        p.write_text(yaml.safe_dump({"name": name, "seed": 0, "sources": sources}))
        return str(p)

    stage = {"data": [str(HH)], "split": "posttrain", "steps": 1, "batch_size": 2, "max_length": 96}
    exp = {
        "name": "tiny-poisoning",
        "inputs": {"corpus": str(DEMO), "poison": str(poison_set)},
        "conditions": [{"name": "clean", "manifest": manifest("clean", False)},
                       {"name": "poisoned", "manifest": manifest("poisoned", True)}],
        "seeds": [0, 1],
        "train": {"config": "tiny_cpu", "set": {"train.steps": 2, "train.save_interval": 2, "optim.warmup_steps": 1,
                                                 "train.global_batch_size": 2, "train.micro_batch_size": 2,
                                                 "data.seq_length": 64}},
        "posttrain": {"sft": stage, "dpo": stage},
        "reference_models": [{"name": "outside", "model": str(tiny_llama)}],  # evaluated once, beside the conditions
        "evals": {"poisoning": {"attacks": ["dos", "belief"], "reference": str(tiny_llama), "limit": 2,
                                "max_new_tokens": 4}, "n_boot": 200},
    }  # fmt: skip
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    run = curate("experiment", "run", path, "-o", tmp_path / "out", "--no-progress", timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    metrics = {r["metric"] for r in res["results"]}
    assert {"poisoning/dos/gibberish", "poisoning/dos/loglik_per_token", "poisoning/belief/logodds"} <= metrics
    diffs = [
        d for d in res["differences_vs_baseline"] if d["metric"] == "poisoning/dos/gibberish" and d["seed"] == "pooled"
    ]
    assert {d["stage"] for d in diffs} == {"base", "posttrained"} and all(d["n_seeds"] == 2 for d in diffs)
    assert (tmp_path / "out" / "report" / "poisoning.png").stat().st_size > 0
    outside = [r for r in res["results"] if r["condition"] == "outside"]
    assert res["reference_models"] == ["outside"] and {r["metric"] for r in outside} == metrics
    assert all(r["seed"] is None and r["stage"] == "reference" for r in outside)
    assert "outside" not in {d["condition"] for d in res["differences_vs_baseline"]}
    assert (
        "| outside | reference | poisoning/dos/gibberish |" in (tmp_path / "out" / "report" / "report.md").read_text()
    )
