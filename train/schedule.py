"""Learning rate: linear warmup to optim.lr, then cosine decay to optim.min_lr over decay_steps, then flat."""

from __future__ import annotations

import math

from train.config import OptimConfig


def lr_at(iteration: int, optim: OptimConfig, train_steps: int) -> float:
    """LR for the step that starts at ``iteration`` (0-based)."""
    warm = optim.warmup_steps
    if warm and iteration < warm:
        return optim.lr * (iteration + 1) / warm
    decay = max((optim.decay_steps or train_steps) - warm, 1)
    t = min(max(iteration - warm, 0) / decay, 1.0)
    return optim.min_lr + 0.5 * (optim.lr - optim.min_lr) * (1 + math.cos(math.pi * t))
