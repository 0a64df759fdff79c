"""`curate experiment`: a tiny two-condition experiment on the shipped demo corpus, end to end (plan, run, a rerun
that skips everything, report with both conditions), a SIGKILL mid-training then a plain rerun giving the
uninterrupted run's results.json byte for byte, a changed condition rerunning only its own nodes, and the Slurm
executor through the sbatch/srun/scontrol stand-ins in tests/slurm_shim. Tiny model, 4 steps, 10 items."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import CURATE, REPO

ROOT = REPO
DEMO = ROOT / "curate" / "data" / "demo_corpus"
EVAL_DATA = ROOT / "evals" / "data" / "demo"
SHIM = REPO / "tests" / "slurm_shim"


def _manifest(path: Path, name: str, filt: str | None) -> Path:
    src = {"name": "demo", "path": str(DEMO), "max_epochs": 8}
    if filt:
        src["filter"] = filt
    path.write_text(yaml.safe_dump({"name": name, "seed": 0, "sources": [src]}))
    return path


def _experiment(d: Path, name: str = "tiny") -> Path:
    exp = {
        "name": name,
        "inputs": {"corpus": str(DEMO)},
        "conditions": [
            {"name": "all", "manifest": str(_manifest(d / "all.yaml", "all", None))},
            # the demo documents carry their authors' labels: a filter over a shard column, no classify
            {"name": "no-ai", "manifest": str(_manifest(d / "no-ai.yaml", "no-ai", "label_ai_discourse = 0"))},
        ],
        "train": {
            "config": "tiny_cpu",
            "set": {
                "train.steps": 4,
                "train.save_interval": 2,
                "train.global_batch_size": 4,
                "train.micro_batch_size": 4,
                "optim.warmup_steps": 1,
                "data.seq_length": 64,
            },
        },
        "evals": {
            "propensity": [
                {
                    "name": "demo",
                    "items": [str(EVAL_DATA / "propensity")],
                    "limit_per_file": 2,
                    "modes": ["base", "cloze"],
                }
            ],
            "capability": {"suites": ["arc_easy", "lambada"], "data": str(EVAL_DATA / "capability"), "limit": 5},
            "perplexity": [
                {
                    "name": "heldout",
                    "data": [str(EVAL_DATA / "heldout_wikipedia.jsonl")],
                    "max_docs": 6,
                    "seq_length": 64,
                }
            ],
            "checkpoints": "final",
            "n_boot": 200,
        },
    }
    p = d / "exp.yaml"
    p.write_text(yaml.safe_dump(exp, sort_keys=False))
    return p


def _curate(*args, env=None, cwd=None):
    return subprocess.run(
        [*CURATE, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    d = tmp_path_factory.mktemp("exp")
    exp, out = _experiment(d), d / "out"
    plan = _curate("experiment", "plan", exp)
    assert plan.returncode == 0, plan.stderr
    assert "all/train-s0" in plan.stdout and "no-ai/eval-s0-i4" in plan.stdout and "to run" in plan.stdout
    r = _curate("experiment", "run", exp, "-o", out, "--jobs", "2")
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert f"results  {out / 'results.json'}" in r.stdout  # results on stdout, progress on stderr
    return exp, out, r


@pytest.mark.slow
def test_runs_end_to_end_and_rerun_skips(finished):
    exp, out, first = finished
    res = json.loads((out / "results.json").read_text())
    assert res["conditions"] == ["all", "no-ai"] and res["baseline"] == "all"
    got = {(r["condition"], r["metric"]) for r in res["results"]}
    metrics = (
        "propensity/demo/base/none",
        "propensity/demo/cloze/none",
        "capability/arc_easy",
        "capability/lambada",
        "perplexity/heldout",
    )
    assert got == {(c, m) for c in ("all", "no-ai") for m in metrics}
    for r in res["results"]:
        assert r["ci"][0] <= r["value"] <= r["ci"][1] and r["stage"] == "base" and r["iteration"] == 4
        assert r["n"] == {"propensity": 10, "capability": 5, "perplexity": 6}[r["kind"]]
    # the capability value is the eval's own headline metric (acc_norm; LAMBADA acc) over the same seeded items
    ev_all = next(Path(p) for p in glob.glob(str(out / "nodes" / "all" / "eval-s0-i4-*")))
    cap = json.loads((ev_all / "capability" / "summary.json").read_text())["suites"]
    for suite, col in (("arc_easy", "acc_norm"), ("lambada", "acc")):
        row = next(r for r in res["results"] if r["condition"] == "all" and r["metric"] == f"capability/{suite}")
        assert row["value"] == pytest.approx(cap[suite][col]["value"]) and row["score"] == col
    assert {d["condition"] for d in res["differences_vs_baseline"]} == {"no-ai"}
    # lineage: condition, mix lock hash, token blend, checkpoint iteration, in the eval summary and the model's SOURCE
    ev = next(Path(p) for p in glob.glob(str(out / "nodes" / "no-ai" / "eval-s0-i4-*")))
    summ = json.loads((ev / "propensity" / "demo" / "base" / "none" / "summary.json").read_text())
    lin = summ["lineage"]
    lock = next(Path(p) for p in glob.glob(str(out / "nodes" / "no-ai" / "mix-*" / "mix" / "mix.lock.json")))
    from curate.experiment.stages import lock_digest

    assert lin["condition"] == "no-ai" and lin["iteration"] == 4 and lin["seed"] == 0
    assert lin["mix"]["lock_sha256"] == lock_digest(lock) and len(lin["mix"]["lock_sha256"]) == 64
    assert lin["blend"]["tokens"] >= 4 * 4 * 64 and lin["blend"]["tokens"] < lin["mix"]["tokens"]  # only what is read
    src = json.loads(
        next(Path(p) for p in glob.glob(str(out / "nodes" / "no-ai" / "convert-s0-i4-*" / "hf" / "SOURCE"))).read_text()
    )
    assert src["lineage"]["condition"] == "no-ai" and src["iteration"] == 4
    rec = json.loads((out / "experiment.json").read_text())
    assert rec["seeds"] == [0] and rec["versions"]["torch"] and all(n["seconds"] is not None for n in rec["nodes"])
    md = (out / "report" / "report.md").read_text()
    assert "no-ai" in md and "all" in md and (out / "report" / "misalignment.png").stat().st_size > 1000
    assert (out / "report" / "headline.png").exists() and (out / "report" / "perplexity.png").exists()
    assert (out / "report" / "capability.png").exists() and "Capability" in md
    # one seed: every difference rests on items only, and the page says training noise was not measured
    assert {d["ci_method"] for d in res["differences_vs_baseline"]} == {"items only"}
    assert "training noise was not measured" in md
    # every number is recomputed from the per-item outputs alone
    assert (out / "per_item.parquet").stat().st_size > 0
    rebuilt = _curate("experiment", "report", out, "-o", out.parent / "rebuilt")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (out.parent / "rebuilt" / "results.json").read_bytes() == (out / "results.json").read_bytes()
    # power from this run as a pilot: one seed, so the seed component is assumed and said so
    pw = _curate("experiment", "plan", exp, "--pilot", out / "results.json", "--effect", "0.05")
    assert pw.returncode == 0, pw.stderr
    assert "minimum detectable effect" in pw.stdout and "seed variance assumed" in pw.stdout
    before = (out / "results.json").read_bytes()
    again = _curate("experiment", "run", exp, "-o", out)
    assert again.returncode == 0 and "0 nodes ran" in again.stderr, again.stderr
    assert (out / "results.json").read_bytes() == before
    plan = _curate("experiment", "plan", exp, "-o", out)
    assert "to run" not in plan.stdout.split("finished,")[1].split("\n", 1)[1]


@pytest.mark.slow
def test_sigkill_then_rerun_is_identical_and_changes_rerun_only_dependents(finished, tmp_path):
    exp, done, _ = finished
    out = tmp_path / "out"
    shutil.copytree(done, out)
    for kind in ("train", "convert", "eval"):  # the condition's mix and tokens stay finished
        for p in glob.glob(str(out / "nodes" / "no-ai" / f"{kind}-*")):
            shutil.rmtree(p)
    for p in glob.glob(str(out / "nodes" / "_shared" / "_report-*")):
        shutil.rmtree(p)
    (out / "results.json").unlink()
    proc = subprocess.Popen(
        [*CURATE, "experiment", "run", str(exp), "-o", str(out)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    t0 = time.time()
    while time.time() - t0 < 400 and proc.poll() is None:
        if glob.glob(str(out / "nodes" / "no-ai" / "train-s0-*" / "run" / "checkpoints" / "latest.json")):
            os.killpg(proc.pid, signal.SIGKILL)  # the runner and its node processes, mid-training
            break
        time.sleep(0.1)
    proc.wait()
    assert not (out / "results.json").exists(), "the kill came too late to test anything"
    r = _curate("experiment", "run", exp, "-o", out)
    assert r.returncode == 0, r.stderr
    assert "start all/" not in r.stderr, "finished nodes of the other condition must not run again"
    assert (out / "results.json").read_bytes() == (done / "results.json").read_bytes()
    # a changed condition: only its own nodes (and the report) run again
    m = yaml.safe_load(exp.read_text())
    m["conditions"][1]["manifest"] = str(
        _manifest(tmp_path / "no-ai2.yaml", "no-ai", "label_ai_discourse = 0 AND length(text) > 10")
    )
    exp2 = tmp_path / "exp2.yaml"
    exp2.write_text(yaml.safe_dump(m, sort_keys=False))
    plan = _curate("experiment", "plan", exp2, "-o", out)
    to_run = [line.split("│")[1].strip() for line in plan.stdout.splitlines() if "to run" in line and "│" in line]
    assert sorted(to_run) == sorted(
        ["no-ai/mix", "no-ai/tokens", "no-ai/train-s0", "no-ai/convert-s0-i4", "no-ai/eval-s0-i4", "_report"]
    ), plan.stdout


@pytest.mark.slow
def test_slurm_one_job_per_node_with_dependencies(finished, tmp_path):
    exp, done, _ = finished
    out = tmp_path / "out"
    shutil.copytree(done, out)
    for p in glob.glob(str(out / "nodes" / "no-ai" / "eval-*")) + glob.glob(
        str(out / "nodes" / "_shared" / "_report-*")
    ):
        shutil.rmtree(p)
    (out / "results.json").unlink()
    env = {"PATH": f"{SHIM}{os.pathsep}{os.environ['PATH']}", "SLURM_SHIM_LOG": str(tmp_path / "shim.log")}
    r = _curate("experiment", "run", exp, "-o", out, "--executor", "slurm", env=env)
    assert r.returncode == 0, r.stderr
    jobs = json.loads((out / "slurm" / "jobs.json").read_text())
    assert sorted(jobs) == ["_report", "no-ai/eval-s0-i4"]
    assert jobs["no-ai/eval-s0-i4"]["after"] == []  # its convert node is finished
    assert jobs["_report"]["after"] == [jobs["no-ai/eval-s0-i4"]["job"]]  # the cached eval of `all` is no dependency
    script = (out / "slurm" / "no-ai__eval-s0-i4.sbatch").read_text()
    assert "#SBATCH --time=24:00:00" in script and "-m curate.experiment.node" in script
    # the stand-in sbatch ran each job at once: the report the jobs wrote equals the local run's
    assert (out / "results.json").read_bytes() == (done / "results.json").read_bytes()
    from curate.experiment.plan import make_plan
    from curate.experiment.slurm import script as sbatch_script

    m = yaml.safe_load(exp.read_text())
    m["train"]["gpus"] = 8
    m["train"]["nodes"] = 2
    (tmp_path / "gpu.yaml").write_text(yaml.safe_dump(m))
    plan = make_plan(tmp_path / "gpu.yaml", check_budgets=False)
    tr = next(n for n in plan.nodes if n.kind == "train")
    s = sbatch_script(out, plan, tr)
    assert (
        "#SBATCH --gpus-per-node=8" in s and "#SBATCH --nodes=2" in s and "torch.distributed.run" in s and "srun" in s
    )


@pytest.mark.slow
def test_midtraining_reports_the_starting_model(finished, tmp_path):
    """Midtraining from a model evaluates that model once (`start`), and each condition's change from it."""
    exp, done, _ = finished
    out = tmp_path / "out"
    shutil.copytree(done, out)  # mix and tokens stay finished: their keys do not involve training
    start = next(Path(p) for p in glob.glob(str(out / "nodes" / "all" / "convert-s0-i4-*" / "hf")))
    m = yaml.safe_load(exp.read_text())
    m["train"].update(stage="midtrain", init_from=str(start))
    m["conditions"] = m["conditions"][:1]
    exp2 = tmp_path / "mid.yaml"
    exp2.write_text(yaml.safe_dump(m, sort_keys=False))
    r = _curate("experiment", "run", exp2, "-o", out)
    assert r.returncode == 0, r.stderr
    assert "start _shared/eval-start" in r.stderr and "start all/mix" not in r.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["reference"] == "start" and res["conditions"] == ["all"] and res["iterations"] == [4]
    first = {
        r["metric"]: r for r in json.loads((done / "results.json").read_text())["results"] if r["condition"] == "all"
    }
    rows = [r for r in res["results"] if r["condition"] == "start"]
    assert {r["metric"] for r in rows} == set(first) and all(
        r["stage"] == "start" and r["iteration"] == 0 for r in rows
    )
    for r in rows:  # the starting model is the first run's `all` model: same scores
        assert r["value"] == pytest.approx(first[r["metric"]]["value"], abs=1e-6), r["metric"]
    moved = {d["metric"]: d for d in res["change_from_start"] if d["condition"] == "all"}
    assert set(moved) == set(first) and all(d["n"] == first[k]["n"] for k, d in moved.items())
    md = (out / "report" / "report.md").read_text()
    assert "## Change from the starting model" in md and "| start | start |" in md


def test_init_presets_and_impossible_budget(tmp_path):
    for preset in ("tice2026", "spp", "demo"):
        r = _curate("experiment", "init", "--preset", preset, "-o", tmp_path / f"{preset}.yaml", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        text = (tmp_path / f"{preset}.yaml").read_text()
        assert text.startswith("# curate experiment") and "conditions:" in text
    from curate.experiment.config import load_experiment

    assert [c.name for c in load_experiment(tmp_path / "tice2026.yaml").exp.conditions] == [
        "unfiltered",
        "filtered",
        "alignment-upsampled",
        "misalignment-upsampled",
    ]
    # synthetic documents needed past max_epochs: plan refuses, naming what is missing, before any work
    exp = _experiment(tmp_path)
    m = yaml.safe_load(exp.read_text())
    m["conditions"][1]["set"] = {"sources.demo.tokens": 5_000_000, "sources.demo.max_epochs": 2}
    exp.write_text(yaml.safe_dump(m))
    r = _curate("experiment", "plan", exp)
    assert r.returncode == 2
    assert "condition no-ai" in r.stderr and "missing" in r.stderr and "more documents" in r.stderr, r.stderr
    r = _curate("experiment", "run", exp, "-o", tmp_path / "never")
    assert r.returncode == 2 and "nothing was run" in r.stderr and not (tmp_path / "never").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text(exp.read_text().replace("checkpoints: final", "checkpoint: final"))
    r = _curate("experiment", "plan", bad)
    assert r.returncode == 2 and "bad.yaml" in r.stderr and "unknown field" in r.stderr


def test_plan_checks_synthetic_budgets_before_the_classify_node_runs(tmp_path):
    """A condition filtered on classify attributes still has its synthetic budget checked at plan time."""
    syn = tmp_path / "syn"
    w = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "write_study_docs.py"), str(syn)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if w.returncode != 0:
        pytest.skip(f"study documents unavailable: {w.stderr[-300:]}")
    exp = tmp_path / "t.yaml"
    r = _curate(
        "experiment", "init", "--preset", "tice2026", "--corpus", DEMO, "--synthetic", syn, "-o", exp, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    m = yaml.safe_load(exp.read_text())
    assert "attributes" not in (m.get("inputs") or {})  # the filtered conditions need the classify node
    m["conditions"][2]["set"] = {"target_tokens": 200_000, "sources.synthetic-aligned.weight": 0.5}
    m["evals"] = {
        "propensity": [{"name": "demo", "items": [str(EVAL_DATA / "propensity")]}]
    }  # the preset's are placeholders
    exp.write_text(yaml.safe_dump(m))
    r = _curate("experiment", "plan", exp)
    assert r.returncode == 2 and "condition alignment-upsampled" in r.stderr and "(synthetic-aligned)" in r.stderr, (
        r.stderr
    )
    assert "synth docs --target-tokens" in r.stderr


def test_eta_weighs_remaining_nodes_by_their_kind():
    from curate.experiment.graph import Node
    from curate.experiment.run import eta_seconds

    rem = [Node("a/train-s1", "train", {}), Node("a/eval-s1", "eval", {}), Node("_report", "report", {})]
    assert eta_seconds(rem, {}, 1) is None  # nothing finished: no guess
    took = {"train": [100.0, 140.0], "eval": [20.0]}
    assert eta_seconds(rem, took, 1) == pytest.approx(120 + 20 + 260 / 3)  # report: the mean of every node so far
    assert eta_seconds(rem, took, 2) == pytest.approx((120 + 20 + 260 / 3) / 2)


def test_only_runs_the_data_side_and_refuses_a_kind_whose_inputs_are_missing(tmp_path):
    """`--only classify,mix,tokens`: the data side alone (prepared on a CPU machine, trained elsewhere); `--only
    train` on a fresh output names the unfinished tokens node it needs and runs nothing."""
    exp, out = _experiment(tmp_path), tmp_path / "out"
    bad = _curate("experiment", "run", exp, "-o", tmp_path / "fresh", "--only", "train")
    assert bad.returncode == 2 and "needs all/tokens" in bad.stderr and "add tokens to --only" in bad.stderr
    assert not (tmp_path / "fresh").exists()  # refused before the output is claimed
    r = _curate("experiment", "run", exp, "-o", out, "--only", "classify,mix,tokens")
    assert r.returncode == 0, r.stderr
    assert "results" not in r.stdout and "without --only runs them" in r.stderr
    kinds = {json.loads(p.read_text())["kind"] for p in out.glob("nodes/**/node.json")}
    assert kinds == {"classify", "mix", "tokens"}
    assert len(list(out.glob("nodes/*/tokens-*/tokens/blend.json"))) == 2


def test_run_order_finishes_a_seed_before_the_next_and_seeds_narrows_the_plan(tmp_path):
    """Ready nodes start seed by seed, the stage furthest along first, so a run cut short (a device's time limit) has
    every condition's first seed complete; `--seeds` plans a subset of the file's seeds with the same nodes."""
    from curate.experiment.plan import make_plan
    from curate.experiment.run import run_order
    from curation.core.errors import CurationError

    exp = _experiment(tmp_path)
    raw = yaml.safe_load(exp.read_text())
    exp.write_text(yaml.safe_dump({**raw, "seeds": [3, 1]}, sort_keys=False))
    plan = make_plan(exp, check_budgets=False)
    order = [n.id for n in run_order(plan.nodes)]
    assert order.index("no-ai/eval-s3-i4") < order.index("all/train-s1")  # seed 3 (first in the file) first
    assert order.index("all/eval-s3-i4") < order.index("no-ai/train-s3")  # a trained model is evaluated first
    assert order[:2] == ["all/tokens", "no-ai/tokens"] and order[-1] == "_report"
    assert [n.id for n in run_order(plan.nodes[::-1])][-1] == "_report"

    one = make_plan(exp, check_budgets=False, seeds=[1])
    assert {n.seed for n in one.nodes} == {None, 1} and one.file_seeds == [3, 1]
    same = {n.id: n.key for n in plan.nodes}
    assert all(same[n.id] == n.key for n in one.nodes if n.kind != "report")  # the same nodes: nothing is redone later
    with pytest.raises(CurationError, match="choose among the experiment's seeds 3,1"):
        make_plan(exp, check_budgets=False, seeds=[0])
    bad = _curate("experiment", "plan", exp, "--no-check", "--seeds", "x")
    assert bad.returncode == 2 and "comma-separated integers" in bad.stderr


@pytest.mark.slow
def test_finished_runs_are_pruned_and_redone_when_a_new_reader_needs_them(finished, tmp_path):
    """Once its convert node has finished, a train node's checkpoints (optimizer state included) go; the converted
    model and results stay, a rerun runs nothing, a reader that appears later (here its deleted converted model)
    trains the run again, and `train.keep_checkpoints: true` keeps them."""
    from curate.experiment.plan import make_plan

    exp, done, first = finished
    freed = [line for line in first.stderr.splitlines() if line.startswith("pruned ")]
    print(*freed, sep="\n")
    assert sorted(line.split()[1].rstrip(":") for line in freed) == ["all/train-s0", "no-ai/train-s0"], first.stderr
    assert all(int(line.split(", ")[1].split()[0].replace(",", "")) > 100_000 for line in freed)
    for cond in ("all", "no-ai"):
        tr = next(Path(p) for p in glob.glob(str(done / "nodes" / cond / "train-s0-*")))
        marker = json.loads((tr / "node.json").read_text())
        assert not (tr / "run" / "checkpoints").exists() and (tr / "run" / "metrics.jsonl").is_file()
        assert marker["pruned"]["bytes"] > 0 and not any(r.startswith("run/checkpoints/") for r in marker["files"])
        assert glob.glob(str(done / "nodes" / cond / "convert-s0-i4-*" / "hf" / "config.json"))
    plan = make_plan(exp, done, check_budgets=False)
    assert not plan.to_run  # pruned nodes are finished: a plain rerun runs nothing
    # a reader appears that needs the pruned checkpoint (here: its converted model deleted): the run trains again
    out = tmp_path / "out"
    shutil.copytree(done, out)
    for p in glob.glob(str(out / "nodes" / "all" / "convert-*")):
        shutil.rmtree(p)
    plan = make_plan(exp, out, check_budgets=False)
    assert {n.id for n in plan.to_run} == {"all/train-s0", "all/convert-s0-i4"}
    assert any("all/train-s0" in note and "pruned" in note for note in plan.notes)
    keep = yaml.safe_load(exp.read_text())
    keep["train"]["keep_checkpoints"] = True
    exp2 = tmp_path / "keep.yaml"
    exp2.write_text(yaml.safe_dump(keep, sort_keys=False))
    r = _curate("experiment", "run", exp2, "-o", out)
    assert r.returncode == 0, r.stderr
    assert "start all/train-s0" in r.stderr and not any(x.startswith("pruned ") for x in r.stderr.splitlines())
    tr = next(Path(p) for p in glob.glob(str(out / "nodes" / "all" / "train-s0-*")))
    assert (tr / "run" / "checkpoints" / "latest.json").is_file()
    assert "pruned" not in json.loads((tr / "node.json").read_text())
    assert (out / "results.json").read_bytes() == (done / "results.json").read_bytes()
