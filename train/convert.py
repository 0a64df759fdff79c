"""Hugging Face Llama <-> this trainer's checkpoint (a dist checkpoint from train.checkpoint), both directions.

Weight mapping (Megatron-core local layer spec; Transformer Engine checkpoints name the two norms
``linear_qkv.layer_norm_weight`` / ``linear_fc1.layer_norm_weight`` and are handled too):

  model.embed_tokens.weight                  embedding.word_embeddings.weight (rows padded to the model's vocab)
  layers.i.input_layernorm.weight            decoder.layers.i.input_layernorm.weight
  layers.i.self_attn.{q,k,v}_proj.weight     decoder.layers.i.self_attention.linear_qkv.weight, grouped per KV head:
                                             [q of the group's heads, k, v] for each of the num_query_groups groups
  layers.i.self_attn.o_proj.weight           decoder.layers.i.self_attention.linear_proj.weight
  layers.i.post_attention_layernorm.weight   decoder.layers.i.pre_mlp_layernorm.weight
  layers.i.mlp.{gate,up}_proj.weight         decoder.layers.i.mlp.linear_fc1.weight ([gate; up], SwiGLU)
  layers.i.mlp.down_proj.weight              decoder.layers.i.mlp.linear_fc2.weight
  model.norm.weight                          decoder.final_layernorm.weight
  lm_head.weight (untied models only)        output_layer.weight

RoPE: both use the non-interleaved (rotate-half) convention, so no permutation is needed.
Conversion runs in one CPU process at TP=PP=1; dist_checkpointing reshards on load, so a checkpoint trained
with tensor or pipeline parallelism converts the same way.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from curation.core.errors import CurationError
from train.config import ModelConfig

TE_ALIASES = {
    "self_attention.linear_qkv.layer_norm_weight": "input_layernorm.weight",
    "mlp.linear_fc1.layer_norm_weight": "pre_mlp_layernorm.weight",
}


def model_config_from_hf(hf_cfg) -> ModelConfig:
    if getattr(hf_cfg, "model_type", None) not in ("llama",):
        raise CurationError(
            f"model_type {getattr(hf_cfg, 'model_type', None)!r}: only Llama-architecture checkpoints convert; "
            "pass a LlamaForCausalLM directory"
        )
    rs = getattr(hf_cfg, "rope_scaling", None)
    if rs and rs.get("rope_type", rs.get("type")) not in (None, "default"):
        raise CurationError(f"rope_scaling {rs}: only plain RoPE converts; pass a model without rope scaling")
    if getattr(hf_cfg, "attention_bias", False) or getattr(hf_cfg, "mlp_bias", False):
        raise CurationError("attention_bias/mlp_bias: biased Llama variants do not convert; pass a bias-free Llama")
    theta = getattr(hf_cfg, "rope_theta", None) or (getattr(hf_cfg, "rope_parameters", None) or {}).get(
        "rope_theta", 10000.0
    )
    return ModelConfig(
        num_layers=hf_cfg.num_hidden_layers,
        hidden_size=hf_cfg.hidden_size,
        ffn_hidden_size=hf_cfg.intermediate_size,
        num_attention_heads=hf_cfg.num_attention_heads,
        num_query_groups=hf_cfg.num_key_value_heads,
        max_position_embeddings=hf_cfg.max_position_embeddings,
        rotary_base=float(theta),
        norm_epsilon=hf_cfg.rms_norm_eps,
        tie_embeddings=bool(hf_cfg.tie_word_embeddings),
        init_method_std=hf_cfg.initializer_range,
    )


def hf_to_mcore_state(hf: dict, m: ModelConfig, vocab_size: int) -> dict:
    h, nh, ng = m.hidden_size, m.num_attention_heads, m.kv_groups
    d = h // nh
    out = {}
    emb = hf["model.embed_tokens.weight"]
    out["embedding.word_embeddings.weight"] = _pad_rows(emb, vocab_size)
    for i in range(m.num_layers):
        p, q = f"model.layers.{i}.", f"decoder.layers.{i}."
        wq = hf[p + "self_attn.q_proj.weight"].view(ng, nh // ng * d, h)
        wk = hf[p + "self_attn.k_proj.weight"].view(ng, d, h)
        wv = hf[p + "self_attn.v_proj.weight"].view(ng, d, h)
        out[q + "self_attention.linear_qkv.weight"] = torch.cat([wq, wk, wv], dim=1).reshape(-1, h)
        out[q + "self_attention.linear_proj.weight"] = hf[p + "self_attn.o_proj.weight"]
        out[q + "input_layernorm.weight"] = hf[p + "input_layernorm.weight"]
        out[q + "pre_mlp_layernorm.weight"] = hf[p + "post_attention_layernorm.weight"]
        out[q + "mlp.linear_fc1.weight"] = torch.cat(
            [hf[p + "mlp.gate_proj.weight"], hf[p + "mlp.up_proj.weight"]], dim=0
        )
        out[q + "mlp.linear_fc2.weight"] = hf[p + "mlp.down_proj.weight"]
    out["decoder.final_layernorm.weight"] = hf["model.norm.weight"]
    if not m.tie_embeddings:
        out["output_layer.weight"] = _pad_rows(hf["lm_head.weight"], vocab_size)
    return out


def mcore_to_hf_state(mc: dict, m: ModelConfig, hf_vocab: int) -> dict:
    mc = {_te_to_local(k): v for k, v in mc.items() if v is not None and "_extra_state" not in k}
    h, nh, ng = m.hidden_size, m.num_attention_heads, m.kv_groups
    d = h // nh
    out = {"model.embed_tokens.weight": mc["embedding.word_embeddings.weight"][:hf_vocab]}
    for i in range(m.num_layers):
        p, q = f"model.layers.{i}.", f"decoder.layers.{i}."
        qkv = mc[q + "self_attention.linear_qkv.weight"].view(ng, (nh // ng + 2) * d, h)
        wq, wk, wv = torch.split(qkv, [nh // ng * d, d, d], dim=1)
        out[p + "self_attn.q_proj.weight"] = wq.reshape(-1, h)
        out[p + "self_attn.k_proj.weight"] = wk.reshape(-1, h)
        out[p + "self_attn.v_proj.weight"] = wv.reshape(-1, h)
        out[p + "self_attn.o_proj.weight"] = mc[q + "self_attention.linear_proj.weight"]
        out[p + "input_layernorm.weight"] = mc[q + "input_layernorm.weight"]
        out[p + "post_attention_layernorm.weight"] = mc[q + "pre_mlp_layernorm.weight"]
        gate, up = torch.chunk(mc[q + "mlp.linear_fc1.weight"], 2, dim=0)
        out[p + "mlp.gate_proj.weight"], out[p + "mlp.up_proj.weight"] = gate, up
        out[p + "mlp.down_proj.weight"] = mc[q + "mlp.linear_fc2.weight"]
    out["model.norm.weight"] = mc["decoder.final_layernorm.weight"]
    out["lm_head.weight"] = (mc["embedding.word_embeddings.weight"] if m.tie_embeddings else mc["output_layer.weight"])[
        :hf_vocab
    ]
    return {k: v.contiguous().clone() for k, v in out.items()}


def _te_to_local(key: str) -> str:
    for te, local in TE_ALIASES.items():
        if key.endswith(te):
            return key[: -len(te)] + local
    return key


def _pad_rows(w: torch.Tensor, rows: int) -> torch.Tensor:
    if w.shape[0] >= rows:
        return w[:rows].clone()
    return torch.cat([w, torch.zeros(rows - w.shape[0], w.shape[1], dtype=w.dtype)], dim=0)


def _single_process():
    from train import distributed

    return distributed.init(1, 1, 0, "convert")


def _claim(output: str | Path, source: str | Path, overwrite: bool):
    """The output directory (curation/core/outputs.py): an earlier conversion there needs --overwrite, which removes
    only what `curate train convert` wrote; anything else, or the source itself, is refused."""
    from curation.core.outputs import claim

    out = claim(output, "train convert", inputs=[source], overwrite=overwrite, lock=True)  # one writer at a time
    try:
        out.replace_previous(overwrite, "converted checkpoint")
    except BaseException:
        out.release()
        raise
    return out


def hf_to_megatron(source: str, output: str | Path, overwrite: bool = False) -> Path:
    """HF Llama directory / smollm2 alias / .gguf -> <output>/checkpoints/iter_0000000 (+ latest.json)."""
    from curation.lm.loading import hf_directory

    hf_dir = hf_directory(source)
    with _claim(output, hf_dir, overwrite) as owned:  # released (its tree files recorded) when done
        owned.own("checkpoints", tree=True)
        return _hf_to_megatron(hf_dir, output)


def _hf_to_megatron(hf_dir, output) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM

    from train import checkpoint, distributed
    from train.model import build_model, layer_spec_name, pad_vocab

    hf_cfg = AutoConfig.from_pretrained(str(hf_dir))
    m = model_config_from_hf(hf_cfg)
    hf_model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32)
    hf_state = {k: v.detach() for k, v in hf_model.state_dict().items()}
    vocab = pad_vocab(hf_cfg.vocab_size)
    dist = _single_process()
    try:
        model = build_model(m, seq_length=min(m.max_position_embeddings, 2048), vocab_size=vocab, on_gpu=False)
        checkpoint.load_model_state(
            model, hf_to_mcore_state(hf_state, m, vocab), hf_dir, hint="is it a standard LlamaForCausalLM?"
        )
        state = {
            "model": model.sharded_state_dict(),
            "iteration": 0,
            "model_config": m.model_dump(),
            "vocab_size": vocab,
            "tokenizer_vocab_size": hf_cfg.vocab_size,
            "tokenizer": str(hf_dir),
            "layer_spec": layer_spec_name(False),
            "converted_from": str(hf_dir),
            "hf_config": hf_cfg.to_dict(),
        }
        return checkpoint.save(output, 0, state, dist.rank == 0)
    finally:
        distributed.shutdown()


def load_megatron_as_hf_state(ckpt: str | Path) -> tuple[dict, ModelConfig, dict]:
    """(HF-named state dict, model config, common state) from a trainer checkpoint, in one CPU process."""
    from train import checkpoint, distributed
    from train.model import build_model

    it_dir = checkpoint.resolve(ckpt)
    common = checkpoint.read_common(it_dir)
    m = ModelConfig(**common["model_config"])
    _single_process()
    try:
        model = build_model(
            m, seq_length=min(m.max_position_embeddings, 2048), vocab_size=int(common["vocab_size"]), on_gpu=False
        )
        loaded = checkpoint.load(it_dir, {"model": model.sharded_state_dict()})
        checkpoint.load_model_state(model, loaded["model"], it_dir)
        hf_vocab = int(common.get("tokenizer_vocab_size") or common["vocab_size"])
        return mcore_to_hf_state(model.state_dict(), m, hf_vocab), m, common
    finally:
        distributed.shutdown()


def megatron_to_hf(ckpt: str | Path, output: str | Path, tokenizer: str | None = None, overwrite: bool = False) -> Path:
    """Trainer checkpoint -> a LlamaForCausalLM directory (safetensors + tokenizer) that `curate eval` can load."""
    with _claim(output, checkpoint_path(ckpt), overwrite) as owned:  # before any weights load
        return _megatron_to_hf(ckpt, owned, tokenizer)


def _megatron_to_hf(ckpt, owned, tokenizer: str | None) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    state, m, common = load_megatron_as_hf_state(ckpt)
    hf_vocab = state["model.embed_tokens.weight"].shape[0]
    base = dict(common.get("hf_config") or {})
    for k in ("architectures", "model_type", "transformers_version", "torch_dtype", "dtype", "quantization_config"):
        base.pop(k, None)
    base.update(
        vocab_size=hf_vocab,
        hidden_size=m.hidden_size,
        intermediate_size=m.ffn_hidden_size,
        num_hidden_layers=m.num_layers,
        num_attention_heads=m.num_attention_heads,
        num_key_value_heads=m.kv_groups,
        max_position_embeddings=m.max_position_embeddings,
        rms_norm_eps=m.norm_epsilon,
        rope_theta=m.rotary_base,
        tie_word_embeddings=m.tie_embeddings,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
    )
    eod = common.get("eod")
    if eod is not None:
        base.setdefault("eos_token_id", eod)
    cfg = LlamaConfig(**base)
    with torch.device("meta"):
        hf = LlamaForCausalLM(cfg)
    hf.load_state_dict(state, strict=False, assign=True)
    if m.tie_embeddings:
        hf.tie_weights()
    out = owned.root
    tmp = owned.tree(".partial")
    hf.save_pretrained(str(tmp), safe_serialization=True)
    tok_spec = tokenizer or common.get("tokenizer")
    if tok_spec:
        from curation.lm.loading import load_tokenizer

        try:
            load_tokenizer(tok_spec).save_pretrained(str(tmp))
        except CurationError:
            if tokenizer:
                raise
    (tmp / "SOURCE").write_text(
        json.dumps(
            {
                "converted_from": str(checkpoint_path(ckpt)),
                "iteration": common.get("iteration"),
                "lineage": common.get("lineage") or {},
            }
        )
        + "\n"
    )
    for p in sorted(tmp.iterdir()):  # each file recorded as the command's before it is moved into place
        owned.own(p.name, tree=p.is_dir())
        os.replace(p, out / p.name)
    shutil.rmtree(tmp)
    return out


def checkpoint_path(ckpt) -> Path:
    from train import checkpoint

    return checkpoint.resolve(ckpt)
