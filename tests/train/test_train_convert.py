"""HF Llama <-> trainer checkpoints: logits match after a round trip (tiny random Llama, SmolLM2-135M); a converted
SmolLM2 continues pretraining on CPU, converts back, and is scored by `curate eval propensity`."""

from __future__ import annotations

import json

import pytest
import torch
from test_train_tokenize import SHARED, curate, make_mix

ITEMS = (
    SHARED.parent / "propensity" / "anthropic-advanced-ai-risk" / "human_generated_evals" / "survival-instinct.jsonl"
)


def _megatron_logits(ckpt, tokens):
    from train import checkpoint, cpu_shim, distributed
    from train.config import ModelConfig
    from train.model import build_model

    it = checkpoint.resolve(ckpt)
    common = checkpoint.read_common(it)
    distributed.init(1, 1, 0)
    try:
        m = build_model(
            ModelConfig(**common["model_config"]),
            seq_length=tokens.shape[1],
            vocab_size=common["vocab_size"],
            on_gpu=False,
        )
        checkpoint.load_model_state(m, checkpoint.load(it, {"model": m.sharded_state_dict()})["model"], it)
        m.eval()
        pos = torch.arange(tokens.shape[1])[None].expand(tokens.shape[0], -1)
        with torch.no_grad():
            return m(tokens, pos, cpu_shim.causal_mask(tokens.shape[1]))[..., : common["tokenizer_vocab_size"]]
    finally:
        distributed.shutdown()


@pytest.mark.parametrize("tied", [True, False])
def test_tiny_random_llama_round_trip(tmp_path, tied):
    from transformers import LlamaConfig, LlamaForCausalLM

    from train.convert import hf_to_megatron, megatron_to_hf

    cfg = LlamaConfig(
        vocab_size=1000,
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rope_theta=50000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=tied,
    )
    torch.manual_seed(0)
    hf = LlamaForCausalLM(cfg).eval()
    hf.save_pretrained(tmp_path / "hf")
    hf_to_megatron(str(tmp_path / "hf"), tmp_path / "mc")
    common = json.loads((tmp_path / "mc" / "checkpoints" / "latest.json").read_text())
    assert common["iteration"] == 0
    tokens = torch.randint(0, 1000, (2, 24))
    with torch.no_grad():
        ref = hf(tokens).logits
    assert (_megatron_logits(tmp_path / "mc", tokens) - ref).abs().max() < 1e-4  # Megatron forward == HF forward
    back = megatron_to_hf(tmp_path / "mc", tmp_path / "hf2")
    hf2 = LlamaForCausalLM.from_pretrained(str(back)).eval()
    assert hf2.config.vocab_size == 1000 and hf2.config.tie_word_embeddings == tied
    with torch.no_grad():
        assert torch.equal(hf2(tokens).logits, ref)


def test_bad_conversion_sources(tmp_path):
    proc = curate("train", "convert", tmp_path / "nothing", "--to", "hf", "-o", tmp_path / "x")
    assert proc.returncode == 2 and "no checkpoint" in proc.stderr
    proc = curate("train", "convert", "smollm2", "--to", "gpt2", "-o", tmp_path / "x")
    assert proc.returncode == 2 and "--to gpt2" in proc.stderr


@pytest.mark.slow
def test_smollm2_round_trip_continued_pretraining_and_eval(tmp_path):
    from transformers import AutoModelForCausalLM

    from curation.lm.loading import hf_directory
    from train.tokenize import tokenize_mix

    proc = curate("train", "convert", "smollm2", "--to", "megatron", "-o", tmp_path / "smol")
    assert proc.returncode == 0, proc.stderr[-3000:]
    tokens = torch.randint(0, 49152, (1, 32))
    orig = AutoModelForCausalLM.from_pretrained(str(hf_directory("smollm2")), dtype=torch.float32).eval()
    with torch.no_grad():
        ref = orig(tokens).logits
    assert (_megatron_logits(tmp_path / "smol", tokens) - ref).abs().max() < 1e-3

    make_mix(tmp_path / "mix", n_shards=1, per_source=4)
    blend = tokenize_mix(tmp_path / "mix", "smollm2", tmp_path / "tok", workers=1).output / "blend.json"
    cpt = tmp_path / "cpt.yaml"  # no model section: the architecture comes from the checkpoint
    cpt.write_text(
        f"data: {{blend: {blend}, seq_length: 64}}\noptim: {{lr: 1.0e-4, min_lr: 1.0e-5, warmup_steps: 1}}\n"
        f"train: {{steps: 2, global_batch_size: 2, micro_batch_size: 1, save_interval: 2, "
        f"save_dir: {tmp_path / 'cpt'}}}\n"
    )
    proc = curate("train", "pretrain", cpt, "--init-from", tmp_path / "smol", "--no-progress", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = [json.loads(x)["loss"] for x in (tmp_path / "cpt" / "metrics.jsonl").read_text().splitlines()]
    # a trained model at every step, not a random one (ln 49152 = 10.8): on a GPU, weights loaded after the optimizer
    # was built were replaced by the random init at the first step, so the second loss is the one that tells
    assert len(losses) == 2 and max(losses) < 6

    proc = curate("train", "convert", tmp_path / "cpt", "--to", "hf", "-o", tmp_path / "smol_cpt")
    assert proc.returncode == 0, proc.stderr[-3000:]
    cpt_model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "smol_cpt"), dtype=torch.float32).eval()
    with torch.no_grad():
        out = cpt_model(tokens).logits
    assert torch.isfinite(out).all() and 0 < (out - ref).abs().max() < 20  # moved, but only a little

    if not ITEMS.exists():
        pytest.skip(f"{ITEMS} not present for the propensity check")
    proc = curate(
        "eval",
        "propensity",
        "--items",
        ITEMS,
        "--limit-per-file",
        3,
        "--model",
        tmp_path / "smol_cpt",
        "-o",
        tmp_path / "eval",
        "--no-progress",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "eval" / "summary.json").exists()
