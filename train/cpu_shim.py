"""The only place that bends megatron-core to run without a GPU (used by the trainer only when CUDA is absent).

megatron-core 0.16.1 builds and runs a ``GPTModel`` on CPU with ``use_cpu_initialization=True`` and the local
(non-Transformer-Engine) layer spec, except at the four points below, both handled here:

1. Several modules allocate buffers with ``device=torch.cuda.current_device()`` (rotary embeddings, attention and
   embedding buffers). Without CUDA that call raises; :func:`install` makes it return ``"cpu"``, which every one of
   those call sites accepts as a device.
2. With no attention mask, Megatron's own local attention builds its default causal mask with ``device="cuda"``;
   callers that use it on CPU pass :func:`causal_mask`. (The trainer's ``SdpaAttention``, train/attention.py, is
   causal without a mask.)
3. ``dist_checkpointing.save`` (torch_dist strategy) calls ``torch.cuda.synchronize()`` before writing; without
   CUDA there is nothing to wait for, so :func:`install` makes it a no-op.
4. ``model_parallel_cuda_manual_seed`` creates a CUDA RNG tracker. At tensor-parallel size 1 the inference tracker
   (a plain ``torch.random`` fork, no CUDA state) is equivalent; :func:`seed` uses it.

Megatron's optimizer, DDP wrapper and pipeline schedules allocate tensors with ``device="cuda"`` literally, so the
CPU path of the trainer uses ``torch.optim.AdamW`` and a plain forward/backward step instead (see train/engine.py).
Nothing here is applied when ``torch.cuda.is_available()``.
"""

from __future__ import annotations

import torch

_installed = False
_original_current_device = torch.cuda.current_device


def needed() -> bool:
    return not torch.cuda.is_available()


def install() -> None:
    """Idempotent; a no-op on machines with CUDA."""
    global _installed
    if _installed or not needed():
        return
    torch.cuda.current_device = lambda: "cpu"  # type: ignore[assignment]
    torch.cuda.synchronize = lambda device=None: None  # type: ignore[assignment]
    _installed = True


def seed(value: int) -> None:
    """Megatron's RNG-tracker seeding, on CPU: the inference tracker instead of the CUDA one (TP size must be 1)."""
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed

    install()
    model_parallel_cuda_manual_seed(value, inference_rng_tracker=True, force_reset_rng=True)


def causal_mask(seq_length: int) -> torch.Tensor:
    """[1, 1, s, s] boolean mask, True where attention is forbidden (Megatron's convention)."""
    return torch.triu(torch.ones(seq_length, seq_length, dtype=torch.bool), diagonal=1)[None, None]
