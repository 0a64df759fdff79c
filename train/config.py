"""Typed trainer configuration, loaded from YAML (see train/configs/ and docs/train.md for every field)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from curation.core.config import Strict
from curation.core.errors import CurationError

CONFIG_DIR = Path(__file__).parent / "configs"


def shipped_configs(directory: Path = CONFIG_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.yaml"))


def resolve_config(spec: str | Path, directory: Path = CONFIG_DIR) -> Path:
    """A config file path, or the name of a shipped config (`tiny_cpu`, `llama_350m_gpu`; `train/configs/tiny_cpu.yaml`
    works too) from any directory."""
    p = Path(spec)
    if p.is_file():
        return p
    named = directory / f"{p.stem}.yaml"
    if (
        len(p.parts) == 1 or p.parent.as_posix().endswith(directory.relative_to(directory.parents[1]).as_posix())
    ) and named.is_file():
        return named
    raise CurationError(
        f"{spec}: no such config file or shipped config; pass a YAML path or one of "
        f"{', '.join(shipped_configs(directory))}"
    )


class ModelConfig(Strict):
    """A LLaMA-style decoder: RMSNorm, SwiGLU, RoPE, optional GQA (num_query_groups < num_attention_heads)."""

    num_layers: int = 2
    hidden_size: int = 64
    ffn_hidden_size: int = 172
    num_attention_heads: int = 4
    num_query_groups: int | None = None  # None: multi-head attention
    vocab_size: int | None = None  # None: the tokenizer's, padded to a multiple of 128 * TP
    max_position_embeddings: int = 2048
    rotary_base: float = 10000.0
    norm_epsilon: float = 1e-5
    tie_embeddings: bool = True
    init_method_std: float = 0.02

    @model_validator(mode="after")
    def _check(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        if self.num_query_groups and self.num_attention_heads % self.num_query_groups:
            raise ValueError("num_attention_heads must be a multiple of num_query_groups")
        return self

    @property
    def kv_groups(self) -> int:
        return self.num_query_groups or self.num_attention_heads


class DataConfig(Strict):
    blend: str | None = None  # blend.json written by `curate train tokenize`
    prefixes: list[str] | None = None  # or explicit dataset prefixes (+ weights)
    weights: list[float] | None = None
    tokenizer: str = "smollm2"  # curation.lm.loading spec: alias, .gguf or HF directory
    seq_length: int = 128
    split: str = "100,0,0"
    cache_dir: str | None = None  # default: <save_dir>/data-cache
    seed: int = 1234

    @model_validator(mode="after")
    def _check(self):
        if (self.blend is None) == (self.prefixes is None):
            raise ValueError("give exactly one of data.blend (a blend.json) or data.prefixes")
        if self.weights is not None and self.prefixes is not None and len(self.weights) != len(self.prefixes):
            raise ValueError("data.weights must have one weight per prefix")
        return self


class OptimConfig(Strict):
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 10
    decay_steps: int | None = None  # default: train.steps
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    clip_grad: float = 1.0


class TrainConfig(Strict):
    steps: int = 100
    global_batch_size: int = 8
    micro_batch_size: int = 4
    seed: int = 1234
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    recompute: Literal["none", "selective", "full"] = "none"
    use_distributed_optimizer: bool = True  # GPU only: ZeRO-1 sharding of optimizer state over data parallel
    save_dir: str = "runs/tiny"
    save_interval: int = 50
    log_interval: int = 1
    peak_tflops: float | None = None  # per device, for MFU; default: known GPUs' bf16 dense peak
    init_from: str | None = None  # checkpoint whose weights start this run, fresh optimizer and schedule (CPT)
    # a base run this run continues (midtraining): its weights, optimizer state (moments, step) and iteration, so the
    # LR schedule (train.steps and optim.*, which must be the base run's) goes on where it stopped, while the data is
    # this run's own, read from its first sample; a save_dir, its checkpoints/ or one iter_* directory
    continue_from: str | None = None
    continue_iteration: int | None = Field(None, ge=1)  # which checkpoint of continue_from (default: its latest)
    threads: int | None = None  # CPU: torch threads (default: torch's choice)
    keep_checkpoints: int = 2  # newest checkpoints kept (0: all, e.g. to evaluate a trajectory)
    # iterations saved besides every save_interval and kept whatever keep_checkpoints says: where a midtraining run
    # branches off a base run that trains on to its full length
    save_iterations: list[int] = Field(default_factory=list)
    init_loss_check: bool = True  # with init_from: stop if the start is no better than chance, or the first
    # step's loss is over 1.5x the loaded model's own loss on that batch


class PretrainConfig(Strict):
    DOCS = "docs/train.md"
    model: ModelConfig | None = None  # None with train.init_from: the checkpoint's architecture
    data: DataConfig
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _check(self):
        if self.train.init_from and self.train.continue_from:
            raise ValueError(
                "train.init_from and train.continue_from exclude each other: init_from starts a fresh optimizer and "
                "schedule from a model's weights (CPT), continue_from goes on with a base run's optimizer and schedule "
                "(midtraining); give one"
            )
        if self.train.continue_iteration is not None and not self.train.continue_from:
            raise ValueError(
                "train.continue_iteration needs train.continue_from (the base run it picks a checkpoint of)"
            )
        if self.model is None and not (self.train.init_from or self.train.continue_from):
            raise ValueError(
                "a model section is needed unless train.init_from or train.continue_from names a checkpoint"
            )
        if self.train.global_batch_size % self.train.micro_batch_size:
            raise ValueError("train.global_batch_size must be a multiple of train.micro_batch_size")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict | None = None) -> PretrainConfig:
        """`path` may also name a shipped config (`tiny_cpu`), from any directory."""
        return super().from_yaml(resolve_config(path), overrides)
