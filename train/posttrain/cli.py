"""`curate train sft|dpo|posttrain CONFIG.yaml` (registered on train.cli.train_app by `register`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.console import Console

from curation.core.cli import fail as _fail
from curation.core.config import parse_set
from curation.core.errors import CurationError

console = Console(stderr=True)


def _config(config: Path, sets: list[str]):
    from .config import PosttrainConfig

    ov = parse_set(sets, "sft.steps=10")
    return PosttrainConfig.from_yaml(config, ov)


def _quiet():
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore", message=".*Transformer Engine and Apex are not installed.*")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


CONFIG_ARG = typer.Argument(
    ..., help="YAML config (docs/posttrain.md; example: train/posttrain/configs/demo_smollm2.yaml)"
)
SET_OPT = typer.Option([], "--set", help="KEY=VALUE overrides with dotted keys (sft.steps=10), repeatable")
PROGRESS_OPT = typer.Option(True, "--progress/--no-progress")


def _stage(stage: str, config: Path, sets: list[str], progress: bool):
    _quiet()
    from .run import eval_commands, rank, run_stage

    try:
        cfg = _config(config, sets)
        res = run_stage(cfg, stage, progress=progress)
    except CurationError as e:
        _fail(e)
    if rank() != 0:  # under torchrun: rank 0 reports
        return
    console.print(
        json.dumps(
            {k: res.get(k) for k in ("model", "steps", "resumed_from", "final_loss", "samples_per_s", "skipped")}
        ),
        highlight=False,
    )
    console.print(
        "evaluate with:\n  "
        + "\n  ".join(
            eval_commands(cfg.model, res["model"], cfg.eval.items, Path(cfg.output), cfg.condition, cfg.eval, cfg.seed)
        ),
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer, run_posttrain=None) -> None:
    """Adds sft, dpo and posttrain to `app`. `run_posttrain(cfg, progress)` runs the posttrain command: the root CLI
    passes `curate.workflows.posttrain_and_evaluate` (which also evaluates); the default only trains."""

    @app.command()
    def sft(config: Path = CONFIG_ARG, sets: list[str] = SET_OPT, progress: bool = PROGRESS_OPT):
        """Supervised fine-tuning (TRL SFTTrainer) of an HF checkpoint: chat template, assistant-only loss, packing,
        resume."""
        _stage("sft", config, sets, progress)

    @app.command()
    def dpo(config: Path = CONFIG_ARG, sets: list[str] = SET_OPT, progress: bool = PROGRESS_OPT):
        """Direct preference optimisation (TRL DPOTrainer) of an HF checkpoint against itself as the frozen
        reference."""
        _stage("dpo", config, sets, progress)

    @app.command()
    def posttrain(config: Path = CONFIG_ARG, sets: list[str] = SET_OPT, progress: bool = PROGRESS_OPT):
        """SFT then DPO with one config; tags the result (posttrain.json) and evaluates base vs post-trained if
        eval.items is set."""
        _quiet()
        from .run import posttrain, rank

        run = run_posttrain or posttrain
        try:
            cfg = _config(config, sets)
            res = run(cfg, progress=progress)
        except CurationError as e:
            _fail(e)
        if rank() != 0:  # under torchrun: rank 0 reports
            return
        console.print(json.dumps({k: res[k] for k in ("model", "condition", "sft", "dpo")}), highlight=False)
        if "eval" in res:
            console.print(
                f"mean P(misaligned) base {res['eval']['mean_p_misaligned']['base']:.3f} -> post-trained "
                f"{res['eval']['mean_p_misaligned']['posttrained']:.3f}; report -> {res['eval']['report']}",
                highlight=False,
            )
        console.print("evaluate with:\n  " + "\n  ".join(res["eval_commands"]), highlight=False, soft_wrap=True)
