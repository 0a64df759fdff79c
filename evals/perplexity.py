"""Held-out perplexity: a capability measure that needs no benchmark, so every experiment can report one.

Per document: the summed negative log-likelihood of its first `seq_length` tokens (the first token is context only).
Perplexity = exp(total NLL / total predicted tokens); its 95% CI resamples documents (seeded bootstrap of the ratio).
Writes ``docs.jsonl`` (id, tokens, nll) and ``summary.json``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from curation.core.errors import CurationError
from curation.core.records import read_records
from curation.core.shards import is_shard, list_shards
from evals.runfiles import write_run
from evals.stats import bootstrap_ratio_ci


def read_texts(paths: list, max_docs: int | None, text_key: str = "text") -> list[tuple[str, str]]:
    """(id, text) of the first max_docs (None: all) documents of the JSONL/Parquet files or directories, in sorted
    order."""
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
                if max_docs is not None and len(out) >= max_docs:
                    return out
    return out


def ppl_with_ci(nll: np.ndarray, tokens: np.ndarray, seed: int, n_boot: int) -> tuple[float, tuple[float, float]]:
    """Perplexity exp(sum NLL / sum tokens) and its 95% CI, resampling documents (evals.stats.bootstrap_ratio_ci)."""
    ppl = float(math.exp(nll.sum() / tokens.sum()))
    if len(nll) < 2:
        return ppl, (ppl, ppl)
    lo, hi = bootstrap_ratio_ci(nll, tokens, seed, n_boot)
    return ppl, (float(math.exp(lo)), float(math.exp(hi)))


def score_perplexity(
    docs: list[tuple[str, str]], lm, window: int, max_tokens: int | None = None, progress=None
) -> list[dict]:
    """Each (id, text)'s rolling log-likelihood (`LanguageModel.rolling_loglikelihoods`: lm-eval's disjoint windows of
    ``window`` predicted tokens) with its byte and word counts. ``max_tokens``: only each document's first tokens
    (what an experiment's quick held-out check reads)."""
    scored = lm.rolling_loglikelihoods([t for _, t in docs], window, max_tokens=max_tokens, progress=progress)
    return [
        {
            "id": i,
            "loglik": float(ll),
            "n_tokens": int(n),
            "n_bytes": len(t.encode("utf-8")),
            "n_words": len(re.split(r"\s+", t)),
        }
        for (i, t), (ll, n) in zip(docs, scored, strict=True)
    ]


def run_perplexity(
    model: str,
    data: list[str],
    output: str | Path,
    *,
    max_docs: int = 64,
    seq_length: int = 512,
    batch_size: int = 8,
    seed: int = 0,
    n_boot: int = 1000,
    lineage: dict | None = None,
    text_key: str = "text",
    lm=None,
) -> dict:
    """Perplexity on each document's first ``seq_length`` tokens (scored as `curate eval capability --perplexity`).
    ``lm``: an open `LanguageModel` of ``model`` (curation.lm.session); without it the model loads here."""
    from curation.lm.session import LanguageModel

    docs = read_texts(data, max_docs, text_key)
    if not docs:
        raise CurationError(f"{data}: no documents with `{text_key}`; pass held-out text")
    if lm is None:
        lm = LanguageModel.open(model, batch_size=batch_size)
    lm.serves(model, "hf")
    scored = score_perplexity(docs, lm.batched(batch_size), window=seq_length, max_tokens=seq_length)
    rows = sorted(
        ({"id": r["id"], "tokens": r["n_tokens"], "nll": -r["loglik"]} for r in scored if r["n_tokens"]),
        key=lambda r: r["id"],
    )
    nll = np.array([r["nll"] for r in rows])
    ntok = np.array([r["tokens"] for r in rows], dtype=float)
    ppl, ci = ppl_with_ci(nll, ntok, seed, n_boot)
    summary = {
        "metric": "perplexity",
        "model": str(model),
        "data": [str(d) for d in data],
        "docs": len(rows),
        "tokens": int(ntok.sum()),
        "seq_length": seq_length,
        "perplexity": ppl,
        "perplexity_ci": list(ci),
        "mean_nll_per_token": float(nll.sum() / ntok.sum()),
        "seed": seed,
        "n_boot": n_boot,
        "lineage": lineage or {},
    }
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    write_run(out, rows, summary, rows_name="docs.jsonl")
    return summary
