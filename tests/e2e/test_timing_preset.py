"""The timing preset (`curate experiment init --preset timing`): one base run per seed shared by the midtrain and cpt
conditions, which start where it stops (90% of the steps), beside the end-to-end conditions; and the file checks that
keep an experiment's stages consistent."""

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
        # the first 18 of 20 steps, on the 20-step schedule
        assert (bt["train"]["steps"], bt["optim"]["decay_steps"], bt["train"]["seed"]) == (18, 20, seed)
        mid, cpt = nodes[f"filtered-midtrain/train-s{seed}"], nodes[f"filtered-cpt/train-s{seed}"]
        assert base.id in mid.deps and base.id in cpt.deps
        mt, ct = mid.params["config"]["train"], cpt.params["config"]["train"]
        assert (mt["continue_from"], mt["continue_iteration"], mt["steps"], mt["init_from"]) == ("@base", 18, 20, None)
        assert (ct["init_from"], ct["steps"], "continue_from" in ct) == ("@base", 2, False)
        assert (mid.params["stage"], cpt.params["stage"]) == ("midtrain", "cpt")
        for c in ("unfiltered", "filtered-e2e"):
            e2e = nodes[f"{c}/train-s{seed}"]
            assert not any("base" in d for d in e2e.deps) and e2e.params["config"]["train"]["steps"] == 20
            assert (
                "continue_from" not in e2e.params["config"]["train"]
                and e2e.params["config"]["train"]["init_from"] is None
            )
        # every arm's final model is reported at step 20 (cpt: 18 base steps + its 2), so all are compared
        for c in stages:
            assert f"{c}/eval-s{seed}-i20" in nodes
        assert nodes[f"filtered-cpt/eval-s{seed}-i20"].deps == [f"filtered-cpt/convert-s{seed}-i2"]
        assert nodes[f"filtered-midtrain/eval-s{seed}-i20"].deps == [f"filtered-midtrain/convert-s{seed}-i20"]
    assert sum(1 for n in nodes.values() if n.kind == "mix") == 5  # four conditions and the base mix
    # only what is read is tokenised: the midtrain condition reads 2 steps of its mix, the base run 18 of its own
    tok = {i.split("/")[0]: n.params["max_tokens"] for i, n in nodes.items() if n.kind == "tokens"}
    assert tok["filtered-midtrain"] == tok["filtered-cpt"] < tok["_shared"] < tok["filtered-e2e"]
    assert nodes["_report"].params["contrasts"] == [["filtered-midtrain", "filtered-cpt"]]


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
