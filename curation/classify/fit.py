"""`curate fit`: train the keyword calibration, the fastText models and the embedding head from labelled documents."""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from curation.classify.embedding import EmbeddingCache
from curation.classify.fasttext_model import model_inputs, train_fasttext
from curation.classify.lexicon import Lexicon
from curation.classify.steps.base import STANCES
from curation.classify.steps.keyword import keyword_features
from curation.core.errors import CurationError

REQUIRED = ("text", "ai_discourse", "stance")


@dataclass
class FitParams:
    seed: int = 0
    valid_fraction: float = 0.15
    max_negatives_per_positive: float = 4.0
    epoch: int = 25
    lr: float = 0.5
    word_ngrams: int = 2
    dim: int = 64
    bucket: int = 2_000_000
    min_count: int = 2
    max_chars: int = 20_000
    quantize_cutoff: int = 50_000
    embedding: bool = True
    embedding_max_chunks: int = 4
    embedding_words_per_chunk: int = 180
    embedding_max_tokens: int | None = None  # None: the encoder's own limit (MiniLM: 256)
    lexicon: str | None = None
    # multipliers on the model stances before renormalising (a prior shift toward what the training data under-predicts
    # on the target text); None = argmax of the plain mean. Written into the card, applied by FinalScores.
    stance_class_weights: dict[str, float] | None = None
    # a learned combination of the stage probabilities (curation/classify/combiner.py, fitted on out-of-fold scores of
    # real text by scripts/classifier/crossval_real.py); None = the mean. Written into the card, applied by FinalScores.
    ai_combiner: dict | None = None


def parse_class_weights(spec: str) -> dict[str, float] | None:
    """`aligned=2,misaligned=1.5` -> {"aligned": 2.0, "misaligned": 1.5}; empty -> None."""
    from curation.core.config import parse_weights

    out = parse_weights(
        [spec] if spec.strip() else [], "--stance-class-weights", "STANCE=WEIGHT", "aligned=2,misaligned=1.5"
    )
    for name, weight in (out or {}).items():
        if name not in STANCES or weight <= 0:
            raise CurationError(
                f"--stance-class-weights '{name}={weight:g}': needs a stance in {STANCES} and a positive weight"
            )
    return out


def load_labelled(paths: list[str]) -> pl.DataFrame:
    frames = []
    for p in paths:
        try:
            df = pl.read_parquet(p) if p.endswith(".parquet") else pl.read_ndjson(p)
        except Exception as e:
            raise CurationError(f"{p}: cannot read labelled data ({type(e).__name__}); give Parquet or JSONL") from None
        missing = [c for c in REQUIRED if c not in df.columns]
        if missing:
            raise CurationError(
                f"{p}: missing column(s) {', '.join(missing)}; labelled data needs text, ai_discourse (0/1), stance"
            )
        if "id" not in df.columns:
            df = df.with_columns(pl.Series("id", [f"{p}#{i}" for i in range(df.height)]))
        source = pl.col("source").cast(pl.Utf8) if "source" in df.columns else pl.lit(Path(p).stem)
        frames.append(
            df.select(
                pl.col("id").cast(pl.Utf8),
                pl.col("text").cast(pl.Utf8),
                pl.col("ai_discourse").cast(pl.Int8),
                pl.col("stance").cast(pl.Utf8),
                source.alias("source"),
            )
        )
    df = pl.concat(frames).filter(pl.col("text").str.strip_chars().str.len_chars() > 0)
    bad = df.filter(
        ~pl.col("ai_discourse").is_in([0, 1]) | (pl.col("ai_discourse") == 1) & ~pl.col("stance").is_in(list(STANCES))
    )
    if bad.height:
        raise CurationError(
            f"labelled data: {bad.height} rows have ai_discourse not 0/1 or an AI row without a stance in "
            f"{STANCES} (first id {bad['id'][0]}); fix those rows"
        )
    return df


def fit_data_hash(df: pl.DataFrame) -> str:
    """What the card's id is made of: the ids and labels (not the text), order-free."""
    return hashlib.sha256(
        "".join(
            sorted(f"{i}:{a}:{s}" for i, a, s in zip(df["id"], df["ai_discourse"], df["stance"], strict=False))
        ).encode()
    ).hexdigest()


def split(df: pl.DataFrame, fraction: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A seeded hash of the id decides the split, so adding documents never moves existing ones."""
    h = [int(hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF for i in df["id"]]
    mask = pl.Series(h) < fraction
    return df.filter(~mask), df.filter(mask)


def precision_recall_f1(y: np.ndarray, p: np.ndarray) -> dict:
    """Binary precision, recall and F1 of predictions `p` against labels `y` (both 0/1), rounded as cards report."""
    tp, fp, fn = int(((p == 1) & (y == 1)).sum()), int(((p == 1) & (y == 0)).sum()), int(((p == 0) & (y == 1)).sum())
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    return {
        "precision": round(prec, 4),
        "recall": round(rec, 4),
        "f1": round(2 * prec * rec / (prec + rec) if prec + rec else 0.0, 4),
        "support": int(y.sum()),
        "n": int(len(y)),
    }


def macro_f1(y: list[str], p: list[str]) -> dict:
    per = {}
    for s in STANCES:
        yy, pp = np.array([v == s for v in y], int), np.array([v == s for v in p], int)
        per[s] = precision_recall_f1(yy, pp)["f1"]
    return {
        "macro_f1": round(float(np.mean(list(per.values()))), 4),
        "per_class_f1": per,
        "n": len(y),
        "accuracy": round(float(np.mean([a == b for a, b in zip(y, p, strict=False)])) if y else 0.0, 4),
    }


def evaluate(df: pl.DataFrame, scores: list[dict]) -> dict:
    """AI-discourse P/R/F1 at 0.5 for each stage and the final score; stance macro-F1 on true AI documents."""
    y = df["ai_discourse"].to_numpy()
    out = {}
    for key, name in (
        ("kw_candidate", "keyword_candidate"),
        ("kw_ai", "keyword_score"),
        ("ft_ai", "fasttext"),
        ("emb_ai", "embedding"),
        ("ai_discourse", "final"),
    ):
        if any(key in s for s in scores):
            pred = np.array([1 if (s.get(key) or 0) >= 0.5 else 0 for s in scores])
            out[name] = precision_recall_f1(y, pred)
    if "source" in df.columns and df["source"].n_unique() > 1:  # how it does on each writing style
        final = np.array([1 if (s.get("ai_discourse") or 0) >= 0.5 else 0 for s in scores])
        src = df["source"].to_numpy()
        out["final_by_source"] = {str(v): precision_recall_f1(y[src == v], final[src == v]) for v in sorted(set(src))}
    ai_rows = [i for i in range(df.height) if y[i] == 1]
    truth = [df["stance"][i] for i in ai_rows]
    for prefix, name in (
        ("stance_", "stance_final"),
        ("ft_stance_", "stance_fasttext"),
        ("emb_stance_", "stance_embedding"),
    ):
        if (
            all(f"{prefix}aligned" in scores[i] and scores[i][f"{prefix}aligned"] is not None for i in ai_rows)
            and ai_rows
        ):
            pred = [max(STANCES, key=lambda s: scores[i][f"{prefix}{s}"]) for i in ai_rows]
            out[name] = macro_f1(truth, pred)
    return out


def sample_negatives(train: pl.DataFrame, p: FitParams) -> pl.DataFrame:
    """Every hard negative (keyword hits but not AI discourse), plus others matched by source to the positives.

    Matching by source stops the model from learning a source's style as a proxy for the label (a wiki of
    alignment essays also holds maths pages); without a `source` column all documents are one source.
    """
    neg = train.filter(pl.col("ai_discourse") == 0)
    hard = neg.filter(pl.col("kw_hits") > 0)
    easy = neg.filter(pl.col("kw_hits") == 0)
    src = pl.col("source") if "source" in train.columns else pl.lit("all")
    pos_per_source = dict(train.filter(pl.col("ai_discourse") == 1).group_by(src.alias("s")).len().iter_rows())
    parts = [hard]
    for source, group in easy.group_by(src.alias("s"), maintain_order=True):
        want = int(p.max_negatives_per_positive * (pos_per_source.get(source[0], 0) + 10))
        parts.append(group.sample(want, seed=p.seed, shuffle=True) if want < group.height else group)
    return pl.concat(parts).drop("kw_hits").sort("id")


def _logreg(x: np.ndarray, y: np.ndarray, seed: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000, C=4.0, class_weight="balanced", random_state=seed).fit(x, y)


def head_candidates(train: pl.DataFrame, counts: dict) -> pl.DataFrame:
    """The documents the embedding head is trained on: keyword hits (what the stage mostly sees) and every AI
    document."""
    return train.filter(pl.Series((counts["strong"] + counts["cs"]) > 0) | (pl.col("ai_discourse") == 1))


def fit_embedding_head(
    cand: pl.DataFrame, out: Path, p: FitParams, embedding_cache: EmbeddingCache | None = None
) -> dict:
    """Logistic heads (AI discourse; stance on the AI documents) on the candidates' embeddings, saved to `out`.
    Returns the windows they were embedded with, which the card carries so tagging embeds the same way."""
    from curation.classify.embedding import embed_documents

    window = {
        "words_per_chunk": p.embedding_words_per_chunk,
        "max_chunks": p.embedding_max_chunks,
        "max_tokens": p.embedding_max_tokens,
    }
    embed = embedding_cache.embed if embedding_cache is not None else embed_documents
    x = embed(cand["text"].to_list(), **window)
    ai_head = _logreg(x, cand["ai_discourse"].to_numpy(), p.seed)
    ai_mask = cand["ai_discourse"].to_numpy() == 1
    st_head = _logreg(x[ai_mask], np.array(cand["stance"].to_list(), dtype=object)[ai_mask].astype(str), p.seed)
    np.savez(
        out,
        ai_coef=ai_head.coef_.astype(np.float32),
        ai_intercept=ai_head.intercept_,
        stance_coef=st_head.coef_.astype(np.float32),
        stance_intercept=st_head.intercept_,
        stance_classes=st_head.classes_,
    )
    return window


def validate(
    model_dir: Path, valid: pl.DataFrame, embedding: bool = True, embedding_cache: EmbeddingCache | None = None
) -> dict:
    """Validation metrics of the default configuration and of the keyword cascade, and what the cascade costs."""
    from curation.classify.config import ClassifyConfig
    from curation.classify.models import load
    from curation.classify.predict import score_texts

    models = load(Path(model_dir))
    emb = {"enabled": embedding}
    detail = {
        name: evaluate(valid, score_texts(valid["text"].to_list(), cfg, models, embedding_cache))
        for name, cfg in (
            ("default", ClassifyConfig(embedding=emb)),
            ("cascade", ClassifyConfig(fasttext={"only_candidates": True}, embedding=emb)),
        )
    }
    detail["cascade_recall_cost"] = round(
        detail["default"]["final"]["recall"] - detail["cascade"]["final"]["recall"], 4
    )
    return {"validation": detail["default"], "validation_detail": detail}


def fit(
    labelled: list[str],
    output: str | Path,
    params: FitParams | None = None,
    progress=print,
    *,
    folds: tuple[pl.DataFrame, pl.DataFrame] | None = None,
    embedding_cache: EmbeddingCache | None = None,
) -> dict:
    """Trains a model set from `labelled` files into `output` and returns its card.

    `folds`: (train, valid) frames (columns as `load_labelled` gives) to use instead of the seeded hash split, for
    cross-validation; the card's data hash is still that of all of `labelled`. `embedding_cache`: reuse document
    vectors across fits (the embedding head and validation)."""
    p = params or FitParams()
    started = time.time()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    df = load_labelled(labelled)
    train, valid = folds if folds is not None else split(df, p.valid_fraction, p.seed)
    if train.filter(pl.col("ai_discourse") == 1).height < 5 or valid.height == 0:
        raise CurationError(
            f"labelled data: too few rows ({df.height}, {df['ai_discourse'].sum()} AI) to train and validate; "
            "label more"
        )
    rng = random.Random(p.seed)

    progress(f"keyword calibration on {train.height} documents")
    lex = Lexicon.load(p.lexicon)
    counts = lex.count_batch(train["text"].to_list())
    feats = np.array([keyword_features({k: int(v[i]) for k, v in counts.items()}) for i in range(train.height)])
    kw = _logreg(feats, train["ai_discourse"].to_numpy(), p.seed)
    calibration = {
        "coef": kw.coef_[0].round(6).tolist(),
        "intercept": round(float(kw.intercept_[0]), 6),
        "lexicon_version": lex.version,
    }

    pos = train.filter(pl.col("ai_discourse") == 1)
    neg = sample_negatives(train.with_columns(pl.Series("kw_hits", counts["strong"] + counts["cs"])), p)
    progress(f"fastText AI-discourse model: {pos.height} AI / {neg.height} other (hard and source-matched negatives)")
    lines = [f"__label__ai {x}" for x in model_inputs(pos["text"].to_list(), max_chars=p.max_chars)]
    lines += [f"__label__other {x}" for x in model_inputs(neg["text"].to_list(), max_chars=p.max_chars)]
    rng.shuffle(lines)
    train_fasttext(lines, output / "ai.ftz", p)
    progress(f"fastText stance model: {pos.height} AI documents")
    lines = [
        f"__label__{s} {x}"
        for x, s in zip(model_inputs(pos["text"].to_list(), max_chars=p.max_chars), pos["stance"], strict=False)
    ]
    rng.shuffle(lines)
    train_fasttext(lines, output / "stance.ftz", p)

    files = {"ai_fasttext": "ai.ftz", "stance_fasttext": "stance.ftz"}
    card_extra = {}
    if p.embedding:
        cand = head_candidates(train, counts)
        progress(f"embedding head on {cand.height} candidate documents")
        files["embedding_head"] = "embed_head.npz"
        card_extra["embedding_window"] = fit_embedding_head(cand, output / files["embedding_head"], p, embedding_cache)

    stance_counts = pos.group_by("stance").len()
    prior = {s: 0.0 for s in STANCES}
    for s, n in stance_counts.iter_rows():
        prior[s] = n / pos.height
    data_hash = fit_data_hash(df)
    card = {
        "id": f"curation-classifier-{data_hash[:12]}",
        "kind": "curation-classifier",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "labels": {"ai_discourse": ["ai", "other"], "stance": list(STANCES)},
        "files": files,
        "keyword_calibration": calibration,
        "stance_prior": {k: round(v, 4) for k, v in prior.items()},
        **(
            {"stance_class_weights": {s: float(p.stance_class_weights.get(s, 1.0)) for s in STANCES}}
            if p.stance_class_weights
            else {}
        ),
        **({"ai_combiner": p.ai_combiner} if p.ai_combiner else {}),
        **card_extra,
        "data": {
            "sources": [str(x) for x in labelled],
            "sha256": data_hash,
            "documents": df.height,
            "ai_documents": int(df["ai_discourse"].sum()),
            "train": train.height,
            "valid": valid.height,
            "fasttext_train_negatives": neg.height,
            "stance_counts": {
                s: int(n) for s, n in df.filter(pl.col("ai_discourse") == 1).group_by("stance").len().iter_rows()
            },
        },
        "params": asdict(p),
        "sizes_bytes": {k: (output / v).stat().st_size for k, v in files.items()},
    }
    (output / "card.json").write_text(json.dumps(card, indent=1))

    progress(f"validating on {valid.height} held-back documents")
    card["metrics"] = validate(output, valid, p.embedding, embedding_cache)
    card["elapsed_s"] = round(time.time() - started, 1)
    (output / "card.json").write_text(json.dumps(card, indent=1))
    return card
