"""Log-likelihood scoring of option letters: one forward pass per prompt, batched and length-sorted.

Every prompt ends where the letter goes ("Answer: ("), so a single next-token distribution gives the
log-probability of every option letter at once, where a per-option loglikelihood request would need one pass each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from curation.core.errors import CurationError
from curation.core.items import LETTERS


@dataclass
class LetterScorer:
    """Next-token log-probs of the option letters after each prompt, from a transformers causal LM."""

    model: object
    tokenizer: object
    batch_size: int = 16
    max_tokens: int = 2048

    def __post_init__(self):
        self.letter_ids = self._letter_ids()

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

        Prompts with the same ``groups`` value (the orders of one item) are packed into one row as a tree: their
        common token prefix once, then each member's own suffix, with a 4D attention mask that lets a suffix see the
        prefix and itself but not its siblings, and position ids that restart each suffix where the prefix ends. Each
        token therefore sees exactly the tokens it sees in its own prompt, so the result equals scoring every prompt
        alone, while the prefix runs once and there is one forward pass per batch (no KV-cache copies).
        """
        import torch

        encoded = self.encode(prompts)
        members: dict[int, list[int]] = {}
        for i, g in enumerate(groups if groups is not None else range(len(encoded))):
            members.setdefault(g, []).append(i)
        units = []   # (member prompt indices, shared prefix length, packed length)
        for idx in members.values():
            shortest = min(len(encoded[i]) for i in idx)
            k = 0
            while k < shortest - 1 and all(encoded[i][k] == encoded[idx[0]][k] for i in idx):
                k += 1
            units.append((idx, k, k + sum(len(encoded[i]) - k for i in idx)))
        units.sort(key=lambda u: -u[2])
        out: list[list[float] | None] = [None] * len(encoded)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        device = next(self.model.parameters()).device
        letter_ids = torch.tensor(self.letter_ids, device=device)

        with torch.inference_mode():
            start = 0
            while start < len(units):
                batch, prompts_in = [], 0
                while start < len(units) and (not batch or prompts_in + len(units[start][0]) <= self.batch_size):
                    batch.append(units[start])
                    prompts_in += len(units[start][0])
                    start += 1
                width = max(u[2] for u in batch)
                ids = torch.full((len(batch), width), pad, dtype=torch.long)
                pos = torch.zeros((len(batch), width), dtype=torch.long)
                seg = torch.full((len(batch), width), -1, dtype=torch.long)    # 0 prefix, m+1 member m, -1 padding
                reads = []                                                     # (row, column, prompt index)
                for row, (idx, k, _) in enumerate(batch):
                    col = 0
                    # segment 0 is the shared prefix (positions from 0); segment m + 1 is member m (from k)
                    for m, piece in enumerate([encoded[idx[0]][:k]] + [encoded[i][k:] for i in idx]):
                        end, start_pos = col + len(piece), (k if m else 0)
                        ids[row, col:end] = torch.tensor(piece, dtype=torch.long)
                        pos[row, col:end] = torch.arange(start_pos, start_pos + len(piece))
                        seg[row, col:end] = m
                        col = end
                        if m:
                            reads.append((row, col - 1, idx[m - 1]))
                q, kv = seg[:, :, None], seg[:, None, :]
                causal = torch.ones(width, width, dtype=torch.bool).tril()
                allowed = causal & ((kv == 0) | (kv == q)) & (q >= 0)
                allowed |= torch.eye(width, dtype=torch.bool)                    # padding attends to itself: no NaN rows
                cols = sorted({c for _, c, _ in reads})
                where = {c: j for j, c in enumerate(cols)}
                logits = self.model(input_ids=ids.to(device), attention_mask=allowed[:, None].to(device),
                                    position_ids=pos.to(device), use_cache=False,
                                    logits_to_keep=torch.tensor(cols, device=device)).logits
                rows_t = torch.tensor([r for r, _, _ in reads], device=device)
                cols_t = torch.tensor([where[c] for _, c, _ in reads], device=device)
                lp = torch.log_softmax(logits[rows_t, cols_t].float(), dim=-1)[:, letter_ids].cpu().tolist()
                for (_, _, i), row_lp in zip(reads, lp):
                    out[i] = row_lp[: n_options[i]]
                if progress:
                    progress(len(reads))
        return out  # type: ignore[return-value]


class VLLMLetterScorer(LetterScorer):
    """The same letter log-probs from vLLM: each prompt + letter is scored with ``prompt_logprobs`` (vLLM's prefix
    cache shares the prompt across letters and orders). vLLM runs in its worker process (synth's engine)."""

    def __init__(self, tokenizer, model: str = "smollm2", batch_size: int = 256, **backend):
        from curation.lm.config import BackendConfig
        from curation.lm.engines.vllm_client import VLLMGenerator

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
