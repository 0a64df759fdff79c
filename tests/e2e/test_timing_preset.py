"""The timing preset (`curate experiment init --preset timing`): one base run per seed shared by the midtrain and cpt
conditions (midtrain continues its save at 90% of the steps, cpt starts from its full-length end), beside the
end-to-end conditions; and the file checks that keep an experiment's stages consistent."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO, curate

from curate.experiment import make_plan
from curation.core.errors import CurationError

DEMO = REPO / "curate" / "data" / "demo_corpus"


@pytest.fixture(scope="module")
def timing(tmp_path_factory):
    d = tmp_path_factory.mktemp("timing")
    curate("experiment", "init", "--preset", "timing", "-o", d / "exp.yaml", check=True)
    raw = yaml.safe_load((d / "exp.yaml").read_text())
    raw["seeds"] = [0, 1]
    (d / "exp.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return d / "exp.yaml", raw


def test_preset_plans_one_shared_base_run_per_seed_and_three_arms(timing):
    exp, raw = timing
    stages = {c["name"]: c["stage"] for c in raw["conditions"]}
    assert stages == {
        "unfiltered": "pretrain",
        "filtered-e2e": "pretrain",
        "filtered-midtrain": "midtrain",
        "filtered-cpt": "cpt",
    }
    nodes = {n.id: n for n in make_plan(exp, check_budgets=False).nodes}
    bases = sorted(i for i, n in nodes.items() if n.kind == "train" and n.condition is None)
    assert bases == ["_shared/base-train-s0", "_shared/base-train-s1"]
    for seed in (0, 1):
        base = nodes[f"_shared/base-train-s{seed}"]
        assert base.deps == ["_shared/base-tokens"] and base.seed == seed
        bt = base.params["config"]
        # all 20 steps, saving the branch iteration 18 besides (kept for midtraining)
        assert (bt["train"]["steps"], bt["train"]["save_iterations"], bt["train"]["seed"]) == (20, [18], seed)
        # its own model, full length, evaluated like the conditions' under the `base (no intervention)` row
        ev = nodes[f"_shared/base-eval-s{seed}-i20"]
        assert ev.deps == [f"_shared/base-convert-s{seed}-i20"] and ev.params["row"] == "base (no intervention)"
        assert nodes[f"_shared/base-convert-s{seed}-i20"].deps == [base.id] and ev.id in nodes["_report"].deps
        mid, cpt = nodes[f"filtered-midtrain/train-s{seed}"], nodes[f"filtered-cpt/train-s{seed}"]
        assert base.id in mid.deps and base.id in cpt.deps
        mt, ct = mid.params["config"]["train"], cpt.params["config"]["train"]
        assert (mt["continue_from"], mt["continue_iteration"], mt["steps"], mt["init_from"]) == ("@base", 18, 20, None)
        # cpt: the base run's latest save (its full-length end), a fresh optimizer, as many steps as midtraining's
        assert (ct["init_from"], ct["steps"], "continue_from" in ct) == ("@base", 2, False)
        assert (mid.params["stage"], cpt.params["stage"]) == ("midtrain", "cpt")
        for c in ("unfiltered", "filtered-e2e"):
            e2e = nodes[f"{c}/train-s{seed}"]
            assert not any("base" in d for d in e2e.deps) and e2e.params["config"]["train"]["steps"] == 20
            assert (
                "continue_from" not in e2e.params["config"]["train"]
                and e2e.params["config"]["train"]["init_from"] is None
            )
        # every arm's final model is reported at step 20 (cpt: its own 2 after the base run's 20), so all are compared
        for c in stages:
            assert f"{c}/eval-s{seed}-i20" in nodes
        assert nodes[f"filtered-cpt/eval-s{seed}-i20"].deps == [f"filtered-cpt/convert-s{seed}-i2"]
        assert nodes[f"filtered-midtrain/eval-s{seed}-i20"].deps == [f"filtered-midtrain/convert-s{seed}-i20"]
    assert sum(1 for n in nodes.values() if n.kind == "mix") == 5  # four conditions and the base mix
    # only what is read is tokenised: the midtrain condition reads 2 steps of its mix, the base run all 20 of its own
    tok = {i.split("/")[0]: n.params["max_tokens"] for i, n in nodes.items() if n.kind == "tokens"}
    assert tok["filtered-midtrain"] == tok["filtered-cpt"] < tok["_shared"] == tok["filtered-e2e"]
    assert nodes["_report"].params["contrasts"] == [["filtered-midtrain", "filtered-cpt"]]
    assert nodes["_report"].params["base_run"] == "base (no intervention)"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"base": None}, "stage midtrain / cpt starts from a model"),
        ({"init_from": "smollm2"}, "exclude each other"),
        ({"base": {"preset": "unfiltered", "share": 0.01}}, "leaves no midtraining"),
    ],
)
def test_stages_need_a_start_and_a_base_run_needs_room(timing, tmp_path, change, message):
    _, raw = timing
    bad = {**raw, "train": {**raw["train"], **change}}
    if change.get("base") is None and "base" in change:
        del bad["train"]["base"]
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(bad, sort_keys=False))
    with pytest.raises(CurationError, match=message):
        make_plan(p, check_budgets=False)
    if "init_from" in change:  # one clear line naming the file, from the command too
        r = curate("experiment", "plan", p, "--no-check")
        assert r.returncode == 2 and str(p) in r.stderr and message in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_cpt_starts_from_the_full_length_base_run_which_is_evaluated(tmp_path):
    """A tiny run (4 steps, branch at 2): the base run trains all 4 and keeps its save at 2 (pinned: save_interval 4),
    midtraining continues that save (not the base run's latest; its optimizer and schedule: tests/train), cpt starts
    from its end (iteration 4) with a fresh optimizer, and the base run's own model has report rows."""
    import json

    from test_experiment import _curate, _experiment

    from train.metrics import read_metrics

    raw = yaml.safe_load(_experiment(tmp_path).read_text())
    no_ai = raw["conditions"][1]["manifest"]
    raw["conditions"] = [
        {"name": "mid", "manifest": no_ai, "stage": "midtrain"},
        {"name": "cpt", "manifest": no_ai, "stage": "cpt"},
    ]
    raw["inputs"]["attributes"] = str(tmp_path / "attrs")  # the manifests filter on none: no classify node
    raw["train"]["set"]["train.save_interval"] = 4
    raw["train"]["base"] = {"manifest": str(tmp_path / "all.yaml"), "share": 0.5}
    raw["train"]["keep_checkpoints"] = True  # the checkpoints are compared below
    raw["evals"] = {"perplexity": [{**raw["evals"]["perplexity"][0], "max_docs": 2}], "n_boot": 100}
    exp, out = tmp_path / "timing.yaml", tmp_path / "out"
    exp.write_text(yaml.safe_dump(raw, sort_keys=False))
    r = _curate("experiment", "run", exp, "-o", out, "--jobs", "2")
    assert r.returncode == 0, r.stderr
    nodes = {n.id: n for n in make_plan(exp, out, check_budgets=False).nodes}

    def marker(node_id):
        return json.loads((out / nodes[node_id].dir / "node.json").read_text())

    base_dir = out / nodes["_shared/base-train-s0"].dir / "run" / "checkpoints"
    assert sorted(p.name for p in base_dir.glob("iter_*")) == ["iter_0000002", "iter_0000004"]
    cpt, mid = marker("cpt/train-s0")["result"], marker("mid/train-s0")["result"]
    assert mid["continued_from"] == str(base_dir / "iter_0000002") and mid["start_iteration"] == 2
    assert mid["iteration"] == 4
    assert cpt["initialised_from"] == str(base_dir / "iter_0000004") and cpt["continued_from"] is None
    assert cpt["start_iteration"] == 0 and cpt["iteration"] == 2  # a fresh optimizer and schedule, its own 2 steps
    # the start-loss guard (on by default) ran: step 1's forward, before any update, is the loaded base model's
    first = read_metrics(out / nodes["cpt/train-s0"].dir / "run")[0]
    assert first["init_loss_ratio"] == pytest.approx(1.0, abs=1e-4)
    assert marker("cpt/train-s0")["lineage"]["base_run"] | {"key": None, "mix": None} == {
        "node": "_shared/base-train-s0",
        "key": None,
        "iteration": 4,
        "optimizer": "fresh",
        "mix": None,
    }
    assert marker("mid/train-s0")["lineage"]["base_run"] | {"key": None, "mix": None} == {
        "node": "_shared/base-train-s0",
        "key": None,
        "iteration": 2,
        "optimizer": "continued",
        "mix": None,
    }
    res = json.loads((out / "results.json").read_text())
    base_rows = [x for x in res["results"] if x["condition"] == "base (no intervention)"]
    assert res["base_run"] == "base (no intervention)" and res["order"][0] == "base (no intervention)"
    assert [(x["seed"], x["stage"], x["iteration"]) for x in base_rows] == [(0, "base", 4)]
    # both arms reported at train.steps (cpt: its own 2 after the base run's 4) beside the base run
    assert {(x["condition"], x["iteration"]) for x in res["results"]} == {
        ("base (no intervention)", 4),
        ("mid", 4),
        ("cpt", 4),
    }
    assert not any(d["condition"] == "base (no intervention)" for d in res["differences_vs_baseline"])
    assert "| base (no intervention) | base | perplexity/heldout |" in (out / "report" / "report.md").read_text()
