"""Megatron's local core attention through ``torch.nn.functional.scaled_dot_product_attention``.

Without Transformer Engine (the GPU image here has none), the local layer spec's ``DotProductAttention`` materialises
the [batch, heads, s, s] scores in fp32 with an unfused softmax: at SmolLM2-135M's shape (9 heads, s=1024, micro-batch
16) that held about 50 GiB per process on an H200 and ran at 3-7% MFU (docs/results/small-scale-replication.md). SDPA
picks a flash or memory-efficient kernel instead, so memory is linear in the sequence. The parameters, and hence the
checkpoints, are the same as the local spec's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType


class SdpaAttention(DotProductAttention):
    """Drop-in ``core_attention`` for the local spec: causal when no mask is given, else Megatron's boolean mask."""

    def forward(
        self, query, key, value, attention_mask, attn_mask_type=None, attention_bias=None, packed_seq_params=None
    ):
        if packed_seq_params is not None or attention_bias is not None:
            raise NotImplementedError("SdpaAttention: packed sequences and attention bias need Transformer Engine")
        if self.config.apply_query_key_layer_scaling or self.softmax_offset is not None:
            raise NotImplementedError("SdpaAttention: query-key layer scaling and softmax offsets are not supported")
        # [s, b, heads, dim] -> [b, heads, s, dim]; key/value groups repeated to the query heads (GQA)
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))
        groups = self.num_attention_heads_per_partition // self.num_query_groups_per_partition
        if groups > 1:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        mask_type = attn_mask_type or self.attn_mask_type
        if attention_mask is None:
            if mask_type != AttnMaskType.causal:
                raise NotImplementedError(f"SdpaAttention: {mask_type} without an explicit mask")
            mask, causal = None, True
        else:
            mask, causal = ~attention_mask.to(torch.bool), False  # Megatron: True = masked out; SDPA: True = kept
        p = self.config.attention_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal, scale=self.softmax_scale
        )
        # [b, heads, s, dim] -> [s, b, heads * dim]
        return out.permute(2, 0, 1, 3).reshape(out.size(2), out.size(0), self.hidden_size_per_partition)
