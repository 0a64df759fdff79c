"""A seeded split of requests (or any texts) into an eval half and a post-training half, by a hash of the text.

Shared by `curate eval attacks` (asks the eval half) and post-training data (`split: posttrain` trains on the other
half), so a study can post-train and attack with one preference file and never evaluate a request it trained on. The
hash is of the text itself: stable across files, row orders and machines. Both read HH-RLHF dialogues with the one
parser below, so they agree on what a record's request (its first user turn) is.
"""

from __future__ import annotations

import hashlib
import re

HALVES = ("eval", "posttrain")
_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")
_HH_ROLE = {"Human": "user", "Assistant": "assistant"}


def hh_dialogue(text: str) -> list[dict] | None:
    """An HH-RLHF dialogue string ("\\n\\nHuman: ...\\n\\nAssistant: ...") as messages; None when it is not one."""
    if not isinstance(text, str) or not text.lstrip(" ").startswith("\n\nHuman:"):
        return None
    parts = _HH_TURN.split(text)
    return [
        {"role": _HH_ROLE[role], "content": body.strip()} for role, body in zip(parts[1::2], parts[2::2], strict=True)
    ]


def half_of(text: str, eval_share: float = 0.5, seed: int = 0) -> str:
    h = int.from_bytes(hashlib.sha256(f"{seed}\0{text}".encode()).digest()[:8], "big") / 2**64
    return "eval" if h < eval_share else "posttrain"
