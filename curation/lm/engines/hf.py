"""transformers `generate` fallback: runs anywhere the main environment runs (CPU or GPU)."""

from __future__ import annotations

from curation.lm.config import BackendConfig, Sampling
from curation.lm.engines.base import Completion, Request


class TransformersGenerator:
    def __init__(self, cfg: BackendConfig, max_batch: int = 16):
        import torch

        from curation.lm.loading import load_model, resolve

        self.torch = torch
        self.model, self.tok = load_model(cfg.model, dtype="auto" if cfg.dtype == "auto" else cfg.dtype)
        self.tok.padding_side = "left"
        self.model_id = resolve(cfg.model).model_id
        self.max_batch = max_batch
        self.device = next(self.model.parameters()).device

    @classmethod
    def from_loaded(cls, model, tok, spec: str, max_batch: int = 16) -> TransformersGenerator:
        """A generator over a model a LanguageModel already loaded (curation.lm.session)."""
        self = cls.__new__(cls)
        import torch

        from curation.lm.loading import resolve

        self.torch, self.model, self.tok, self.max_batch = torch, model, tok, max_batch
        self.tok.padding_side = "left"
        self.model_id = resolve(spec).model_id
        self.device = next(model.parameters()).device
        return self

    def _encode(self, requests: list[Request]):
        texts = [
            r.prompt
            if r.prompt is not None
            else self.tok.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True)
            for r in requests
        ]
        return self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)

    def generate(self, requests: list[Request], sampling: Sampling, force_length: bool = False) -> list[Completion]:
        """Batches of `max_batch`; the batch is seeded with its first request's seed (reproducible for the same
        batches)."""
        out: list[Completion] = []
        for start in range(0, len(requests), self.max_batch):
            chunk = requests[start : start + self.max_batch]
            enc = self._encode(chunk)
            if chunk[0].seed is not None:
                self.torch.manual_seed(chunk[0].seed)
            kw = dict(max_new_tokens=sampling.max_tokens, pad_token_id=self.tok.pad_token_id)
            if sampling.temperature > 0:
                kw.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
            else:
                kw.update(do_sample=False)
            if force_length:
                kw["min_new_tokens"] = sampling.max_tokens
            with self.torch.inference_mode():
                gen = self.model.generate(**enc, **kw)
            new = gen[:, enc["input_ids"].shape[1] :]
            for row in new:
                ids = row.tolist()
                eos = self.tok.eos_token_id
                n = len(ids)
                finish = "length"
                for i, t in enumerate(ids):
                    if t == eos or t == self.tok.pad_token_id:
                        n, finish = i, "stop"
                        break
                out.append(Completion(self.tok.decode(ids[:n], skip_special_tokens=True).strip(), n, finish))
        return out

    def close(self) -> None:
        pass
