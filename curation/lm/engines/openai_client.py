"""Any OpenAI-compatible server (vLLM's own, SGLang, a hosted API): concurrency limit, timeouts, retries with backoff.

An unreachable endpoint or an unknown model becomes one CurationError after the bounded retries.
"""

from __future__ import annotations

import os
import random
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from curation.core.errors import CurationError
from curation.lm.config import BackendConfig, Sampling
from curation.lm.engines.base import Completion, Request

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIGenerator:
    def __init__(self, cfg: BackendConfig):
        self.cfg = cfg
        self.base = cfg.base_url.rstrip("/")
        self.session = requests.Session()
        key = cfg.api_key or os.environ.get("OPENAI_API_KEY")
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"
        models = self._call("GET", "/models")
        served = [m.get("id") for m in models.get("data", [])]
        if cfg.model not in served:
            if cfg.model == "smollm2" and len(served) == 1:
                self.model_name = served[0]  # the default spec: take the one model the server serves
            else:
                raise CurationError(
                    f"{self.base}: serves {served}, not {cfg.model!r}; pass --model with one of those names"
                )
        else:
            self.model_name = cfg.model
        self.model_id = self.model_name

    def _call(self, method: str, path: str, payload: dict | None = None) -> dict:
        url = self.base + path
        last = ""
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                time.sleep(self.cfg.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random()))
            try:
                r = self.session.request(method, url, json=payload, timeout=self.cfg.timeout_s)
            except requests.RequestException as e:
                last = type(e).__name__
                continue
            if r.status_code in RETRY_STATUS:
                last = f"HTTP {r.status_code}"
                continue
            if r.status_code >= 400:
                raise CurationError(
                    f"{url}: HTTP {r.status_code} ({r.text[:200].strip()}); check the model name and request options"
                )
            try:
                return r.json()
            except ValueError:
                last = "non-JSON reply"
        raise CurationError(
            f"{url}: unreachable after {self.cfg.retries + 1} tries ({last}); start the server "
            f"(`curate synth serve`) or fix --base-url"
        )

    def _one(self, req: Request, sampling: Sampling) -> Completion:
        body = {
            "model": self.model_name,
            "messages": req.messages,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "seed": req.seed,
        }
        data = self._call("POST", "/chat/completions", body)
        choice = data["choices"][0]
        n = (data.get("usage") or {}).get("completion_tokens", 0)
        return Completion((choice["message"].get("content") or "").strip(), int(n), choice.get("finish_reason") or "")

    def generate(self, requests_: list[Request], sampling: Sampling) -> list[Completion]:
        with ThreadPoolExecutor(max_workers=self.cfg.concurrency) as pool:
            return list(pool.map(lambda r: self._one(r, sampling), requests_))

    def close(self) -> None:
        self.session.close()
