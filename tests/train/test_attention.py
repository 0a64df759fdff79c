"""SdpaAttention (train/attention.py) computes what Megatron's local DotProductAttention computes, GQA included."""

from __future__ import annotations

import conftest  # noqa: F401  (puts the repository on sys.path)
import torch

from train import cpu_shim, distributed
from train.attention import SdpaAttention
from train.config import ModelConfig
from train.model import transformer_config


def test_sdpa_attention_equals_megatron_local_attention():
    from megatron.core.transformer.dot_product_attention import DotProductAttention
    from megatron.core.transformer.enums import AttnMaskType

    distributed.init(1, 1, 0)
    try:
        cfg = transformer_config(
            ModelConfig(num_layers=1, hidden_size=32, num_attention_heads=4, num_query_groups=2), seq_length=16
        )
        kw = dict(config=cfg, layer_number=1, attn_mask_type=AttnMaskType.causal, attention_type="self")
        ref_attn, ours = DotProductAttention(**kw).eval(), SdpaAttention(**kw).eval()
        g = torch.Generator().manual_seed(0)
        q = torch.randn(16, 2, 4, 8, generator=g)  # [s, b, heads, dim]
        k, v = torch.randn(16, 2, 2, 8, generator=g), torch.randn(16, 2, 2, 8, generator=g)  # 2 key/value groups
        mask = cpu_shim.causal_mask(16)
        ref = ref_attn(q, k, v, mask)
        assert ref.shape == (16, 2, 32)
        assert torch.allclose(ours(q, k, v, None), ref, atol=1e-5)  # causal by kernel, no mask tensor
        assert torch.allclose(ours(q, k, v, mask), ref, atol=1e-5)  # Megatron's explicit boolean mask
        padded = mask.clone()
        padded[..., 3] = True  # a padding mask changes the result
        assert not torch.allclose(ours(q, k, v, padded)[4:], ref[4:], atol=1e-3)
        assert torch.allclose(ours(q, k, v, padded)[4:], ref_attn(q, k, v, padded)[4:], atol=1e-5)
    finally:
        distributed.shutdown()
