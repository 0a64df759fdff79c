"""curate train pretrain on CPU: the tiny config trains, logs, checkpoints, and resumes after SIGKILL on the same
curve."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO
from test_train_tokenize import curate, make_mix

ROOT = REPO
TINY = ROOT / "train" / "configs" / "tiny_cpu.yaml"
STEPS = 8


@pytest.fixture(scope="module")
def blend(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre")
    make_mix(root / "mix", n_shards=2, per_source=10)
    from train.tokenize import tokenize_mix

    return str(tokenize_mix(root / "mix", "smollm2", root / "tokens", workers=1).output / "blend.json")


def args(blend, save_dir, *extra, steps=STEPS):
    return [
        "train",
        "pretrain",
        TINY,
        "--no-progress",
        "--save-dir",
        save_dir,
        "--steps",
        steps,
        "--set",
        f"data.blend={blend}",
        "--set",
        "train.save_interval=2",
        "--set",
        "train.threads=1",
        *extra,
    ]


def losses(save_dir) -> list[float]:
    from train.metrics import read_metrics

    return [r["loss"] for r in read_metrics(save_dir)]


@pytest.fixture(scope="module")
def uninterrupted(blend, tmp_path_factory):
    run = tmp_path_factory.mktemp("full") / "run"
    proc = curate(*args(blend, run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


def test_tiny_model_trains_logs_and_checkpoints(uninterrupted):
    from train.config import PretrainConfig
    from train.metrics import read_metrics
    from train.schedule import lr_at

    recs = read_metrics(uninterrupted)
    assert [r["iteration"] for r in recs] == list(range(1, STEPS + 1))
    assert recs[-1]["loss"] < recs[0]["loss"] - 0.5  # it learns (loss starts near ln(49152) = 10.8)
    cfg = PretrainConfig.from_yaml(TINY)
    assert [r["lr"] for r in recs] == pytest.approx([lr_at(i, cfg.optim, STEPS) for i in range(STEPS)])
    assert recs[0]["lr"] < recs[3]["lr"] and recs[-1]["lr"] < recs[4]["lr"]  # warmup, then cosine decay
    assert all(r["tokens_per_s"] > 0 and r["grad_norm"] > 0 for r in recs)
    latest = json.loads((uninterrupted / "checkpoints" / "latest.json").read_text())
    assert latest["iteration"] == STEPS
    assert sorted(p.name for p in (uninterrupted / "checkpoints").glob("iter_*")) == ["iter_0000006", "iter_0000008"]


def test_resume_after_sigkill_continues_the_same_loss_curve(blend, uninterrupted, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "curate", *map(str, args(blend, run))]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    latest = run / "checkpoints" / "latest.json"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if latest.exists() and json.loads(latest.read_text())["iteration"] >= 4:
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    it = json.loads(latest.read_text())["iteration"]
    assert 4 <= it < STEPS, f"killed at checkpoint {it}; the run must be interrupted mid-way"
    resumed = curate(*args(blend, run))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f'"start_iteration": {it}' in resumed.stdout
    assert losses(run) == pytest.approx(losses(uninterrupted), abs=1e-5)


def test_config_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text().replace("num_layers: 2", "num_layerz: 2"))
    proc = curate("train", "pretrain", bad, "--no-progress")
    assert (
        proc.returncode == 2
        and str(bad) in proc.stderr
        and "num_layerz" in proc.stderr
        and "Traceback" not in proc.stderr
    )
    proc = curate("train", "pretrain", TINY, "--no-progress", "--set", f"data.blend={tmp_path}/none.json")
    assert proc.returncode == 2 and "curate train tokenize" in proc.stderr


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="GPU engine (Megatron DDP, optimizer, schedules, bf16) needs CUDA"
)
def test_gpu_engine_bf16(blend, tmp_path):
    proc = curate(*args(blend, tmp_path / "gpu", "--set", "train.precision=bf16"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ls = losses(tmp_path / "gpu")
    assert len(ls) == STEPS and ls[-1] < ls[0]


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="GPU engine (Megatron DDP, optimizer, schedules, bf16) needs CUDA"
)
def test_gpu_engine_init_from_and_resume(blend, uninterrupted, tmp_path):
    """The two GPU-engine bugs an H200 found: weights from --init-from were replaced by the optimizer's copy of the
    random init at the first step, and a resume failed before the optimizer had state (torch AdamW fallback)."""
    run = tmp_path / "cpt"
    proc = curate(*args(blend, run, "--set", "train.precision=bf16", "--init-from", uninterrupted, steps=4))
    assert proc.returncode == 0, proc.stderr[-3000:]
    start = losses(uninterrupted)[-1]
    assert max(losses(run)) < start + 1.0  # continues from the trained model, not from ln(49152) = 10.8
    proc = curate(*args(blend, run, "--set", "train.precision=bf16"))  # 8 steps: resumes at 4
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"start_iteration": 4' in proc.stdout and len(losses(run)) == STEPS
