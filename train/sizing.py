"""Will a config fit? Parameter count and per-GPU memory of a PretrainConfig, before any GPU time is spent on it.

A paper-scale run that does not fit fails minutes into a Slurm job with a CUDA out-of-memory error; this estimate
refuses it at start-up (`curate train pretrain` on GPUs), in `curate train plan CONFIG`, and in
`curate experiment plan`, with one line naming the file, the estimate and the fix.

Memory per GPU = weights + gradients + optimizer state + activations + a fixed overhead, for the largest pipeline
stage. Bytes per parameter follow this trainer's GPU engine (Megatron DDP with `grad_reduce_in_fp32`, Megatron's
mixed-precision AdamW): bf16 weights 2, fp32 gradients 4, fp32 master weights and Adam moments 12 (divided by the
data-parallel size with the distributed optimizer); in fp32: 4, 4 and 8. Activations are Korthikanti et al. (2022)'s
count with sequence parallelism (everything divided by TP), taken term by term for this architecture instead of their
GeLU-MLP constant 34: per layer and micro-batch, bf16, in units of s*b*h bytes,
  norm inputs 4 + QKV input 2 + Q 2 + K, V 4g/a + attention output 2 + fc1 input 2 + gate/up 4f/h + fc2 input 2f/h
  = 12 + 4g/a + 6f/h (no dropout masks: dropout is 0), plus their 5as/h for the softmax scores when attention is
not memory-efficient (the trainer's GPU attention, Transformer Engine's or SDPA's flash kernels, stores none: that is
what Megatron's selective recompute would drop). Full recompute keeps each layer's input (2) and one layer's working
set. The first pipeline stage holds min(PP, micro-batches per step) micro-batches in flight (1F1B); the last stage
also holds the logits (bf16 and the fp32 copy of the cross-entropy: 6 s*b*V/TP bytes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from curation.core.errors import CurationError
from train.config import ModelConfig, PretrainConfig, TrainConfig

GIB = 2**30
# usable memory per device as nvidia-smi reports it (H100 SXM 80GB: 81,559 MiB; H200: 143,771 MiB; A100 80GB: 81,920)
GPU_MEMORY_GIB = {"H200": 140.4, "H100": 79.6, "A100": 80.0}
OVERHEAD_GIB = 5.0  # CUDA context, NCCL buffers, cuBLAS / Transformer Engine workspaces, allocator fragmentation
DEFAULT_VOCAB = 49152  # the SmolLM2 tokenizer's (a multiple of 128 x TP for TP up to 8), when a config names none
ASSUMED_MFU = 0.40  # for the tokens/s estimate only: a typical dense-LLaMA Megatron MFU on H100, not a measurement
SKIP_ENV = "CURATE_SKIP_MEMORY_CHECK"
FIX = "raise train.tensor_parallel, lower train.micro_batch_size, or turn on train.recompute: full"
GPUS = ("H100", "H200")  # the kinds `curate experiment plan` sizes for (8-GPU nodes of either)


def gpu_memory_gib(gpu: str) -> float:
    """Memory of a known GPU by name (`H100`, `NVIDIA H200`, ...)."""
    for key, val in GPU_MEMORY_GIB.items():
        if key.lower() in gpu.lower():
            return val
    raise CurationError(
        f"--gpu {gpu}: unknown GPU; name one of {', '.join(GPU_MEMORY_GIB)} or give its memory with --gpu-memory GIB"
    )


def parameter_counts(m: ModelConfig, vocab_size: int) -> dict[str, int]:
    """Whole-model parameters by part: embedding, attention (QKV with GQA, output projection), SwiGLU MLP (gate, up,
    down), RMSNorm weights (two per layer and the final one), output layer (0 when tied to the embedding)."""
    h, L = m.hidden_size, m.num_layers
    d = h // m.num_attention_heads
    parts = {
        "embedding": vocab_size * h,
        "attention": L * (h * (m.num_attention_heads + 2 * m.kv_groups) * d + m.num_attention_heads * d * h),
        "mlp": L * 3 * h * m.ffn_hidden_size,
        "norms": L * 2 * h + h,
        "output": 0 if m.tie_embeddings else vocab_size * h,
    }
    parts["total"] = sum(parts.values())
    parts["non_embedding"] = parts["attention"] + parts["mlp"] + parts["norms"]
    return parts


def layer_activation_bytes(
    m: ModelConfig, seq: int, micro_batch: int, tp: int, recompute: str, flash: bool = True, bytes_per: int = 2
) -> float:
    """Activation bytes one layer keeps for its backward, for one micro-batch on one tensor-parallel rank."""
    s, b, h, a = seq, micro_batch, m.hidden_size, m.num_attention_heads
    stored = 12 + 4 * m.kv_groups / a + 6 * m.ffn_hidden_size / h
    if not flash and recompute == "none":
        stored += 5 * a * s / h
    if recompute == "full":
        stored = 2
    return s * b * h * stored / tp * bytes_per / 2


@dataclass
class Sizing:
    origin: str
    params: dict[str, int]
    vocab_size: int
    gpus: int
    tp: int
    pp: int
    dp: int
    micro_batch: int
    seq: int
    recompute: str
    distributed_optimizer: bool
    gpu: str
    gpu_memory_gib: float
    stage_params: int  # parameters on one GPU of the largest stage
    gib: dict[str, float] = field(default_factory=dict)  # weights, gradients, optimizer, activations, overhead, total

    @property
    def fits(self) -> bool:
        return self.gib["total"] <= self.gpu_memory_gib

    def summary(self) -> str:
        g = self.gib
        return (
            f"{g['total']:.1f} GiB per GPU (weights {g['weights']:.1f}, gradients {g['gradients']:.1f}, optimizer "
            f"{g['optimizer']:.1f}, activations {g['activations']:.1f} at micro_batch_size {self.micro_batch} x "
            f"seq {self.seq}, overhead {g['overhead']:.1f}) with TP={self.tp} PP={self.pp} DP={self.dp}, "
            f"recompute {self.recompute}, distributed optimizer {'on' if self.distributed_optimizer else 'off'}"
        )

    def check(self) -> None:
        """Raise the one-line refusal when the estimate exceeds the GPU's memory."""
        if self.fits:
            return
        fix = FIX
        if not self.distributed_optimizer and self.dp > 1:
            fix += ", or set train.use_distributed_optimizer: true"
        raise CurationError(
            f"{self.origin}: does not fit: estimated {self.summary()} exceeds the {self.gpu_memory_gib:.1f} GiB of "
            f"one {self.gpu}; {fix} (the trainer's check; {SKIP_ENV}=1 skips it)"
        )


def estimate(
    m: ModelConfig,
    t: TrainConfig,
    *,
    seq_length: int,
    vocab_size: int,
    gpus: int,
    gpu: str = "H100",
    gpu_memory: float | None = None,
    flash_attention: bool = True,
    origin: str = "config",
) -> Sizing:
    """Per-GPU memory of training `m` with `t`'s parallelism on `gpus` devices in all (`auto` precision: bf16)."""
    tp, pp = t.tensor_parallel, t.pipeline_parallel
    if gpus % (tp * pp):
        raise CurationError(
            f"{origin}: {gpus} GPUs cannot hold tensor_parallel={tp} x pipeline_parallel={pp}; "
            f"use a multiple of {tp * pp} GPUs"
        )
    if m.num_layers % pp:
        raise CurationError(f"{origin}: model.num_layers {m.num_layers} is not a multiple of pipeline_parallel {pp}")
    dp = gpus // (tp * pp)
    bf16 = t.precision != "fp32"
    w_b, g_b, o_b = (2, 4, 12) if bf16 else (4, 4, 8)
    params = parameter_counts(m, vocab_size)
    h, L = m.hidden_size, m.num_layers
    layer_linear = (params["attention"] + params["mlp"]) // L
    stage_layers = L // pp
    layers_params = stage_layers * (layer_linear / tp + 2 * h)  # norms are replicated over TP
    emb = vocab_size * h / tp
    out = emb if (not m.tie_embeddings or pp > 1) else 0  # tied at PP > 1: the last stage keeps its own copy
    micro_per_step = max(1, t.global_batch_size // (t.micro_batch_size * dp))
    per_layer = layer_activation_bytes(
        m, seq_length, t.micro_batch_size, tp, t.recompute, flash_attention, bytes_per=2 if bf16 else 4
    )
    if t.recompute == "full":  # one layer recomputed at a time needs its full working set
        working = layer_activation_bytes(
            m, seq_length, t.micro_batch_size, tp, "none", flash_attention, bytes_per=2 if bf16 else 4
        )
    else:
        working = 0.0
    logits = 6 * seq_length * t.micro_batch_size * vocab_size / tp
    first = (emb + layers_params + (out + h if pp == 1 else 0), min(pp, micro_per_step) * stage_layers * per_layer)
    last = (layers_params + out + h, stage_layers * per_layer)
    stages = [(first[0], first[1] + working + (logits if pp == 1 else 0))]
    if pp > 1:
        stages.append((last[0], last[1] + working + logits))

    def total(stage):
        n, act = stage
        return n * (w_b + g_b + o_b / (dp if t.use_distributed_optimizer else 1)) + act

    n, act = max(stages, key=total)
    opt = n * o_b / (dp if t.use_distributed_optimizer else 1)
    gib = {
        "weights": n * w_b / GIB,
        "gradients": n * g_b / GIB,
        "optimizer": opt / GIB,
        "activations": act / GIB,
        "overhead": OVERHEAD_GIB,
    }
    gib["total"] = sum(gib.values())
    return Sizing(
        origin=origin,
        params=params,
        vocab_size=vocab_size,
        gpus=gpus,
        tp=tp,
        pp=pp,
        dp=dp,
        micro_batch=t.micro_batch_size,
        seq=seq_length,
        recompute=t.recompute,
        distributed_optimizer=t.use_distributed_optimizer,
        gpu=gpu,
        gpu_memory_gib=gpu_memory if gpu_memory is not None else gpu_memory_gib(gpu),
        stage_params=int(n),
        gib=gib,
    )


def config_vocab(cfg: PretrainConfig, vocab_size: int | None = None) -> int:
    """The model's vocabulary without loading a tokenizer: model.vocab_size, else `vocab_size`, else the SmolLM2
    tokenizer's padded to 128 x TP (the shipped tokenizer)."""
    from train.model import pad_vocab

    if cfg.model and cfg.model.vocab_size:
        return cfg.model.vocab_size
    if vocab_size:
        return pad_vocab(vocab_size, cfg.train.tensor_parallel)
    if cfg.data.tokenizer != "smollm2":
        raise CurationError(
            f"data.tokenizer {cfg.data.tokenizer}: its vocabulary size is unknown without loading it; "
            "give model.vocab_size in the config or --vocab-size"
        )
    return pad_vocab(DEFAULT_VOCAB, cfg.train.tensor_parallel)


def estimate_config(
    cfg: PretrainConfig,
    origin: str = "config",
    *,
    gpus: int = 8,
    nodes: int = 1,
    gpu: str = "H100",
    gpu_memory: float | None = None,
    vocab_size: int | None = None,
) -> Sizing:
    """`estimate` for a whole config on `nodes` x `gpus` devices (needs a model section)."""
    if cfg.model is None:
        raise CurationError(
            f"{origin}: no model section (the architecture comes from train.init_from); size the checkpoint's "
            "architecture by giving a model section"
        )
    return estimate(
        cfg.model,
        cfg.train,
        seq_length=cfg.data.seq_length,
        vocab_size=config_vocab(cfg, vocab_size),
        gpus=gpus * nodes,
        gpu=gpu,
        gpu_memory=gpu_memory,
        origin=origin,
    )


def tokens_per_s(cfg: PretrainConfig, s: Sizing, mfu: float = ASSUMED_MFU) -> float | None:
    """An estimate, not a measurement: gpus x bf16 peak x `mfu` / training FLOPs per token."""
    from train.metrics import PEAK_TFLOPS
    from train.model import flops_per_token

    peak = cfg.train.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k.lower() in s.gpu.lower()), None)
    if peak is None or cfg.model is None:
        return None
    return s.gpus * peak * 1e12 * mfu / flops_per_token(cfg.model, s.vocab_size, s.seq)


def gpu_hours(tokens: float, tps: float, gpus: int) -> float:
    return tokens / tps / 3600 * gpus


def check_startup(m: ModelConfig, t: TrainConfig, *, seq_length: int, vocab_size: int, world_size: int, origin: str):
    """The trainer's start-up check on GPUs: the estimate against this device's memory; `CURATE_SKIP_MEMORY_CHECK=1`
    skips it (an estimate can be wrong for a kernel or allocator it does not model)."""
    if os.environ.get(SKIP_ENV) == "1":
        return
    import torch

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    estimate(
        m,
        t,
        seq_length=seq_length,
        vocab_size=vocab_size,
        gpus=world_size,
        gpu=props.name,
        gpu_memory=props.total_memory / GIB,
        origin=origin,
    ).check()


def experiment_notes(train_params: list[dict], origin: str) -> tuple[list[str], list[str]]:
    """(problems, notes) for `curate experiment plan`, from its train nodes' params (`config`, `gpus`, `nodes`): once
    per distinct setting on GPUs (the kind unknown), a problem when it fits no known GPU, else a note with the estimate
    on the H100 and the H200. CPU runs (gpus 0) and configs without a model section (init_from) are not sized."""
    problems, notes, seen = [], [], set()
    for p in train_params:
        c = PretrainConfig.model_validate(p["config"])
        key = (c.model.model_dump_json() if c.model else None, c.train.model_dump_json(exclude={"seed", "save_dir"}))
        if not p.get("gpus") or c.model is None or key in seen:
            continue
        seen.add(key)
        label = f"{origin}: train on {p.get('nodes', 1)} x {p['gpus']} GPUs"
        try:
            h100, h200 = (estimate_config(c, label, gpus=p["gpus"], nodes=p.get("nodes", 1), gpu=g) for g in GPUS)
            h200.check()
        except CurationError as e:
            problems.append(str(e))
            continue
        fit = "fits an H100" if h100.fits else "does NOT fit an H100 (H200 only)"
        notes.append(
            f"{label}: {h100.params['total'] / 1e9:.2f}B parameters, {h100.gib['total']:.1f} GiB per GPU estimated "
            f"(H100 {h100.gpu_memory_gib:.0f} GiB, H200 {h200.gpu_memory_gib:.0f}): {fit}"
        )
    return problems, notes


def _fmt_params(n: float) -> str:
    return f"{n / 1e9:.3f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def table_rows(cfg: PretrainConfig, s: Sizing) -> list[tuple[str, str]]:
    """(quantity, value) rows for `curate train plan`."""
    p, g = s.params, s.gib
    rows = [(f"parameters: {k}", _fmt_params(p[k]) if p[k] else "0 (tied)") for k in p if k != "non_embedding"]
    rows += [
        ("vocabulary", f"{s.vocab_size:,}"),
        ("GPUs, TP x PP x DP", f"{s.gpus}: {s.tp} x {s.pp} x {s.dp}"),
        ("parameters per GPU (largest stage)", _fmt_params(s.stage_params)),
        ("micro-batch x sequence", f"{s.micro_batch} x {s.seq}; recompute {s.recompute}"),
    ]
    rows += [(f"GiB per GPU: {k}", f"{v:.1f}") for k, v in g.items()]
    rows.append((f"{s.gpu} memory", f"{s.gpu_memory_gib:.1f} GiB: {'fits' if s.fits else 'DOES NOT FIT'}"))
    tps = tokens_per_s(cfg, s)
    if tps:
        rows.append(("tokens/s (estimate at 40% MFU)", f"{tps:,.0f} ({tps / s.gpus:,.0f} per GPU)"))
        steps_tokens = cfg.train.steps * cfg.train.global_batch_size * s.seq
        rows.append(
            (
                f"train.steps {cfg.train.steps}: tokens, GPU-hours",
                f"{steps_tokens / 1e9:.2f}B, {gpu_hours(steps_tokens, tps, s.gpus):,.0f}",
            )
        )
    return rows
