"""train/sizing.py: parameter counts of the shipped paper-scale configs (against the published count, Hugging Face's
Llama on the meta device and the trainer's own Megatron model), per-GPU memory on 8 x H100, and the one-line refusal of
a config that cannot fit. Nothing large is allocated: the big models are built on the meta device."""

from __future__ import annotations

import pytest
import torch

from curation.core.errors import CurationError
from train import sizing
from train.config import CONFIG_DIR, ModelConfig, PretrainConfig

GPU_CONFIGS = ["llama_350m_gpu", "llama_1p7b_gpu", "llama_6p9b_gpu"]


def _hf_llama_numel(m: ModelConfig, vocab: int) -> int:
    """Parameters of transformers' LlamaForCausalLM of the same shape, built on the meta device (no memory)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=m.hidden_size,
        intermediate_size=m.ffn_hidden_size,
        num_hidden_layers=m.num_layers,
        num_attention_heads=m.num_attention_heads,
        num_key_value_heads=m.kv_groups,
        tie_word_embeddings=m.tie_embeddings,
    )
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    return sum(p.numel() for p in model.parameters())  # a tied output weight is the embedding's: counted once


def test_1p7b_matches_smollm2_1p7b():
    cfg = PretrainConfig.from_yaml("llama_1p7b_gpu")
    p = sizing.parameter_counts(cfg.model, sizing.config_vocab(cfg))
    assert abs(p["total"] - 1.71e9) / 1.71e9 < 0.03  # SmolLM2-1.7B: 1.71B published
    assert p["total"] == 1_711_376_384 == _hf_llama_numel(cfg.model, 49152)
    assert p["output"] == 0 and p["embedding"] == 49152 * 2048


def test_6p9b_count_by_arithmetic():
    cfg = PretrainConfig.from_yaml("llama_6p9b_gpu")
    p = sizing.parameter_counts(cfg.model, sizing.config_vocab(cfg))
    h, f, L, V = 4096, 11008, 32, 49152
    layer = 4 * h * h + 3 * h * f + 2 * h  # Q, K, V, O (multi-head); gate, up, down; two RMSNorms
    assert p["total"] == L * layer + h + 2 * V * h == 6_878_924_800  # untied: embedding and output layer
    assert abs(p["total"] - 6.9e9) / 6.9e9 < 0.03
    assert p["total"] == _hf_llama_numel(cfg.model, V)


@pytest.mark.parametrize("tied", [True, False])
def test_count_matches_the_trainers_model(tied):
    """The tiny config built as the trainer builds it (Megatron-core GPTModel on CPU): sum(p.numel()) is the count."""
    from train import distributed
    from train.model import build_model, count_parameters

    cfg = PretrainConfig.from_yaml("tiny_cpu", {"model.tie_embeddings": tied})
    vocab = 1024
    distributed.init(1, 1, 0)
    try:
        model = build_model(cfg.model, seq_length=cfg.data.seq_length, vocab_size=vocab, on_gpu=False)
        real = sum(p.numel() for p in model.parameters())
    finally:
        distributed.shutdown()
    p = sizing.parameter_counts(cfg.model, vocab)
    assert p["total"] == real == count_parameters(cfg.model, vocab)["total"]
    assert (p["output"] == 0) is tied
    assert sizing.estimate_config(cfg, "tiny_cpu", vocab_size=vocab, gpus=1).stage_params == real


@pytest.mark.parametrize("name", GPU_CONFIGS)
def test_shipped_gpu_configs_fit_8_h100(name):
    cfg = PretrainConfig.from_yaml(name)
    s = sizing.estimate_config(cfg, name, gpus=8, gpu="H100")
    s.check()
    assert s.fits and s.dp == 8 // (cfg.train.tensor_parallel * cfg.train.pipeline_parallel)
    assert 0 < s.gib["total"] <= 79.6
    assert abs(sum(v for k, v in s.gib.items() if k != "total") - s.gib["total"]) < 1e-9


def test_6p9b_memory_by_hand():
    """The 6.9B estimate term by term: bf16 weights 2 B, fp32 gradients 4 B, fp32 master + Adam 12 B / DP 8,
    activations (12 + 4g/a + 6f/h) s*b*h bytes per layer plus 6 s*b*V logits, 5 GiB overhead."""
    cfg = PretrainConfig.from_yaml("llama_6p9b_gpu")
    s = sizing.estimate_config(cfg, "x", gpus=8, gpu="H100")
    n, G = 6_878_924_800, 2**30
    assert s.gib["weights"] == pytest.approx(2 * n / G)
    assert s.gib["gradients"] == pytest.approx(4 * n / G)
    assert s.gib["optimizer"] == pytest.approx(12 * n / 8 / G)
    per_layer = 2048 * 1 * 4096 * (12 + 4 + 6 * 11008 / 4096)
    assert s.gib["activations"] == pytest.approx((32 * per_layer + 6 * 2048 * 49152) / G)
    assert s.gib["total"] == pytest.approx(61.6, abs=0.05)


def test_parallelism_and_recompute_shrink_the_estimate():
    base = PretrainConfig.from_yaml("llama_6p9b_gpu", {"train.micro_batch_size": 4})
    s = sizing.estimate_config(base, "x")
    tp2 = sizing.estimate_config(PretrainConfig.from_yaml("llama_6p9b_gpu", {"train.tensor_parallel": 2}), "x")
    assert tp2.dp == 4 and tp2.gib["weights"] == pytest.approx(s.gib["weights"] / 2, rel=1e-3)
    full = sizing.estimate_config(
        PretrainConfig.from_yaml("llama_6p9b_gpu", {"train.micro_batch_size": 4, "train.recompute": "full"}), "x"
    )
    assert full.gib["activations"] < s.gib["activations"] / 4
    no_dist = sizing.estimate_config(
        PretrainConfig.from_yaml("llama_6p9b_gpu", {"train.use_distributed_optimizer": False}), "x"
    )
    assert no_dist.gib["optimizer"] == pytest.approx(8 * sizing.estimate_config(base, "x").gib["optimizer"])
    pp2 = sizing.estimate_config(PretrainConfig.from_yaml("llama_6p9b_gpu", {"train.pipeline_parallel": 2}), "x")
    assert pp2.stage_params < 0.55 * s.stage_params  # half the layers plus one of the two vocabulary matrices
    # non-flash attention keeps the softmax scores (Korthikanti et al.'s 5as/h): more than 3x the activations here
    m = base.model
    assert sizing.layer_activation_bytes(m, 2048, 1, 1, "none", flash=False) > 3 * sizing.layer_activation_bytes(
        m, 2048, 1, 1, "none"
    )


def test_oversized_config_is_refused_in_one_line(tmp_path):
    path = tmp_path / "huge.yaml"
    text = (CONFIG_DIR / "llama_6p9b_gpu.yaml").read_text()
    text = text.replace("micro_batch_size: 1 ", "micro_batch_size: 16 ")
    text = text.replace("use_distributed_optimizer: true", "use_distributed_optimizer: false")
    path.write_text(text)
    cfg = PretrainConfig.from_yaml(path)
    assert (cfg.train.micro_batch_size, cfg.train.tensor_parallel, cfg.train.use_distributed_optimizer) == (
        16,
        1,
        False,
    )
    s = sizing.estimate_config(cfg, str(path), gpus=8, gpu="H100")
    assert not s.fits
    with pytest.raises(CurationError) as e:
        s.check()
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path))
    assert f"{s.gib['total']:.1f} GiB" in msg and "79.6 GiB" in msg
    for fix in ("train.tensor_parallel", "train.micro_batch_size", "train.recompute", "use_distributed_optimizer"):
        assert fix in msg
    # the same on an H200: still too big (no distributed optimizer: 77 GiB of optimizer state alone)
    assert not sizing.estimate_config(cfg, str(path), gpus=8, gpu="H200").fits


def test_startup_check_uses_the_device(monkeypatch):
    """The trainer's GPU start-up check reads the device's name and memory; the environment variable skips it."""
    from types import SimpleNamespace

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(
        torch.cuda,
        "get_device_properties",
        lambda i: SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=81559 * 2**20),
    )
    cfg = PretrainConfig.from_yaml("llama_6p9b_gpu")
    kw = {"seq_length": 2048, "vocab_size": 49152, "origin": "run.yaml"}
    sizing.check_startup(cfg.model, cfg.train, world_size=8, **kw)
    with pytest.raises(CurationError, match=r"^run\.yaml: does not fit.*NVIDIA H100"):
        sizing.check_startup(cfg.model, cfg.train, world_size=1, **kw)  # one GPU: the optimizer state is not sharded
    monkeypatch.setenv(sizing.SKIP_ENV, "1")
    sizing.check_startup(cfg.model, cfg.train, world_size=1, **kw)


def test_bad_parallelism_and_unknown_gpu():
    cfg = PretrainConfig.from_yaml("llama_6p9b_gpu", {"train.tensor_parallel": 3})
    with pytest.raises(CurationError, match="8 GPUs cannot hold tensor_parallel=3"):
        sizing.estimate_config(cfg, "x")
    with pytest.raises(CurationError, match="unknown GPU"):
        sizing.estimate_config(PretrainConfig.from_yaml("llama_6p9b_gpu"), "x", gpu="V100")


def test_plan_command_prints_the_table_and_refuses():
    from typer.testing import CliRunner

    from train.cli import train_app

    r = CliRunner().invoke(train_app, ["plan", "llama_6p9b_gpu"])
    assert r.exit_code == 0, r.output
    assert "6.879B" in r.output and "61.6" in r.output and "fits" in r.output
    r = CliRunner().invoke(train_app, ["plan", "llama_6p9b_gpu", "--gpu", "H200", "--set", "train.micro_batch_size=32"])
    assert r.exit_code == 2 and "does not fit" in r.output and "H200" in r.output


def test_experiment_notes():
    ok = PretrainConfig.from_yaml("llama_6p9b_gpu").model_dump()
    h200_only = PretrainConfig.from_yaml("llama_6p9b_gpu", {"train.micro_batch_size": 4}).model_dump()
    huge = PretrainConfig.from_yaml("llama_6p9b_gpu", {"train.micro_batch_size": 16}).model_dump()
    nodes = [{"config": c, "gpus": 8, "nodes": 1} for c in (ok, ok, h200_only, huge)]
    problems, notes = sizing.experiment_notes(nodes + [{"config": huge, "gpus": 0, "nodes": 1}], "exp.yaml")
    assert len(notes) == 2 and "fits an H100" in notes[0] and "H200 only" in notes[1]
    assert len(problems) == 1 and problems[0].startswith("exp.yaml: train on 1 x 8 GPUs: does not fit")
