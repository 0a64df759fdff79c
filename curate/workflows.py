"""Work that spans stages: post-training a model, then evaluating it against its base.

This is the top layer (with the root CLI and the experiment runner): stages never import each other, so a
composition of two of them lives here, and nothing below imports it.
"""

from __future__ import annotations

import json
from pathlib import Path

from train.posttrain.config import PosttrainConfig
from train.posttrain.run import claim_output, posttrain, rank


def evaluate_posttrained(cfg: PosttrainConfig, model: str, progress: bool = False) -> dict:
    """`curate eval propensity` on the base and post-trained models (tagged base/posttrained) and `curate eval
    report`."""
    from evals.propensity import PropensityConfig, run_propensity
    from evals.report import make_report

    out = Path(cfg.output) / "eval"
    runs = {}
    for tag, spec in (("base", cfg.model), ("posttrained", model)):
        pc = PropensityConfig(
            model=str(spec),
            items=list(cfg.eval.items),
            mode=cfg.eval.mode,
            batch_size=cfg.eval.batch_size,
            seed=cfg.seed,
            limit_per_file=cfg.eval.limit_per_file,
            tag=tag,
            condition=cfg.condition,
            device=cfg.device,
        )
        s = run_propensity(pc, out / tag, progress=progress, overwrite=True)  # a rerun re-evaluates
        runs[tag] = s["overall"]["mean_p_misaligned"]
    report = make_report([out / "base", out / "posttrained"], out / "report", seed=cfg.seed, overwrite=True)
    return {"mean_p_misaligned": runs, "report": str(report)}


def posttrain_and_evaluate(cfg: PosttrainConfig, progress: bool = True) -> dict:
    """SFT then DPO (`train.posttrain.run.posttrain`), then, when `eval.items` is set, base vs post-trained
    propensity (rank 0 alone under torchrun: the other ranks' share of the work ends with training)."""
    res = posttrain(cfg, progress=progress)
    if cfg.eval.items and rank() == 0:
        claim_output(cfg).own("eval", tree=True)
        res["eval"] = evaluate_posttrained(cfg, res["model"], progress=progress)
        (Path(cfg.output) / "posttrain.json").write_text(json.dumps(res, indent=1))
    return res
