"""Checkpoints with megatron.core.dist_checkpointing (resharding-capable: a TP=2 checkpoint loads at TP=1).

Layout: ``<save_dir>/checkpoints/iter_0000100/`` (a dist checkpoint: model, optimizer, and the common state:
iteration, model config, tokenizer, RNG) and ``<save_dir>/checkpoints/latest.json``, which is replaced only after a
checkpoint is completely written, so a run killed mid-save resumes from the previous one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from curation.core.errors import CurationError

KEEP = 2


def ckpt_dir(save_dir: str | Path) -> Path:
    return Path(save_dir) / "checkpoints"


def latest(save_dir: str | Path) -> Path | None:
    p = ckpt_dir(save_dir) / "latest.json"
    if not p.exists():
        return None
    it_dir = ckpt_dir(save_dir) / json.loads(p.read_text())["dir"]
    return it_dir if it_dir.is_dir() else None


def resolve(path: str | Path) -> Path:
    """A run directory, its checkpoints/ directory or one iter_* directory -> the iter_* directory."""
    p = Path(path)
    if (p / "metadata.json").exists() and (p / "common.pt").exists():
        return p
    for base in (p, p.parent) if p.name == "checkpoints" else (p,):
        found = latest(base)
        if found:
            return found
    if (p / "latest.json").exists():
        found = latest(p.parent)
        if found:
            return found
    raise CurationError(
        f"{path}: no checkpoint (expected a run directory with checkpoints/latest.json or an iter_* "
        "directory); pass the save_dir of a `curate train pretrain` run or a `curate train convert` output"
    )


def read_common(iter_dir: str | Path) -> dict:
    from megatron.core import dist_checkpointing

    return dist_checkpointing.load_common_state_dict(str(iter_dir))


def save(
    save_dir: str | Path, iteration: int, sharded_state: dict, is_rank0: bool, keep: int = KEEP, pinned=()
) -> Path:
    """Writes iter_<n> via a temporary directory and then points latest.json at it; keeps the newest `keep` (0: all)
    and the `pinned` iterations (a branch point other runs continue from)."""
    from megatron.core import dist_checkpointing

    root = ckpt_dir(save_dir)
    name = f"iter_{iteration:07d}"
    tmp = root / (name + ".partial")
    if is_rank0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    dist_checkpointing.save(sharded_state, str(tmp))
    _barrier()
    final = root / name
    if is_rank0:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        lp = root / "latest.json"
        lp.with_suffix(".tmp").write_text(json.dumps({"dir": name, "iteration": iteration}))
        os.replace(lp.with_suffix(".tmp"), lp)
        pins = {f"iter_{i:07d}" for i in pinned}
        olds = sorted(
            d for d in root.glob("iter_*") if d.is_dir() and not d.name.endswith(".partial") and d.name not in pins
        )
        for d in olds[:-keep] if keep > 0 else []:
            shutil.rmtree(d, ignore_errors=True)
    _barrier()
    return final


def load(iter_dir: str | Path, sharded_template: dict) -> dict:
    from megatron.core import dist_checkpointing

    try:
        return dist_checkpointing.load(sharded_template, str(iter_dir))
    except Exception as e:  # noqa: BLE001 - mismatched architecture shows up as a key/shape error deep inside
        raise CurationError(
            f"{iter_dir}: cannot load this checkpoint into the configured model ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}); make the model section match the checkpoint"
        ) from None


def _barrier():
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def load_model_state(
    model, state: dict, src: str | Path, hint: str = "it was saved from another architecture or layer spec"
) -> None:
    """load_state_dict that names what did not fit: strict=False is needed for Transformer Engine's _extra_state
    entries, but must not let a checkpoint of another layout leave the model at its random init unnoticed."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if "_extra_state" not in k]
    unexpected = [k for k in unexpected if "_extra_state" not in k]
    if missing or unexpected:
        raise CurationError(
            f"{src}: the weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]}); {hint}"
        )
