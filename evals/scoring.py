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

    def letter_logprobs(self, prompts: Sequence[str], n_options: Sequence[int],
                        progress: Callable[[int], None] | None = None) -> list[list[float]]:
        """For each prompt, log P(letter) for its first n options (full-vocabulary softmax, not renormalised)."""
        import torch

        encoded = self.encode(prompts)
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        out: list[list[float] | None] = [None] * len(encoded)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        device = next(self.model.parameters()).device
        letter_ids = torch.tensor(self.letter_ids, device=device)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start: start + self.batch_size]
                width = max(len(encoded[i]) for i in idx)
                ids = torch.full((len(idx), width), pad, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):  # left padding, so every prompt's last token is the last column
                    ids[row, width - len(encoded[i]):] = torch.tensor(encoded[i])
                    mask[row, width - len(encoded[i]):] = 1
                ids, mask = ids.to(device), mask.to(device)
                positions = (mask.cumsum(-1) - 1).clamp(min=0)  # padding must not shift the rotary positions
                final = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                   logits_to_keep=1).logits[:, -1].float()
                lp = torch.log_softmax(final, dim=-1)[:, letter_ids].cpu().tolist()
                for row, i in enumerate(idx):
                    out[i] = lp[row][: n_options[i]]
                if progress:
                    progress(len(idx))
        return out  # type: ignore[return-value]


def option_probs(letter_lp: Sequence[float]) -> list[float]:
    """Softmax restricted to the shown letters: the model's choice among the options."""
    m = max(letter_lp)
    e = [math.exp(x - m) for x in letter_lp]
    s = sum(e)
    return [x / s for x in e]
