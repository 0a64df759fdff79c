"""Typed post-training config (one YAML for `curate train sft`, `dpo`, `posttrain`); errors name the file and field."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, model_validator

from curation.core.config import Strict

DOCS = "docs/posttrain.md"


class ChatTemplateConfig(Strict):
    """`persona` builds a template from the markers below (the default matches `curate synth reflect`'s
    `<assistant>...</assistant>` reflections; `markers_from` copies the markers a reflect run actually used);
    `tokenizer` keeps the checkpoint's own template; `jinja` reads `path`."""

    style: Literal["persona", "tokenizer", "jinja"] = "persona"
    system_marker: str = "<system>"
    system_marker_end: str = "</system>"
    user_marker: str = "<user>"
    user_marker_end: str = "</user>"
    assistant_marker: str = "<assistant>"
    assistant_marker_end: str = "</assistant>"
    separator: str = "\n\n"
    add_eos: bool = True  # end every assistant turn with the tokenizer's EOS (so the model learns to stop)
    path: str | None = None  # style: jinja
    system_prompt: str | None = None  # prepended as a system turn to examples without one
    # a `curate synth reflect` output directory (or its reflect_report.json): its `marker` pair becomes
    # assistant_marker / assistant_marker_end, so the persona is addressed exactly as its reflections were written
    markers_from: str | None = None

    @model_validator(mode="after")
    def _check(self):
        if self.markers_from:
            p = Path(self.markers_from).expanduser()
            report = p / "reflect_report.json" if p.is_dir() else p
            try:
                marker = json.loads(report.read_text()).get("marker")
            except (OSError, ValueError):
                raise ValueError(
                    f"markers_from: {report} is not a readable `curate synth reflect` report; point it at the reflect "
                    "output directory"
                ) from None
            if not (isinstance(marker, list) and len(marker) == 2 and marker[0]):
                raise ValueError(f"markers_from: {report} has no `marker` pair; rerun `curate synth reflect`")
            self.assistant_marker, self.assistant_marker_end = marker
        if self.style == "jinja" and not self.path:
            raise ValueError("style `jinja` needs `path` (a .jinja file with {% generation %} markers)")
        if self.style == "persona" and not self.assistant_marker:
            raise ValueError("style `persona` needs a non-empty `assistant_marker` (e.g. <assistant>)")
        return self


class StageConfig(Strict):
    """Hyperparameters shared by SFT and DPO (TrainingArguments underneath)."""

    data: list[str] = Field(default_factory=list)  # JSONL / Parquet files, directories, globs, or `demo`
    steps: int = Field(-1, ge=-1)  # -1: run `epochs` epochs
    epochs: float = Field(1.0, gt=0)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(2e-5, gt=0)
    lr_scheduler: str = "cosine"
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    max_length: int = Field(512, ge=16)
    save_steps: int = Field(50, ge=1)
    save_total_limit: int | None = Field(2, ge=1)
    keep_checkpoints: bool = False  # resume checkpoints (optimizer included, ~3x the model) after the
    # stage finished; only the final model/ is needed downstream
    logging_steps: int = Field(1, ge=1)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on a GPU that has it, else fp32
    gradient_checkpointing: bool = False
    limit: int | None = Field(None, ge=1)  # use only the first N examples (smoke runs)
    # keep only examples whose first user turn is in this half of the seeded request split (curation/core/splits.py);
    # `posttrain` leaves the other half to `curate eval attacks` (its default --split eval, same share and seed)
    split: Literal["eval", "posttrain"] | None = None
    split_eval_share: float = Field(0.5, gt=0, lt=1)
    split_seed: int = 0


class SFTConfig(StageConfig):
    lr: float = Field(2e-5, gt=0)
    packing: bool = False
    packing_strategy: Literal["bfd", "bfd_split", "wrapped"] = "bfd"
    assistant_only_loss: bool = True


class DPOConfig(StageConfig):
    lr: float = Field(5e-7, gt=0)
    beta: float = Field(0.1, gt=0)
    loss_type: str = "sigmoid"
    max_length: int = Field(512, ge=16)


class EvalConfig(Strict):
    items: list[str] = Field(default_factory=list)  # when set, `curate train posttrain` scores base and post-trained
    mode: Literal["base", "chat", "generate", "cloze"] = "base"
    limit_per_file: int | None = Field(None, ge=1)
    batch_size: int = Field(16, ge=1)


class PosttrainConfig(Strict):
    DOCS = DOCS
    model: str = "smollm2"  # base checkpoint: HF Llama directory, .gguf, or `smollm2`
    output: str  # OUT/sft, OUT/dpo, OUT/posttrain.json (paths: relative to the working directory)
    condition: str = "default"  # training condition name, carried into eval tags
    seed: int = 0
    device: str | None = None  # default: cuda when available, else cpu
    chat_template: ChatTemplateConfig = ChatTemplateConfig()
    sft: SFTConfig = SFTConfig()
    dpo: DPOConfig = DPOConfig()
    eval: EvalConfig = EvalConfig()

    _origin: str = PrivateAttr("config")

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict | None = None) -> PosttrainConfig:
        """`path` may also name a shipped config (`demo_smollm2`), from any directory."""
        from train.config import resolve_config

        return super().from_yaml(resolve_config(path, Path(__file__).parent / "configs"), overrides)

    @classmethod
    def validated(cls, raw: dict, origin: str = "config") -> PosttrainConfig:
        cfg = super().validated(raw, origin)
        cfg._origin = origin
        return cfg

    @property
    def origin(self) -> str:
        return self._origin

    def stage_hash(self, stage: str) -> str:
        """What must not change between a killed run and its resumption (data, hyperparameters, template, seed);
        the starting model is checked separately (for DPO in `posttrain` it is the SFT output, not `model`)."""
        d = {
            "seed": self.seed,
            "chat_template": self.chat_template.model_dump(),
            stage: getattr(self, stage).model_dump(exclude={"keep_checkpoints"}),
        }  # bookkeeping, not training
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
