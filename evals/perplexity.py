"""Held-out perplexity: a capability measure that needs no benchmark, so every experiment can report one.

Per document: the summed negative log-likelihood of its first `seq_length` tokens (the first token is context only).
Perplexity = exp(total NLL / total predicted tokens); its 95% CI resamples documents (seeded bootstrap of the ratio).
Writes ``docs.jsonl`` (id, tokens, nll) and ``summary.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from curation.core.errors import CurationError
from curation.core.records import read_records
from curation.core.shards import is_shard, list_shards


def read_texts(paths: list[str], max_docs: int, text_key: str = "text") -> list[tuple[str, str]]:
    """(id, text) of the first max_docs documents of the files (or directories, in sorted order)."""
    out: list[tuple[str, str]] = []
    for spec in paths:
        root, rels = list_shards(str(spec))
        if not rels:
            raise CurationError(f"{spec}: no JSONL/Parquet documents found; pass held-out text files with `{text_key}`")
        for rel in rels:
            path = Path(root) / rel
            if not is_shard(path.name):
                continue
            for n, row in read_records(path):
                text = row.get(text_key)
                if not text:
                    continue
                out.append((str(row.get("id", f"{rel}:{n}")), str(text)))
                if len(out) >= max_docs:
                    return out
    return out


def ppl_with_ci(nll: np.ndarray, tokens: np.ndarray, seed: int, n_boot: int) -> tuple[float, tuple[float, float]]:
    ppl = float(math.exp(nll.sum() / tokens.sum()))
    if len(nll) < 2:
        return ppl, (ppl, ppl)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(nll), size=(n_boot, len(nll)))
    boots = np.exp(nll[idx].sum(1) / tokens[idx].sum(1))
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return ppl, (float(lo), float(hi))


def run_perplexity(model: str, data: list[str], output: str | Path, *, max_docs: int = 64, seq_length: int = 512,
                   batch_size: int = 8, seed: int = 0, n_boot: int = 1000, lineage: dict | None = None,
                   text_key: str = "text", loaded: tuple | None = None) -> dict:
    import torch

    from curation.lm.loading import load_model

    docs = read_texts(data, max_docs, text_key)
    if not docs:
        raise CurationError(f"{data}: no documents with `{text_key}`; pass held-out text")
    model_, tok = loaded or load_model(model)
    device = next(model_.parameters()).device
    enc = [tok(t, add_special_tokens=False)["input_ids"][:seq_length] for _, t in docs]
    rows = []
    order = sorted(range(len(docs)), key=lambda i: len(enc[i]))
    for start in range(0, len(order), batch_size):
        idx = [i for i in order[start: start + batch_size] if len(enc[i]) >= 2]
        if not idx:
            continue
        width = max(len(enc[i]) for i in idx)
        ids = torch.full((len(idx), width), tok.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, : len(enc[i])] = torch.tensor(enc[i])
            mask[r, : len(enc[i])] = 1
        with torch.inference_mode():
            logits = model_(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
        lp = (lp * mask[:, 1:].to(device)).sum(1)
        for r, i in enumerate(idx):
            rows.append({"id": docs[i][0], "tokens": len(enc[i]) - 1, "nll": float(-lp[r])})
    rows.sort(key=lambda r: r["id"])
    nll = np.array([r["nll"] for r in rows])
    ntok = np.array([r["tokens"] for r in rows], dtype=float)
    ppl, ci = ppl_with_ci(nll, ntok, seed, n_boot)
    summary = {"metric": "perplexity", "model": str(model), "data": [str(d) for d in data], "docs": len(rows),
               "tokens": int(ntok.sum()), "seq_length": seq_length, "perplexity": ppl, "perplexity_ci": list(ci),
               "mean_nll_per_token": float(nll.sum() / ntok.sum()), "seed": seed, "n_boot": n_boot, "lineage": lineage or {}}
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "docs.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
