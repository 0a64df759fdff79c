"""train.init_loss_check (issue 28): a midtraining run from train.init_from measures the loaded model's own loss on the
first two batches before the engine and its optimizer exist. It stops when that start is no better than chance (an
untrained or wrong checkpoint, a tokenizer mismatch), or when step 1's or step 2's loss is over 1.5x the start's on the
same batch: the weights being trained are not the loaded ones (replaced when the optimizer was built, or, the bug an
H200 once showed, by the optimizer's copy of the random init at its first step). Both numbers go into the metrics
lines of steps 1 and 2. Tiny CPU runs, in-process but one; about 40 s in all."""

from __future__ import annotations

import pytest
import torch
from conftest import curate
from test_train_pretrain import TINY, blend  # noqa: F401  (a module-scoped fixture: the tokenized tiny mix)

from curation.core.errors import CurationError


def config(blend, save_dir, steps, **overrides):
    from train.config import PretrainConfig

    ov = {
        "data.blend": blend,
        "train.save_dir": str(save_dir),
        "train.steps": steps,
        "train.save_interval": 100,
        "train.threads": 1,
        **overrides,
    }
    return PretrainConfig.from_yaml(TINY, ov)


def run(cfg):
    from train.pretrain import pretrain

    return pretrain(cfg, progress=False)


@pytest.fixture(scope="module")
def trained(blend, tmp_path_factory):  # noqa: F811
    """12 fast steps at a high rate: loss ~6.5 on the first batch, far enough below ln(49152) = 10.8 that a random
    init is over 1.5x it."""
    save = tmp_path_factory.mktemp("start") / "run"
    run(
        config(
            blend,
            save,
            12,
            **{"optim.lr": 2e-2, "optim.min_lr": 2e-3, "optim.warmup_steps": 2, "train.global_batch_size": 4},
        )
    )
    return save


@pytest.fixture(scope="module")
def untrained(blend, tmp_path_factory):  # noqa: F811
    """A checkpoint that is still the random init (one step at learning rate 0)."""
    save = tmp_path_factory.mktemp("untrained") / "run"
    run(config(blend, save, 1, **{"optim.lr": 0.0, "optim.min_lr": 0.0, "train.init_loss_check": False}))
    return save


def random_init_(params) -> None:
    with torch.no_grad():
        for p in params:
            p.normal_(0.0, 0.02) if p.ndim > 1 else p.fill_(1.0)


def replace_weights(monkeypatch, when: str):
    """Fault injection on the CPU engine: the loaded weights are replaced by a random init when the engine is built
    ("build"), or after its first optimizer step ("first_step": what Megatron's optimizer did on an H200 with weights
    loaded after it was built, copying its fp32 main parameters, still the random init, back into the model)."""
    from train import engine

    build, step = engine.CpuEngine.__init__, engine.CpuEngine.step

    def building(self, model, *a, **k):
        if when == "build":
            random_init_(model.parameters())
        build(self, model, *a, **k)
        self.steps_done = 0

    def stepping(self, micro_batches):
        out = step(self, micro_batches)
        self.steps_done += 1
        if when == "first_step" and self.steps_done == 1:
            random_init_(self.model.parameters())
        return out

    monkeypatch.setattr(engine.CpuEngine, "__init__", building)
    monkeypatch.setattr(engine.CpuEngine, "step", stepping)


def test_loaded_start_passes_and_both_losses_are_logged(blend, trained, tmp_path):  # noqa: F811
    from train.metrics import read_metrics

    out = run(config(blend, tmp_path / "cpt", 3, **{"train.init_from": str(trained)}))
    rec = read_metrics(tmp_path / "cpt")
    assert rec[0]["init_loss"] == pytest.approx(rec[0]["loss"], rel=1e-4)  # step 1: the same weights, the same batch
    assert rec[0]["init_loss_ratio"] == pytest.approx(1.0, abs=1e-4) and out["init_loss"] == rec[0]["init_loss"]
    assert rec[1]["init_loss_ratio"] < 1.1 and "init_loss" not in rec[2]  # step 2: after one small update
    assert rec[0]["init_loss"] < 7.2  # the trained start (a random init is ~10.8, over 1.5x this)


@pytest.mark.parametrize("when,step", [("build", 1), ("first_step", 2)])
def test_weights_replaced_after_loading_stop_the_run(blend, trained, tmp_path, monkeypatch, when, step):  # noqa: F811
    from train.metrics import read_metrics

    replace_weights(monkeypatch, when)
    with pytest.raises(CurationError) as e:
        run(config(blend, tmp_path / "cpt", 4, **{"train.init_from": str(trained)}))
    msg = str(e.value)
    assert "\n" not in msg and f"the loss of step {step}" in msg and "not the checkpoint's" in msg
    assert "init_loss_check: false" in msg  # names the switch
    rec = read_metrics(tmp_path / "cpt")  # both numbers are on record
    assert len(rec) == step and rec[-1]["init_loss_ratio"] > 1.5 and rec[-1]["loss"] > 10
    assert not (tmp_path / "cpt" / "checkpoints").exists()  # nothing was saved
    if when == "build":  # the switch: the same run goes through (and trains from the random init it was given)
        out = run(
            config(blend, tmp_path / "off", 1, **{"train.init_from": str(trained), "train.init_loss_check": False})
        )
        assert out["init_loss"] is None and "init_loss" not in read_metrics(tmp_path / "off")[0]


def test_untrained_checkpoint_stops_before_training(blend, untrained, tmp_path):  # noqa: F811
    proc = curate(
        "train",
        "pretrain",
        TINY,
        "--no-progress",
        "--save-dir",
        tmp_path / "cpt",
        "--steps",
        2,
        "--set",
        f"data.blend={blend}",
        "--set",
        "train.threads=1",
        "--init-from",
        untrained,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    line = [ln for ln in proc.stderr.splitlines() if "init_from" in ln]
    assert len(line) == 1 and "no better than chance" in line[0] and "tokenizer" in line[0]
    assert not (tmp_path / "cpt" / "metrics.jsonl").exists()  # stopped before the first step
