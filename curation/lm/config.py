"""Typed settings of the language-model layer: which backend generates, and how it samples."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from curation.core.config import Strict


class Sampling(Strict):
    temperature: float = Field(0.8, ge=0.0, le=5.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(700, ge=1)


class BackendConfig(Strict):
    kind: Literal["vllm", "openai", "transformers"] = "vllm"
    model: str = "smollm2"  # spec for vllm/transformers (curation.lm.loading); served name for openai
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key: str | None = None  # or OPENAI_API_KEY
    concurrency: int = Field(8, ge=1)  # openai: requests in flight
    timeout_s: float = Field(120.0, gt=0)  # openai: per request
    retries: int = Field(4, ge=0)  # openai: bounded retries with exponential backoff
    backoff_s: float = Field(0.5, ge=0)
    vllm_python: str | None = None  # interpreter with vLLM (default: current one if it imports vllm, else .venv/vllm)
    max_model_len: int = Field(2048, ge=128)
    kv_cache_gb: int = Field(1, ge=1)  # VLLM_CPU_KVCACHE_SPACE on CPU
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    dtype: str = "auto"
