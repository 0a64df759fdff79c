"""Log-likelihood scoring of option letters: one forward pass per prompt, batched and length-sorted.

Every prompt ends where the letter goes ("Answer: ("), so a single next-token distribution gives the
log-probability of every option letter at once, where a per-option loglikelihood request would need one pass each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from curation.errors import CurationError
from evals.items import LETTERS


@dataclass
class LetterScorer:
    """Next-token log-probs of the option letters after each prompt, from a transformers causal LM."""

    model: object
    tokenizer: object
    batch_size: int = 16
    max_tokens: int = 2048

    def __post_init__(self):
        import inspect

        self.letter_ids = self._letter_ids()
        # transformers renamed forward(past_key_values=) to cache=; use whichever this version takes
        self._cache_kw = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"

    def _letter_ids(self) -> list[int]:
        """The token each letter becomes right after "(": read off the tokenizer, not assumed."""
        tok = self.tokenizer
        base = tok("Answer: (", add_special_tokens=False)["input_ids"]
        ids = []
        for letter in LETTERS:
            full = tok(f"Answer: ({letter}", add_special_tokens=False)["input_ids"]
            if full[: len(base)] != base or len(full) != len(base) + 1:
                raise CurationError(f"this tokenizer does not encode option letter {letter!r} as one token after '('; "
                                    "use a tokenizer with single-token capital letters")
            ids.append(full[-1])
        return ids

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        enc = self.tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
        return [ids[-self.max_tokens:] for ids in enc]

    def letter_logprobs(self, prompts: Sequence[str], n_options: Sequence[int], groups: Sequence[int] | None = None,
                        progress: Callable[[int], None] | None = None) -> list[list[float]]:
        """For each prompt, log P(letter) for its first n options (full-vocabulary softmax, not renormalised).

        Prompts with the same ``groups`` value (the orders of one item) share their common token prefix: it runs once,
        and its KV cache is reused for each member's suffix. The tokens are exactly the full prompts' tokens, so the
        result equals scoring each prompt on its own.
        """
        import torch

        encoded = self.encode(prompts)
        members: dict[int, list[int]] = {}
        for i, g in enumerate(groups if groups is not None else range(len(encoded))):
            members.setdefault(g, []).append(i)
        units = []
        for idx in members.values():
            shortest = min(len(encoded[i]) for i in idx)
            k = 0
            while k < shortest - 1 and all(encoded[i][k] == encoded[idx[0]][k] for i in idx):
                k += 1
            units.append((idx, k))
        units.sort(key=lambda u: -sum(len(encoded[i]) for i in u[0]))
        out: list[list[float] | None] = [None] * len(encoded)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        device = next(self.model.parameters()).device
        letter_ids = torch.tensor(self.letter_ids, device=device)

        def left_padded(seqs):
            width = max(len(x) for x in seqs)
            ids = torch.full((len(seqs), width), pad, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for row, x in enumerate(seqs):  # left padding: every sequence ends in the last column
                if x:
                    ids[row, width - len(x):] = torch.tensor(x)
                    mask[row, width - len(x):] = 1
            return ids.to(device), mask.to(device)

        with torch.inference_mode():
            start = 0
            while start < len(units):
                batch, rows = [], 0
                while start < len(units) and (not batch or rows + len(units[start][0]) <= self.batch_size):
                    batch.append(units[start])
                    rows += len(units[start][0])
                    start += 1
                flat = [(u, i) for u, (idx, _) in enumerate(batch) for i in idx]
                # 1) shared prefixes, once per item; rotary positions count real tokens only
                p_ids, p_mask = left_padded([encoded[idx[0]][:k] for idx, k in batch])
                p_pos = (p_mask.cumsum(-1) - 1).clamp(min=0)
                cache = self.model(input_ids=p_ids, attention_mask=p_mask, position_ids=p_pos, use_cache=True,
                                   logits_to_keep=1).past_key_values
                cache.reorder_cache(torch.tensor([u for u, _ in flat], device=device))
                # 2) each prompt's own suffix on top of its item's prefix cache
                s_ids, s_mask = left_padded([encoded[i][batch[u][1]:] for u, i in flat])
                prefix_len = p_mask.sum(-1)[torch.tensor([u for u, _ in flat], device=device)]
                s_pos = prefix_len[:, None] + (s_mask.cumsum(-1) - 1).clamp(min=0)
                mask = torch.cat([p_mask[torch.tensor([u for u, _ in flat], device=device)], s_mask], dim=1)
                final = self.model(input_ids=s_ids, attention_mask=mask, position_ids=s_pos, **{self._cache_kw: cache},
                                   logits_to_keep=1).logits[:, -1].float()
                lp = torch.log_softmax(final, dim=-1)[:, letter_ids].cpu().tolist()
                for row, (_, i) in enumerate(flat):
                    out[i] = lp[row][: n_options[i]]
                if progress:
                    progress(len(flat))
        return out  # type: ignore[return-value]


class VLLMLetterScorer(LetterScorer):
    """The same letter log-probs from vLLM: each prompt + letter is scored with ``prompt_logprobs`` (vLLM's prefix
    cache shares the prompt across letters and orders). vLLM runs in its worker process (synth's engine)."""

    def __init__(self, tokenizer, model: str = "smollm2", batch_size: int = 256, **backend):
        from synth.config import BackendConfig
        from synth.engine.vllm_client import VLLMGenerator

        self.tokenizer, self.batch_size, self.max_tokens = tokenizer, batch_size, 2048
        self.letter_ids = self._letter_ids()
        self.engine = VLLMGenerator(BackendConfig(kind="vllm", model=model, **backend))

    def letter_logprobs(self, prompts, n_options, groups=None, progress=None):
        encoded = self.encode(prompts)
        flat = [(k, ids + [self.letter_ids[j]]) for k, ids in enumerate(encoded) for j in range(n_options[k])]
        out: list[list[float]] = [[] for _ in encoded]
        for start in range(0, len(flat), self.batch_size):
            chunk = flat[start: start + self.batch_size]
            for (k, _), lp in zip(chunk, self.engine.score_last_tokens([ids for _, ids in chunk])):
                out[k].append(lp)
            if progress:
                progress(len({k for k, _ in chunk}))
        return out

    def close(self):
        self.engine.close()


def option_probs(letter_lp: Sequence[float]) -> list[float]:
    """Softmax restricted to the shown letters: the model's choice among the options."""
    m = max(letter_lp)
    e = [math.exp(x - m) for x in letter_lp]
    s = sum(e)
    return [x / s for x in e]
