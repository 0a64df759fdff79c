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


def _adam_state(iter_dir) -> tuple[dict, list[dict]]:
    """(per-parameter state, param groups) of a CPU run's torch AdamW, as its checkpoint holds it."""
    from train.checkpoint import read_common

    sd = read_common(iter_dir)["optimizer"]["torch_adamw"]
    return sd["state"], sd["param_groups"]


def _one_update_error(after: dict, before: dict, b1: float, b2: float) -> float:
    """How far `after` is from one Adam update of `before`'s moments: the gradient implied through exp_avg, squared,
    against the squared gradient implied through exp_avg_sq (norm of the difference over the norm)."""
    g = (after["exp_avg"] - b1 * before["exp_avg"]) / (1 - b1)
    g2 = (after["exp_avg_sq"] - b2 * before["exp_avg_sq"]) / (1 - b2)
    return float((g**2 - g2).norm() / g2.norm().clamp(min=1e-30))


@pytest.fixture(scope="module")
def continued(blend, tmp_path_factory):
    """A base run stopped at iteration 6 of an 8-step schedule, its continuation on another blend for the last 2
    steps, and a fresh-optimizer start (CPT) from the same checkpoint on that blend for 1 step."""
    root = tmp_path_factory.mktemp("cont")
    make_mix(root / "mix2", n_shards=1, per_source=6)
    from train.tokenize import tokenize_mix

    blend2 = str(tokenize_mix(root / "mix2", "smollm2", root / "tokens2", workers=1).output / "blend.json")
    base, cont, cpt = root / "base", root / "cont", root / "cpt"
    proc = curate(*args(blend, base, "--set", "optim.decay_steps=8", steps=6))
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = curate(*args(blend2, cont, "--continue-from", base, "--set", "train.save_interval=1", steps=8))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"start_iteration": 6' in proc.stdout
    proc = curate(*args(blend2, cpt, "--init-from", base, steps=1))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return base, cont, cpt, blend2


def test_continued_run_goes_on_with_the_base_runs_optimizer_and_schedule(continued):
    """Midtraining as continuation: the first step of the continued run has the base run's next learning rate, and its
    Adam moments and step count are the base run's last, updated once (on the new blend's first batch)."""
    from train.config import OptimConfig
    from train.metrics import read_metrics
    from train.schedule import lr_at

    base, cont, cpt, _ = continued
    optim = OptimConfig(lr=3.0e-3, min_lr=3.0e-4, warmup_steps=4)  # tiny_cpu's
    schedule = [lr_at(i, optim, 8) for i in range(8)]
    b, c = read_metrics(base), read_metrics(cont)
    assert [r["iteration"] for r in c] == [7, 8]
    assert [r["lr"] for r in b] + [r["lr"] for r in c] == pytest.approx(schedule)  # one 8-step schedule, unbroken
    assert c[0]["lr"] < b[-1]["lr"]  # decaying on from where the base run stopped, no new warm-up
    # the new data from its first sample: the continued run's first loss (its forward pass precedes the update) is the
    # base model's own loss on the new blend's first batch, which the CPT run measured before its engine existed
    first = read_metrics(cpt)[0]
    assert c[0]["loss"] == pytest.approx(first["init_loss"], abs=1e-5)
    m6, _ = _adam_state(base / "checkpoints" / "iter_0000006")
    m7, groups = _adam_state(cont / "checkpoints" / "iter_0000007")
    assert [g["lr"] for g in groups] == pytest.approx([schedule[6]] * len(groups))
    assert set(m7) == set(m6) and len(m6) > 10
    b1, b2 = optim.beta1, optim.beta2
    fresh, _ = _adam_state(cpt / "checkpoints" / "iter_0000001")
    for k in m6:
        assert float(m6[k]["step"]) == 6 and float(m7[k]["step"]) == 7 and float(fresh[k]["step"]) == 1
        # one Adam update from the base run's moments: the gradient it implies through exp_avg and through exp_avg_sq
        # agree only if both started from the base run's last values (a fresh start gives m = (1-b1) g, v = (1-b2) g^2)
        # (relative error of the whole tensor: measured 3e-6 here, fp32 rounding; over 2 for the CPT run's moments)
        assert _one_update_error(m7[k], m6[k], b1, b2) < 1e-4, k
        assert _one_update_error(fresh[k], m6[k], b1, b2) > 0.5, k  # its optimizer did not start from the base's
    assert read_metrics(cpt)[0]["lr"] == pytest.approx(lr_at(0, optim, 1))  # CPT: a new warm-up


def test_continue_from_refuses_what_is_no_continuation(continued, tmp_path):
    """One clear line for each thing that is no continuation; the checks that need no training process run here."""
    from curation.core.errors import CurationError
    from train.checkpoint import read_common
    from train.config import PretrainConfig
    from train.pretrain import check_continuation, continue_source

    base, _, _, blend2 = continued

    def cfg(**sets):
        return PretrainConfig.from_yaml(TINY, {"data.blend": blend2, "train.continue_from": str(base), **sets})

    with pytest.raises(CurationError, match="exclude each other"):
        cfg(**{"train.init_from": str(base)})
    with pytest.raises(CurationError, match="no checkpoint"):
        continue_source(cfg(**{"train.continue_from": str(tmp_path / "nothing")}), "t.yaml")
    with pytest.raises(CurationError, match=r"saved: \[4, 6\]"):
        continue_source(cfg(**{"train.continue_iteration": 3}), "t.yaml")
    it6 = continue_source(cfg(), "t.yaml")
    assert it6.name == "iter_0000006"
    with pytest.raises(CurationError, match="LR schedule differs"):  # 10 steps: not the base run's 8-step schedule
        check_continuation(cfg(**{"train.steps": 10}), read_common(it6), it6, "t.yaml")
    check_continuation(cfg(**{"train.steps": 8}), read_common(it6), it6, "t.yaml")
    # through the command: exit 2, one line, nothing written
    for extra, msg in [
        (["--set", "model.num_layers=3"], "keeps the base run's model"),
        (["--set", "optim.decay_steps=8", "--steps", "6"], "nothing is left to train"),
    ]:
        proc = curate(*args(blend2, tmp_path / "run", "--continue-from", base, *extra))
        assert proc.returncode == 2 and msg in proc.stderr and "Traceback" not in proc.stderr, (extra, proc.stderr)
        assert not (tmp_path / "run" / "checkpoints").exists()
