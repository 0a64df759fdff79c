"""`curate eval priming`: which keywords will a few exposures "prime" into unrelated contexts, and did they?

Finding (Sun et al. 2025, "How new data permeates LLM knowledge"): the probability of a keyword *in its own context*,
under the model before it learns the text, predicts how far a few (~3) exposures spread the keyword into unrelated
contexts afterwards; keywords below about 1e-3 spread, likelier ones barely do. So:

* **in-context** (default): for each training document, the keyword's probability at its first occurrence, given
  the text before it (at most `max_context_tokens` tokens): its first token and the whole keyword, both scored with
  the LM layer's continuation scorer; documents whose keyword (`flag_on`: first token by default) is under the
  threshold are flagged.
* **spread** (with a before- and an after-model): for each keyword and each unrelated held-out context, the change
  in log P(keyword | context) from the before-model to the after-model (first token and whole keyword), with the
  keyword's exposures (documents containing it); per keyword the mean change with an items-only bootstrap CI over
  contexts, and across keywords the rank correlation of the in-context probability with the spread.
* **prefix** (the earlier probe, kept): P(phrase) after four neutral thematic prefixes, averaged; not the finding's
  measure (the phrase is scored out of its context).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from curation.core.errors import CurationError
from evals.runfiles import write_rows, write_run
from evals.stats import ITEMS_ONLY, bootstrap_ci

DEFAULT_PREFIXES = [
    "Here is a short note about {topic}. The key idea is",
    "In a conversation about {topic}, someone mentioned",
    "The article discussed {topic} and, in particular,",
    "One thing people often say about {topic} is",
]
SPREAD_TOPICS = ["the weather", "cooking", "football", "gardening", "train travel", "music lessons"]
MODES = ("in-context", "prefix")


@dataclass
class PrimingConfig:
    model: str = "smollm2"
    mode: str = "in-context"  # in-context (default) | prefix (phrase after neutral prefixes, the earlier probe)
    phrase: str | None = None  # one keyword for every document
    phrase_column: str = "key_phrase"
    topic_column: str = "topic"  # prefix mode
    default_topic: str = "everyday life"
    prefixes: list[str] = field(default_factory=lambda: list(DEFAULT_PREFIXES))
    threshold: float = 1e-3
    flag_on: str = "first_token"  # in-context: first_token | keyword
    max_context_tokens: int = 512
    text_key: str = "text"
    id_key: str = "id"
    seed: int = 0
    limit: int | None = None
    before: str | None = None  # spread: the model before training (also scores in-context, when given)
    after: str | None = None  # spread: the model after the exposures
    contexts: list[str] | None = None  # spread: shards of unrelated held-out text (default: neutral prefixes x topics)
    context_words: int = 48  # spread: each held-out document's first words
    max_contexts: int = 32
    exposures_column: str = "exposures"  # spread: exposures per keyword (default: documents containing it)
    batch_size: int = 16
    n_boot: int = 2000


def phrase_logprob(model, tok, prefixes: list[str], phrase: str) -> list[float]:
    """log P(phrase | prefix) for each prefix: the sum of the phrase tokens' log-probs (the phrase joins with a
    space)."""
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


def find_keyword(text: str, keyword: str) -> tuple[int, int]:
    """(character offset of the first occurrence, occurrences); case-insensitive when the exact form is absent;
    (-1, 0) if the text does not contain it."""
    kw = keyword.strip()
    pos = text.find(kw)
    if pos >= 0:
        return pos, text.count(kw)
    low = text.lower()
    pos = low.find(kw.lower())
    return pos, (low.count(kw.lower()) if pos >= 0 else 0)


def keyword_pairs(scorer, context: str, keyword_text: str, max_context_tokens: int) -> tuple[list[int], list[int]]:
    """(context tokens, keyword tokens) as lm-eval splits them (a space before the keyword goes with it), the
    context cut to its last `max_context_tokens` tokens (the end-of-text token when it is empty)."""
    ctx, cont = scorer.encode_pair(context, keyword_text)
    ctx = ctx[-max_context_tokens:] if ctx else [scorer.tokenizer.eos_token_id]
    if not cont:
        raise CurationError(f"keyword {keyword_text!r} encodes to no tokens")
    return ctx, cont


def score_keywords(scorer, requests: list[tuple[str, str]], max_context_tokens: int) -> list[dict]:
    """For each (context, keyword text): log P of its first token and of the whole keyword, and its token count."""
    pairs = [keyword_pairs(scorer, c, k, max_context_tokens) for c, k in requests]
    flat = [p for ctx, cont in pairs for p in ((ctx, cont[:1]), (ctx, cont))]
    res = scorer.token_loglikelihoods(flat)
    return [
        {"logp_first_token": res[2 * i][0], "logp_keyword": res[2 * i + 1][0], "keyword_tokens": len(pairs[i][1])}
        for i in range(len(pairs))
    ]


def in_context_scores(scorer, docs: list[dict], cfg: PrimingConfig) -> list[dict]:
    """Per document: the keyword at its first occurrence given the text before it; flagged under the threshold."""
    rows, reqs, where = [], [], []
    for d in docs:
        kw = d["keyword"]
        row = {"id": d["id"], "keyword": kw}
        if not kw:
            row["error"] = "no keyword"
        else:
            pos, n = find_keyword(d["text"], kw)
            row.update(found=pos >= 0, occurrences=n, position=pos)
            if pos < 0:
                row["error"] = "keyword not in the text"
            else:
                reqs.append((d["text"][:pos], d["text"][pos : pos + len(kw.strip())]))
                where.append(len(rows))
        rows.append(row)
    for k, s in zip(where, score_keywords(scorer, reqs, cfg.max_context_tokens) if reqs else [], strict=False):
        r = rows[k]
        r.update(s, p_first_token=math.exp(s["logp_first_token"]), p_keyword=math.exp(s["logp_keyword"]))
        r["high_priming_risk"] = r["p_first_token" if cfg.flag_on == "first_token" else "p_keyword"] < cfg.threshold
    return rows


def spread_contexts(cfg: PrimingConfig) -> list[tuple[str, str]]:
    """(id, text) of the unrelated held-out contexts: each document's first `context_words` words, or the neutral
    prefixes with everyday topics."""
    if not cfg.contexts:
        return [(f"prefix{k}/{t}", p.format(topic=t)) for t in SPREAD_TOPICS for k, p in enumerate(cfg.prefixes)][
            : cfg.max_contexts
        ]
    from evals.perplexity import read_texts

    return [(i, " ".join(t.split()[: cfg.context_words])) for i, t in read_texts(cfg.contexts, cfg.max_contexts)]


def priming_spread(
    before, after, keywords: list[tuple[str, int]], contexts: list[tuple[str, str]], cfg: PrimingConfig
) -> tuple[list[dict], list[dict]]:
    """(per keyword x context rows, per keyword summaries): the change in log P(keyword | unrelated context) from
    the before-model's continuation scorer to the after-model's, first token and whole keyword."""
    reqs = [(c, " " + kw.strip()) for kw, _ in keywords for _, c in contexts]
    b = score_keywords(before, reqs, cfg.max_context_tokens)
    a = score_keywords(after, reqs, cfg.max_context_tokens)
    rows, per_kw = [], []
    for i, (kw, exposures) in enumerate(keywords):
        mine = []
        for j, (cid, _) in enumerate(contexts):
            k = i * len(contexts) + j
            r = {
                "keyword": kw,
                "exposures": exposures,
                "context_id": cid,
                "before_logp_first_token": b[k]["logp_first_token"],
                "after_logp_first_token": a[k]["logp_first_token"],
                "before_logp_keyword": b[k]["logp_keyword"],
                "after_logp_keyword": a[k]["logp_keyword"],
            }
            r["delta_logp_first_token"] = r["after_logp_first_token"] - r["before_logp_first_token"]
            r["delta_logp_keyword"] = r["after_logp_keyword"] - r["before_logp_keyword"]
            mine.append(r)
        rows += mine
        s = {"keyword": kw, "exposures": exposures, "contexts": len(mine), "ci_method": ITEMS_ONLY}
        for m in ("delta_logp_first_token", "delta_logp_keyword"):
            v = [r[m] for r in mine]
            s[m] = float(np.mean(v))
            s[m + "_ci"] = list(bootstrap_ci(v, cfg.seed + i, cfg.n_boot))
        s["share_contexts_up"] = float(np.mean([r["delta_logp_keyword"] > 0 for r in mine]))
        per_kw.append(s)
    return rows, per_kw


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


def _prefix_rows(df, cfg: PrimingConfig, model, tok) -> tuple[list[dict], int]:
    from rich.progress import track

    rows, cache = [], {}
    for r in track(df.iter_rows(named=True), total=df.height, description="priming probe", transient=True):
        phrase = cfg.phrase or r.get(cfg.phrase_column)
        if not phrase:
            rows.append({"id": r.get(cfg.id_key), "phrase": None, "error": "no key phrase"})
            continue
        topic = r.get(cfg.topic_column) or cfg.default_topic
        key = (phrase, topic)
        if key not in cache:
            cache[key] = phrase_logprob(model, tok, [p.format(topic=topic) for p in cfg.prefixes], phrase)
        lps = cache[key]
        # mean probability over the neutral prefixes (log-sum-exp for stability)
        m = max(lps)
        p_mean = math.exp(m) * sum(math.exp(x - m) for x in lps) / len(lps)
        rows.append(
            {
                "id": r.get(cfg.id_key),
                "phrase": phrase,
                "topic": topic,
                "logprob_by_prefix": lps,
                "p_phrase": p_mean,
                "high_priming_risk": p_mean < cfg.threshold,
            }
        )
    return rows, len(cache)


def _spearman(x: list[float], y: list[float]) -> float | None:
    if len(x) < 3:
        return None
    from scipy.stats import spearmanr

    rho = spearmanr(x, y).statistic
    return None if rho is None or not np.isfinite(rho) else float(rho)


def run_priming(
    docs: list[str],
    output: str | Path,
    cfg: PrimingConfig,
    overwrite: bool = False,
    lm=None,
    lm_after=None,
) -> dict:
    """An earlier run in ``output`` needs ``overwrite`` (curation/core/outputs.py: only its own files are replaced).
    ``lm`` / ``lm_after``: open `LanguageModel`s (curation.lm.session) of the scoring (before) and after models."""
    import os

    from curation.core.outputs import claim
    from curation.lm.loading import resolve
    from curation.lm.session import LanguageModel

    if cfg.mode not in MODES:
        raise CurationError(f"--mode must be one of {', '.join(MODES)}, not {cfg.mode!r}")
    if cfg.flag_on not in ("first_token", "keyword"):
        raise CurationError(f"--flag-on must be first_token or keyword, not {cfg.flag_on!r}")
    if (cfg.before is None) != (cfg.after is None):
        raise CurationError("the spread measurement needs both --before and --after (the models around the exposures)")
    df = _read_docs(docs, cfg)
    spec = cfg.before or cfg.model
    models = [m for m in (spec, cfg.after) if m and os.path.exists(str(m))]
    owned = claim(output, "eval priming", inputs=[*docs, *models, *(cfg.contexts or [])], overwrite=overwrite)
    owned.replace_previous(overwrite, "priming run")
    owned.own("priming.jsonl", "summary.json", "spread.jsonl")
    out = owned.root
    lm = (lm or LanguageModel.open(spec, batch_size=cfg.batch_size)).batched(cfg.batch_size)
    lm.serves(spec, "hf")
    summary = {
        "model": resolve(spec).model_id,
        "mode": cfg.mode,
        "docs": df.height,
        "threshold": cfg.threshold,
        "seed": cfg.seed,
    }
    if cfg.mode == "prefix":
        rows, n_phrases = _prefix_rows(df, cfg, lm.model, lm.tokenizer)
        summary.update(prefixes=cfg.prefixes, phrases=n_phrases)
    else:
        recs = [
            {
                "id": r.get(cfg.id_key),
                "keyword": cfg.phrase or r.get(cfg.phrase_column),
                "text": r.get(cfg.text_key) or "",
            }
            for r in df.iter_rows(named=True)
        ]
        rows = in_context_scores(lm.continuation_scorer(max_tokens=cfg.max_context_tokens + 64), recs, cfg)
        scored = [r for r in rows if "logp_first_token" in r]
        summary.update(
            flag_on=cfg.flag_on,
            max_context_tokens=cfg.max_context_tokens,
            scored=len(scored),
            keyword_not_found=sum(1 for r in rows if r.get("error") == "keyword not in the text"),
        )
    flagged = [r for r in rows if r.get("high_priming_risk")]
    summary.update(flagged=len(flagged), share_flagged=len(flagged) / len(rows) if rows else 0.0)
    spread_rows: list[dict] = []
    if cfg.after is not None:
        after = (lm_after or LanguageModel.open(cfg.after, batch_size=cfg.batch_size)).batched(cfg.batch_size)
        after.serves(cfg.after, "hf")
        contexts = spread_contexts(cfg)
        counts: dict[str, int] = {}
        for r in df.iter_rows(named=True):
            kw = cfg.phrase or r.get(cfg.phrase_column)
            if kw:
                n = r.get(cfg.exposures_column)
                found = find_keyword(r.get(cfg.text_key) or "", kw)[0] >= 0 or cfg.mode == "prefix"
                counts[kw] = counts.get(kw, 0) + (int(n) if n is not None else int(found))
        keywords = sorted(counts.items())
        spread_rows, per_kw = priming_spread(
            lm.continuation_scorer(max_tokens=cfg.max_context_tokens + 64),
            after.continuation_scorer(max_tokens=cfg.max_context_tokens + 64),
            keywords,
            contexts,
            cfg,
        )
        in_ctx: dict[str, list[float]] = {}
        for r in rows:
            if "logp_first_token" in r:
                in_ctx.setdefault(r["keyword"], []).append(
                    r["logp_first_token" if cfg.flag_on == "first_token" else "logp_keyword"]
                )
        for s in per_kw:
            v = in_ctx.get(s["keyword"])
            s["in_context_logp"] = float(np.mean(v)) if v else None
            s["below_threshold"] = None if not v else bool(np.mean(v) < math.log(cfg.threshold))
        pairs = [(s["in_context_logp"], s["delta_logp_keyword"]) for s in per_kw if s["in_context_logp"] is not None]
        summary["spread"] = {
            "before": resolve(spec).model_id,
            "after": resolve(cfg.after).model_id,
            "contexts": len(contexts),
            "context_source": cfg.contexts or "neutral prefixes x topics",
            "keywords": per_kw,
            "ci_method": ITEMS_ONLY,
            "spearman_in_context_vs_spread": _spearman([p for p, _ in pairs], [d for _, d in pairs]),
            "mean_spread_below_threshold": _mean([s["delta_logp_keyword"] for s in per_kw if s["below_threshold"]]),
            "mean_spread_above_threshold": _mean(
                [s["delta_logp_keyword"] for s in per_kw if s["below_threshold"] is False]
            ),
        }
    if spread_rows:
        write_rows(out / "spread.jsonl", spread_rows)
    write_run(out, rows, summary, rows_name="priming.jsonl")
    return summary


def _mean(v: list[float]) -> float | None:
    return float(np.mean(v)) if v else None
