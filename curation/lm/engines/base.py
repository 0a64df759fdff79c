"""The engine interface shared by every backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from curation.lm.config import Sampling


@dataclass
class Request:
    messages: list[dict]  # chat messages: [{"role": "system"|"user", "content": ...}]
    seed: int | None  # per-request sampling seed (None: the engine's own stream; faster on CPU vLLM)
    prompt: str | None = None  # raw text, already templated (transformers backend): used instead of `messages`


@dataclass
class Completion:
    text: str
    n_tokens: int
    finish_reason: str = ""


class Generator(Protocol):
    model_id: str  # recorded in the `model` column

    def generate(self, requests: list[Request], sampling: Sampling) -> list[Completion]: ...

    def close(self) -> None: ...
