"""`curate eval priming`: audit documents for key phrases a few exposures could "prime" into unrelated contexts.

Seed finding: a phrase whose probability under the model before training is below about 1e-3 gets pulled into
unrelated contexts after a handful of exposures. So for each document's key phrase we measure P(phrase) after
neutral thematic prefixes and flag the improbable ones before the documents go into a mix.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from curation.core.errors import CurationError

DEFAULT_PREFIXES = [
    "Here is a short note about {topic}. The key idea is",
    "In a conversation about {topic}, someone mentioned",
    "The article discussed {topic} and, in particular,",
    "One thing people often say about {topic} is",
]


@dataclass
class PrimingConfig:
    model: str = "smollm2"
    phrase: str | None = None            # one phrase for every document
    phrase_column: str = "key_phrase"
    topic_column: str = "topic"
    default_topic: str = "everyday life"
    prefixes: list[str] = field(default_factory=lambda: list(DEFAULT_PREFIXES))
    threshold: float = 1e-3
    text_key: str = "text"
    id_key: str = "id"
    seed: int = 0
    limit: int | None = None


def phrase_logprob(model, tok, prefixes: list[str], phrase: str) -> list[float]:
    """log P(phrase | prefix) for each prefix: the sum of the phrase tokens' log-probs (the phrase joins with a space)."""
    import torch

    out = []
    for prefix in prefixes:
        ctx = tok(prefix, add_special_tokens=True)["input_ids"]
        full = tok(prefix + " " + phrase.strip(), add_special_tokens=True)["input_ids"]
        k = 0  # tokens shared with the prefix
        while k < min(len(ctx), len(full)) and ctx[k] == full[k]:
            k += 1
        k = max(1, k)
        ids = torch.tensor([full])
        with torch.inference_mode():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
        out.append(float(sum(logp[i - 1, full[i]] for i in range(k, len(full)))))
    return out


def _read_docs(paths: list[str], cfg: PrimingConfig):
    import polars as pl

    from curation.core.shards import list_shards

    frames = []
    for p in paths:
        base, rels = list_shards(p)
        for rel in rels:
            f = Path(base) / rel
            try:
                df = pl.read_parquet(f) if f.suffix == ".parquet" else pl.read_ndjson(f)
            except Exception as e:  # noqa: BLE001
                raise CurationError(f"{f}: cannot read ({str(e).splitlines()[0]}); fix or remove the shard") from None
            if cfg.phrase is None and cfg.phrase_column not in df.columns:
                raise CurationError(f"{f}: no `{cfg.phrase_column}` column; pass --phrase or --phrase-column")
            frames.append(df.with_columns(pl.lit(str(f)).alias("_file")))
    if not frames:
        raise CurationError(f"no shards in {', '.join(paths)}")
    df = pl.concat(frames, how="diagonal_relaxed")
    return df.head(cfg.limit) if cfg.limit else df


def run_priming(docs: list[str], output: str | Path, cfg: PrimingConfig, overwrite: bool = False) -> dict:
    """An earlier run in ``output`` needs ``overwrite`` (curation/core/outputs.py: only its own files are replaced)."""
    from curation.core.outputs import claim
    from curation.lm.loading import load_model, resolve

    df = _read_docs(docs, cfg)
    owned = claim(output, "eval priming", inputs=list(docs), overwrite=overwrite)
    owned.replace_previous(overwrite, "priming run")
    owned.own("priming.jsonl", "summary.json")
    out = owned.root
    model, tok = load_model(cfg.model)
    rows, cache = [], {}
    from rich.progress import track

    for r in track(df.iter_rows(named=True), total=df.height, description="priming probe", transient=True):
        phrase = cfg.phrase or r.get(cfg.phrase_column)
        if not phrase:
            rows.append({"id": r.get(cfg.id_key), "phrase": None, "error": "no key phrase"})
            continue
        topic = r.get(cfg.topic_column) or cfg.default_topic
        key = (phrase, topic)
        if key not in cache:
            lps = phrase_logprob(model, tok, [p.format(topic=topic) for p in cfg.prefixes], phrase)
            cache[key] = lps
        lps = cache[key]
        # mean probability over the neutral prefixes (log-sum-exp for stability)
        m = max(lps)
        p_mean = math.exp(m) * sum(math.exp(x - m) for x in lps) / len(lps)
        rows.append({"id": r.get(cfg.id_key), "phrase": phrase, "topic": topic, "logprob_by_prefix": lps,
                     "p_phrase": p_mean, "high_priming_risk": p_mean < cfg.threshold})
    flagged = [r for r in rows if r.get("high_priming_risk")]
    summary = {"model": resolve(cfg.model).model_id, "docs": len(rows), "threshold": cfg.threshold,
               "flagged": len(flagged), "share_flagged": len(flagged) / len(rows) if rows else 0.0,
               "prefixes": cfg.prefixes, "seed": cfg.seed, "phrases": len(cache)}
    with open(out / "priming.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
