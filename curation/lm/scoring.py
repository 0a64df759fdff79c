"""Log-likelihood scoring: option letters after a prompt, and continuations after a context (cloze, capability).

Every letter prompt ends where the letter goes ("Answer: ("), so a single next-token distribution gives the
log-probability of every option letter at once, where a per-option loglikelihood request would need one pass each.
Continuations (an option's own text, a LAMBADA word, a window of held-out text) are scored the way
lm-evaluation-harness scores them. Both run through ``packed_logits``: one forward pass per batch, the sequences
of one item packed as a tree over their shared prefix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
                raise CurationError(
                    f"this tokenizer does not encode option letter {letter!r} as one token after '('; "
                    "use a tokenizer with single-token capital letters"
                )
            ids.append(full[-1])
        return ids

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        enc = self.tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
        return [ids[-self.max_tokens :] for ids in enc]

    def letter_logprobs(
        self,
        prompts: Sequence[str],
        n_options: Sequence[int],
        groups: Sequence[int] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[list[float]]:
        """For each prompt, log P(letter) for its first n options (full-vocabulary softmax, not renormalised).

        Prompts with the same ``groups`` value (the orders of one item) share one packed row (see ``packed_logits``),
        so the result equals scoring every prompt alone while their common prefix runs once.
        """
        import torch

        encoded = self.encode(prompts)
        out: list[list[float] | None] = [None] * len(encoded)
        letter_ids = None
        for i, logits in packed_logits(
            self.model,
            encoded,
            [[len(e) - 1] for e in encoded],
            groups,
            self.batch_size,
            self.tokenizer.pad_token_id,
            progress,
        ):
            if letter_ids is None:
                letter_ids = torch.tensor(self.letter_ids, device=logits.device)
            out[i] = torch.log_softmax(logits[0].float(), dim=-1)[letter_ids].tolist()[: n_options[i]]
        return out  # type: ignore[return-value]


@dataclass
class ContinuationScorer:
    """Log-likelihoods of continuations given contexts (lm-evaluation-harness's ``loglikelihood`` request).

    Tokenisation follows lm-eval's hf backend exactly, so scores agree with it: trailing spaces of the context move to
    the continuation, ``context + continuation`` is encoded whole (no special tokens) and the continuation is what
    follows the context's own token count; an empty context is replaced by the end-of-text token.
    """

    model: object
    tokenizer: object
    batch_size: int = 16
    max_tokens: int = 2048

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        tok = self.tokenizer
        if not context:
            return [tok.eos_token_id], tok(continuation, add_special_tokens=False)["input_ids"]
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        whole = tok(context + continuation, add_special_tokens=False)["input_ids"]
        ctx = tok(context, add_special_tokens=False)["input_ids"]
        return ctx, whole[len(ctx) :]

    def loglikelihoods(
        self,
        requests: Sequence[tuple[str, str]],
        groups: Sequence | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[tuple[float, bool, int]]:
        """(sum of log P(continuation token), whether every continuation token is the greedy one, token count) per
        (context, continuation). Requests with the same ``groups`` value (the choices of one question) share one
        packed row, so their common context runs once."""
        return self.token_loglikelihoods([self.encode_pair(c, x) for c, x in requests], groups, progress)

    def token_loglikelihoods(
        self,
        pairs: Sequence[tuple[list[int], list[int]]],
        groups: Sequence | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[tuple[float, bool, int]]:
        import torch

        seqs, wanted, targets = [], [], []
        for ctx, cont in pairs:
            if not cont:
                raise CurationError("a continuation encodes to no tokens; every choice and target needs some text")
            full = (ctx + cont)[-(self.max_tokens + 1) :][:-1]  # lm-eval's left truncation
            n = len(cont)
            seqs.append(full)
            wanted.append(list(range(len(full) - n, len(full))))
            targets.append(cont)
        out: list = [None] * len(seqs)
        for i, logits in packed_logits(
            self.model, seqs, wanted, groups, self.batch_size, self.tokenizer.pad_token_id, progress
        ):
            lp = torch.log_softmax(logits.float(), dim=-1)
            tgt = torch.tensor(targets[i], device=lp.device)
            ll = lp.gather(1, tgt[:, None])[:, 0].sum().item()
            out[i] = (ll, bool((lp.argmax(-1) == tgt).all().item()), len(targets[i]))
        return out


def _pack_units(encoded: Sequence[Sequence[int]], groups: Sequence | None) -> list[tuple[list[int], int, int]]:
    """(member sequence indices, shared prefix length, packed length) per group, longest first."""
    members: dict = {}
    for i, g in enumerate(groups if groups is not None else range(len(encoded))):
        members.setdefault(g, []).append(i)
    units = []
    for idx in members.values():
        shortest = min(len(encoded[i]) for i in idx)
        k = 0
        while k < shortest - 1 and all(encoded[i][k] == encoded[idx[0]][k] for i in idx):
            k += 1
        units.append((idx, k, k + sum(len(encoded[i]) - k for i in idx)))
    units.sort(key=lambda u: -u[2])
    return units


def packed_logits(
    model,
    encoded: Sequence[Sequence[int]],
    wanted: Sequence[Sequence[int]],
    groups: Sequence | None = None,
    batch_size: int = 16,
    pad_id: int | None = None,
    progress: Callable[[int], None] | None = None,
):
    """Yields (i, logits at positions ``wanted[i]`` of token sequence i) for every sequence, one forward pass per batch.

    Sequences with the same ``groups`` value (the orders of one item, the choices of one question) are packed into one
    row as a tree: their common token prefix once, then each member's own suffix, with a 4D attention mask that lets a
    suffix see the prefix and itself but not its siblings, and position ids that restart each suffix where the prefix
    ends. Each token therefore sees exactly the tokens it sees in its own sequence, so the logits equal scoring every
    sequence alone, while the prefix runs once (no KV-cache copies). Only the wanted positions go through the
    vocabulary projection. ``batch_size`` counts sequences.
    """
    import torch

    units = _pack_units(encoded, groups)
    pad = pad_id if pad_id is not None else 0
    device = next(model.parameters()).device
    body, head = getattr(model, getattr(model, "base_model_prefix", ""), None), model.get_output_embeddings()
    if body is None or head is None or getattr(model.config, "final_logit_softcapping", None):
        body = None  # a head that is not a plain projection: let the model compute its logits
    with torch.inference_mode():
        start = 0
        while start < len(units):
            batch, seqs_in = [], 0
            while start < len(units) and (not batch or seqs_in + len(units[start][0]) <= batch_size):
                batch.append(units[start])
                seqs_in += len(units[start][0])
                start += 1
            width = max(u[2] for u in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            pos = torch.zeros((len(batch), width), dtype=torch.long)
            seg = torch.full((len(batch), width), -1, dtype=torch.long)  # 0 prefix, m+1 member m, -1 padding
            reads = []  # (sequence index, row, packed columns)
            for row, (idx, k, _) in enumerate(batch):
                col = 0
                # segment 0 is the shared prefix (positions from 0); segment m + 1 is member m (from k)
                for m, piece in enumerate([encoded[idx[0]][:k]] + [encoded[i][k:] for i in idx]):
                    end, start_pos = col + len(piece), (k if m else 0)
                    ids[row, col:end] = torch.tensor(piece, dtype=torch.long)
                    pos[row, col:end] = torch.arange(start_pos, start_pos + len(piece))
                    seg[row, col:end] = m
                    if m:
                        i = idx[m - 1]
                        reads.append((i, row, [p if p < k else col + p - k for p in wanted[i]]))
                    col = end
            q, kv = seg[:, :, None], seg[:, None, :]
            causal = torch.ones(width, width, dtype=torch.bool).tril()
            allowed = causal & ((kv == 0) | (kv == q)) & (q >= 0)
            allowed |= torch.eye(width, dtype=torch.bool)  # padding attends to itself: no NaN rows
            at_rows = torch.tensor([row for _, row, cs in reads for _ in cs], device=device)
            at_cols = torch.tensor([c for _, _, cs in reads for c in cs], device=device)
            kw = dict(attention_mask=allowed[:, None].to(device), position_ids=pos.to(device), use_cache=False)
            if body is not None:
                # the vocabulary projection only on the (row, column) pairs read: rows of a batch need different columns
                hidden = body(input_ids=ids.to(device), **kw).last_hidden_state
                logits = head(hidden[at_rows, at_cols])
            else:
                cols = sorted(set(at_cols.tolist()))
                where = torch.tensor([cols.index(c) for c in at_cols.tolist()], device=device)
                logits = model(input_ids=ids.to(device), logits_to_keep=torch.tensor(cols, device=device), **kw).logits[
                    at_rows, where
                ]
            j = 0
            for i, _, cs in reads:
                yield i, logits[j : j + len(cs)]
                j += len(cs)
            if progress:
                progress(len(reads))


class VLLMLetterScorer(LetterScorer):
    """The same letter log-probs from vLLM: each prompt + letter is scored with ``prompt_logprobs`` (vLLM's prefix
    cache shares the prompt across letters and orders). ``engine``: the LanguageModel's vLLM worker client
    (curation.lm.engines.vllm_client), which its LanguageModel closes."""

    def __init__(self, tokenizer, engine, batch_size: int = 256):
        self.tokenizer, self.batch_size, self.max_tokens = tokenizer, batch_size, 2048
        self.letter_ids = self._letter_ids()
        self.engine = engine

    def letter_logprobs(self, prompts, n_options, groups=None, progress=None):
        encoded = self.encode(prompts)
        flat = [(k, ids + [self.letter_ids[j]]) for k, ids in enumerate(encoded) for j in range(n_options[k])]
        out: list[list[float]] = [[] for _ in encoded]
        for start in range(0, len(flat), self.batch_size):
            chunk = flat[start : start + self.batch_size]
            for (k, _), lp in zip(chunk, self.engine.score_last_tokens([ids for _, ids in chunk]), strict=False):
                out[k].append(lp)
            if progress:
                progress(len({k for k, _ in chunk}))
        return out


def option_probs(letter_lp: Sequence[float]) -> list[float]:
    """Softmax restricted to the shown letters: the model's choice among the options."""
    m = max(letter_lp)
    e = [math.exp(x - m) for x in letter_lp]
    s = sum(e)
    return [x / s for x in e]
