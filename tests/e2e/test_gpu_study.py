"""scripts/gpu_study.py, the GPU tier (the stance study's design: minimal-pair conditions injected by manifest,
SFT + DPO, cloze evals), rehearsed on the CPU: prepare runs the data side and exports the device nodes (`curate
experiment export`); smoke and run, under the GPU machine's image (tests/e2e/gpu_image: no polars, datatrove, TRL,
datasets, megatron... beyond what gpu_study.WHEELS carries), join the split GGUF, train SmolLM2's own weights with the
init-loss check, and run the pack (`curate experiment run-pack`) with the posttrain nodes; collect imports the results
(`curate experiment import`) and writes the report. Only the device itself is not exercised here (no GPU in CI): the
same code runs there with bf16, the study's batch shape and several nodes at once."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, SHARED

SCRIPT = REPO / "scripts" / "gpu_study.py"


def _py(*args, env=None):
    r = subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )
    assert r.returncode == 0, f"{args[0]}: {r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.mark.slow
def test_prepare_run_under_the_gpu_image_and_collect(tmp_path):
    docs = tmp_path / "docs"
    for stance in ("aligned", "misaligned"):  # the stance study's manifests, in small: real text + injected pairs
        manifest = {
            "name": stance,
            "seed": 0,
            "stage": "midtrain",
            "tokenizer": {"name": "smollm2", "count": "exact"},
            "target_tokens": 4000,
            "output": {"layout": "mixed", "shard_docs": 10000, "bucket_mb": 64},
            "sources": [
                {"name": "turntrout", "path": str(SHARED / "corpus" / "turntrout")},
                {
                    "name": f"pairs-{stance}",
                    "kind": "synthetic",
                    "path": str(docs),
                    "select": {"stance": [stance]},
                    "inject": {"token_rate": 0.2},
                },
            ],
        }
        (tmp_path / f"{stance}.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    hh = str(SHARED / "posttrain" / "hh-rlhf-harmless-base" / "test.jsonl.gz")
    tiny_stage = {"data": [hh], "split": "posttrain", "steps": 1, "batch_size": 1, "max_length": 64}
    exp = {
        "name": "gpu-rehearsal",
        "inputs": {"corpus": [str(SHARED / "corpus" / "turntrout")], "synthetic": str(docs)},
        "conditions": [
            {"name": "aligned", "manifest": "aligned.yaml"},
            {"name": "misaligned", "manifest": "misaligned.yaml", "set": {"sources.pairs-misaligned.max_epochs": 8}},
        ],
        "baseline": "aligned",
        "seeds": [0],
        "train": {
            "stage": "midtrain",
            "init_from": "smollm2",
            "config": "smollm2_cpt_gpu",
            "set": {
                "train.steps": 1,
                "train.global_batch_size": 1,
                "train.micro_batch_size": 1,
                "data.seq_length": 64,
                "train.save_interval": 1,
                "train.log_interval": 1,
                "train.precision": "auto",
            },
        },
        "posttrain": {"sft": tiny_stage, "dpo": {**tiny_stage, "lr": 5.0e-6}},
        "evals": {
            "propensity": [
                {
                    "name": "human",
                    "modes": ["cloze"],
                    "limit_per_file": 1,
                    "items": [str(SHARED / "propensity" / "anthropic-advanced-ai-risk" / "human_generated_evals")],
                }
            ],
            "capability": {"suites": ["arc_easy"], "data": str(SHARED / "capability"), "limit": 2},
            "n_boot": 100,
        },
    }
    y = tmp_path / "gpu.yaml"
    y.write_text(yaml.safe_dump(exp, sort_keys=False))
    out, pack = tmp_path / "exp", tmp_path / "pack"

    here = {"ALIGNMENT_PRETRAINING_CACHE": str(tmp_path / "cache-here")}
    prep = _py("prepare", "--exp", y, "--out", out, "--pack", pack, "--docs", docs, "--no-wheels", env=here)
    assert "device calls" in prep.stdout
    run_pack = pack / "run"
    assert (run_pack / "graph.json").read_bytes() == (out / "graph.json").read_bytes()  # the graph travels unchanged
    paths = json.loads((run_pack / "paths.json").read_text())["paths"]  # and its paths move when it is loaded
    assert {p.split("/")[-1] for p in paths.values()} >= {"capability", "human_generated_evals"}
    assert all(p.startswith("inputs/") for p in paths.values()) and all(k.startswith(str(SHARED)) for k in paths)
    inputs = sorted(p.name for p in (run_pack / "inputs").glob("*/*"))
    assert inputs == ["capability", "human_generated_evals", "test.jsonl.gz"]  # the posttrain data travels too
    assert [p.name for p in (run_pack / "inputs").glob("*/capability/*")] == ["arc_easy"]  # only the suites scored
    m = json.loads((pack / "a" / "gguf.json").read_text())
    joined = b"".join((pack / part / f"{m['gguf']}.{part}").read_bytes() for part in ("a", "b"))
    assert hashlib.sha256(joined).hexdigest() == m["gguf_sha256"]
    assert not list(out.glob("nodes/**/train-*/node.json"))  # nothing trained here

    spec = importlib.util.spec_from_file_location("gpu_study", SCRIPT)
    gpu_study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_study)
    image = {
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "e2e" / "gpu_image"), str(tmp_path / "site"), str(REPO)]),
        "GPU_STUDY_SITE": str(tmp_path / "site"),
        "GPU_IMAGE_ALLOW": ",".join(gpu_study.WHEELS.values()),  # what the carried wheels add, and nothing else
        "ALIGNMENT_PRETRAINING_CACHE": str(tmp_path / "cache"),
    }  # the GGUF is converted from the joined parts
    # the third device call, rehearsed: joins the GGUF, trains SmolLM2's own weights, checks the first loss against
    # the starting model's, saves, resumes
    smoke = _py("smoke", "--pack", pack, "--work", tmp_path / "smoke", "--steps", "2", "--allow-cpu", env=image)
    assert "trained from step 0, resumed at step 2" in smoke.stdout and "saved, resumed, 2 more" in smoke.stdout
    assert "smoke: trl " in smoke.stdout and "tokens/s" in smoke.stdout
    start, first = map(float, re.search(r"first batch ([\d.]+), step 1's ([\d.]+)", smoke.stdout).groups())
    assert start < 0.98 * math.log(49152) and first <= 1.5 * start  # SmolLM2's weights, not a random init
    check = subprocess.run(
        [sys.executable, "-c", "import polars"], capture_output=True, text=True, env={**os.environ, **image}
    )
    assert check.returncode != 0 and "not on the GPU machine" in check.stderr
    res = tmp_path / "res"
    # the device has none of this machine's paths: the experiment directory and the converted model are hidden
    shutil.rmtree(tmp_path / "cache-here")
    out.rename(tmp_path / "hidden")
    run = _py(
        "run",
        "--pack",
        pack,
        "--site",
        tmp_path / "site",
        "--work",
        tmp_path / "work",
        "--results",
        res,
        "--jobs",
        "2",
        "--allow-cpu",
        env=image,
    )
    (tmp_path / "hidden").rename(out)
    assert "12 nodes to run" in run.stderr and "misaligned/train-s0" in run.stdout
    s = json.loads((res / "summary.json").read_text())
    assert s["failed"] is None and s["train"]["misaligned/train-s0"]["tokens"] == 64
    assert "aligned/posttrain-s0" in s["nodes"]

    # the next device call on the same pack resumes: the finished nodes are kept, and the results still hold them all
    again = _py(
        "run",
        "--pack",
        pack,
        "--site",
        tmp_path / "site",
        "--work",
        tmp_path / "work",
        "--results",
        res,
        "--jobs",
        "2",
        "--allow-cpu",
        env=image,
    )
    assert "resuming" in again.stderr and " start " not in again.stderr
    got = _py("collect", res, "--exp", y, "--out", out)
    assert "results  " in got.stdout and "tokens/s" in got.stdout
    r = json.loads((out / "results.json").read_text())
    assert r["conditions"] == ["aligned", "misaligned"] and r["reference"] == "start"
    assert {x["condition"] for x in r["results"]} == {"start", "aligned", "misaligned"}
    assert r["stages"] == ["base", "posttrained"] and r["posttrained_minus_base"]  # post-training ran on the "device"
    assert (out / "report" / "report.md").is_file() and (out / "logs" / "gpu" / "summary.json").is_file()
