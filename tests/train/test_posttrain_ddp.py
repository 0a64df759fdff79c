"""`curate train posttrain` under torchrun with two CPU processes (DDP over gloo) on a tiny Llama, with DPO on the real
HH-RLHF harmless-base pairs (the post-training half of the request split): both ranks train to the end, the data is
sharded between them (half the steps of one process), and rank 0 alone writes one complete output that a rerun skips."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import SHARED

from train.metrics import read_metrics

HH = SHARED / "posttrain" / "hh-rlhf-harmless-base" / "test.jsonl.gz"
STAGE = {"limit": 8, "epochs": 1, "batch_size": 2, "warmup_ratio": 0.0, "max_length": 128, "save_steps": 1}


@pytest.mark.skipif(not HH.exists(), reason="needs ../shared/data/posttrain/hh-rlhf-harmless-base")
def test_torchrun_two_cpu_processes_sft_then_dpo_on_hh_rlhf(tiny_llama, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    raw = {
        "model": str(tiny_llama),
        "output": str(tmp_path / "run"),
        "condition": "ddp",
        "sft": {**STAGE, "data": ["demo"], "lr": 3.0e-3},
        "dpo": {**STAGE, "data": [str(HH)], "split": "posttrain", "lr": 1.0e-3},
    }
    cfg.write_text(yaml.safe_dump(raw))
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*launch, "-m", "curate", "train", "posttrain", str(cfg), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = tmp_path / "run"
    for stage in ("sft", "dpo"):
        res = json.loads((run / stage / "run.json").read_text())
        assert res["world_size"] == 2 and [r["rank"] for r in res["ranks"]] == [0, 1]
        assert len({r["pid"] for r in res["ranks"]}) == 2  # two processes, each reported in after training
        assert res["examples"] == 8 and res["samples_per_step"] == 4
        assert res["steps"] == 2  # 8 examples over 2 ranks x batch 2: each rank saw its own half
        assert [r["iteration"] for r in read_metrics(run / stage)] == [1, 2]  # one writer, no duplicated lines
        model = run / stage / "model"
        assert {"config.json", "model.safetensors", "chat_template.jinja", "posttrain.json"} <= {
            p.name for p in model.iterdir()
        }
        left = {p.name for p in (run / stage).iterdir()}
        assert not left & {"checkpoints", "dataset-cache", ".model-tmp"}, left
    dpo = read_metrics(run / "dpo")
    assert dpo[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference (the SFT model) at step 1
    top = json.loads((run / "posttrain.json").read_text())
    assert top["model"] == str(run / "dpo" / "model") and top["dpo"]["steps"] == 2

    from train.posttrain.config import PosttrainConfig
    from train.posttrain.run import posttrain

    again = posttrain(PosttrainConfig.from_yaml(cfg), progress=False)  # one process: the finished stages are skipped
    assert again["sft"]["skipped"] and again["dpo"]["skipped"]
