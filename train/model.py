"""Build the Megatron-core GPTModel (LLaMA style) for a ModelConfig, on GPU or (via train.cpu_shim) on CPU."""

from __future__ import annotations

import importlib.util
import math

import torch
import torch.nn.functional as F

from train.config import ModelConfig


def pad_vocab(vocab: int, tp: int = 1, multiple: int = 128) -> int:
    m = multiple * tp
    return int(math.ceil(vocab / m) * m)


def have_transformer_engine() -> bool:
    return importlib.util.find_spec("transformer_engine") is not None


def layer_spec_name(on_gpu: bool) -> str:
    """'te' (Transformer Engine fused kernels) on GPU when installed, else Megatron-core's own 'local' modules."""
    return "te" if on_gpu and have_transformer_engine() else "local"


def transformer_config(
    m: ModelConfig,
    *,
    seq_length: int,
    tp: int = 1,
    pp: int = 1,
    bf16: bool = False,
    recompute: str = "none",
    on_gpu: bool = False,
):
    from megatron.core.transformer.transformer_config import TransformerConfig

    kw = {}
    if recompute == "full":
        kw.update(recompute_granularity="full", recompute_method="uniform", recompute_num_layers=1)
    elif recompute == "selective":
        kw.update(recompute_granularity="selective")
    return TransformerConfig(
        num_layers=m.num_layers,
        hidden_size=m.hidden_size,
        ffn_hidden_size=m.ffn_hidden_size,
        num_attention_heads=m.num_attention_heads,
        num_query_groups=m.kv_groups,
        kv_channels=m.hidden_size // m.num_attention_heads,
        normalization="RMSNorm",
        layernorm_epsilon=m.norm_epsilon,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        init_method_std=m.init_method_std,
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        sequence_parallel=tp > 1 and on_gpu,
        bf16=bf16,
        params_dtype=torch.bfloat16 if bf16 else torch.float32,
        pipeline_dtype=torch.bfloat16 if bf16 else torch.float32,
        use_cpu_initialization=not on_gpu,
        perform_initialization=True,
        bias_activation_fusion=False,
        masked_softmax_fusion=False,
        persist_layer_norm=False,
        bias_dropout_fusion=False,
        apply_rope_fusion=False,
        gradient_accumulation_fusion=False,
        attention_softmax_in_fp32=True,
        **kw,
    )


def build_model(
    m: ModelConfig,
    *,
    seq_length: int,
    vocab_size: int,
    tp: int = 1,
    pp: int = 1,
    bf16: bool = False,
    recompute: str = "none",
    on_gpu: bool | None = None,
    pre_process: bool | None = None,
    post_process: bool | None = None,
):
    """One pipeline stage of the model (the whole model at PP=1). Model parallel state must be initialised."""
    from megatron.core import parallel_state
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import (
        get_gpt_layer_local_spec,
        get_gpt_layer_with_transformer_engine_spec,
    )

    on_gpu = torch.cuda.is_available() if on_gpu is None else on_gpu
    if not on_gpu:
        from train import cpu_shim

        cpu_shim.install()
    cfg = transformer_config(m, seq_length=seq_length, tp=tp, pp=pp, bf16=bf16, recompute=recompute, on_gpu=on_gpu)
    if layer_spec_name(on_gpu) == "te":
        spec = get_gpt_layer_with_transformer_engine_spec()
    else:
        from train.attention import SdpaAttention

        spec = get_gpt_layer_local_spec(normalization="RMSNorm")
        spec.submodules.self_attention.submodules.core_attention = SdpaAttention
    if pre_process is None:
        pre_process = parallel_state.is_pipeline_first_stage()
    if post_process is None:
        post_process = parallel_state.is_pipeline_last_stage()
    model = GPTModel(
        config=cfg,
        transformer_layer_spec=spec,
        vocab_size=vocab_size,
        max_sequence_length=m.max_position_embeddings,
        pre_process=pre_process,
        post_process=post_process,
        share_embeddings_and_output_weights=m.tie_embeddings,
        parallel_output=True,
        position_embedding_type="rope",
        rotary_base=int(m.rotary_base) if float(m.rotary_base).is_integer() else m.rotary_base,
    )
    if on_gpu:
        model.cuda(torch.cuda.current_device())
    return model


def count_parameters(m: ModelConfig, vocab_size: int) -> dict:
    """Parameter counts from the config (whole model, all ranks)."""
    h, f, L = m.hidden_size, m.ffn_hidden_size, m.num_layers
    d = h // m.num_attention_heads
    attn = h * (m.num_attention_heads * d + 2 * m.kv_groups * d) + m.num_attention_heads * d * h
    mlp = 3 * h * f
    per_layer = attn + mlp + 2 * h
    emb = vocab_size * h
    total = L * per_layer + h + emb + (0 if m.tie_embeddings else emb)
    return {"total": total, "non_embedding": L * per_layer + h, "embedding": emb}


def flops_per_token(m: ModelConfig, vocab_size: int, seq_length: int) -> float:
    """Training FLOPs per token (forward + backward = 3x forward): matmuls incl. output layer, plus attention scores."""
    h, L = m.hidden_size, m.num_layers
    d = h // m.num_attention_heads
    matmul_params = count_parameters(m, vocab_size)["non_embedding"] + vocab_size * h
    attn = 2 * 2 * L * seq_length * m.num_attention_heads * d  # QK^T and AV, forward, per token (causal not discounted)
    return 3 * (2 * matmul_params + attn)
