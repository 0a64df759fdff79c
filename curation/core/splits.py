"""A seeded split of requests (or any texts) into an eval half and a post-training half, by a hash of the text.

Shared by `curate eval attacks` (asks the eval half) and post-training data (`split: posttrain` trains on the other
half), so a study can post-train and attack with one preference file and never evaluate a request it trained on. The
hash is of the text itself: stable across files, row orders and machines.
"""

from __future__ import annotations

import hashlib

HALVES = ("eval", "posttrain")


def half_of(text: str, eval_share: float = 0.5, seed: int = 0) -> str:
    h = int.from_bytes(hashlib.sha256(f"{seed}\0{text}".encode()).digest()[:8], "big") / 2**64
    return "eval" if h < eval_share else "posttrain"
