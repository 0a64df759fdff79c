"""K-fold cross-validation of `curate fit` on the labelled real corpus documents (never heldout/).

Why: the fit's own validation split mixes in documents written for training, which are easy; this measures what the
model does on real text it has not seen. Each fold trains the production `fit` on the other folds plus every written
and demo document, and validates on the fold's real documents cut to 4,000 characters (the length heldout/ uses).
It then prints the pooled metrics; for the pooled stance probabilities, macro-F1 under a grid of stance class
weights (how the default's `stance_class_weights` were chosen); and the learned AI combiner
(curation/classify/combiner.py): its F1 when each fold's combiner is fitted on the other folds' out-of-fold scores,
and, with --write-combiner, the combiner fitted on all of them (how scripts/classifier/default_combiner.json is made).
MiniLM embeddings are cached in build/cv/ (`fit(..., folds=, embedding_cache=)`: no patched internals); the
out-of-fold scores are kept there too (oof-TAG.pkl), to try other combinations without refitting the folds.

    python scripts/classifier/crossval_real.py [--folds 5] [--tag NAME] [--reuse-models] [--write-combiner PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[2]  # the repository
sys.path.insert(0, str(Path(__file__).resolve().parent))
WORK = ROOT / "build" / "cv"


def cut(text: str, n: int = 4000) -> str:
    """Heldout's truncation: the first n characters, at the last whitespace before n."""
    if len(text) <= n:
        return text
    j = text.rfind(" ", 0, n)
    return text[: j if j > 0 else n]


def real_folds(df: pl.DataFrame, folds: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Which rows are real corpus text, and each one's fold (a hash of the id; -1 for written and demo rows)."""
    real = ~df["source"].is_in(["demo", "written"]).to_numpy()
    fold = np.array([int(hashlib.sha256(i.encode()).hexdigest()[:8], 16) % folds for i in df["id"]])
    fold[~real] = -1
    return real, fold


def embedding_cache():
    """The MiniLM vectors of earlier runs (build/cv/embeddings.pkl), shared with crossval_stance.py."""
    from curation.classify.embedding import EmbeddingCache

    WORK.mkdir(parents=True, exist_ok=True)
    return EmbeddingCache(WORK / "embeddings.pkl")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--tag", default="cv")
    ap.add_argument(
        "--reuse-models", action="store_true", help="score with fold models already fitted on the same data"
    )
    ap.add_argument("--write-combiner", help="write the AI combiner fitted on all out-of-fold scores here (JSON)")
    args = ap.parse_args()
    from train_default_models import STANCE_CLASS_WEIGHTS, labelled_frame

    import curation.classify.fit as cf
    from curation.classify.combiner import fit_combiner
    from curation.classify.config import ClassifyConfig
    from curation.classify.models import load
    from curation.classify.predict import score_texts
    from curation.classify.steps.base import STANCES

    cache = embedding_cache()
    df = labelled_frame()
    data = WORK / "labelled.parquet"
    df.write_parquet(data)
    real, fold = real_folds(df, args.folds)
    valids, scores = [], []
    for k in range(args.folds):
        valid = df.filter(pl.Series(fold == k)).with_columns(pl.col("text").map_elements(cut, return_dtype=pl.Utf8))
        train = df.filter(pl.Series(fold != k))
        out = WORK / f"model-{args.tag}-{k}"
        if not (
            args.reuse_models
            and (out / "card.json").is_file()
            and json.loads((out / "card.json").read_text())["data"]["sha256"] == cf.fit_data_hash(df)
        ):
            cf.fit(
                [str(data)],
                out,
                cf.FitParams(stance_class_weights=STANCE_CLASS_WEIGHTS),
                progress=lambda *a: None,
                folds=(train, valid),  # the fold instead of the hash split
                embedding_cache=cache,
            )
        valids.append(valid)
        scores += score_texts(valid["text"].to_list(), ClassifyConfig(), load(out), embedding_cache=cache)
        cache.save()
        v = cf.evaluate(valid, scores[-valid.height :])
        print(
            f"fold {k}: AI F1 {v['final']['f1']:.3f}  "
            f"stance macro-F1 {v.get('stance_final', {}).get('macro_f1', float('nan')):.3f}",
            flush=True,
        )
    valid = pl.concat(valids)
    # the out-of-fold attribute dicts, for trying other combinations without refitting the folds
    (WORK / f"oof-{args.tag}.pkl").write_bytes(pickle.dumps({"ids": valid["id"].to_list(), "scores": scores}))
    pooled = cf.evaluate(valid, scores)
    print(
        json.dumps(
            {
                k: pooled[k]
                for k in ("final", "fasttext", "embedding", "final_by_source", "stance_final")
                if k in pooled
            },
            indent=1,
        )
    )
    # the stance grid: undo the weights the folds were fitted with, then apply each candidate
    ai = np.flatnonzero(valid["ai_discourse"].to_numpy() == 1)
    truth = [valid["stance"][int(i)] for i in ai]
    base = np.array([[scores[i][f"stance_{s}"] / STANCE_CLASS_WEIGHTS[s] for s in STANCES] for i in ai])
    grid = sorted(
        (
            (cf.macro_f1(truth, [STANCES[j] for j in (base * [wa, wm, 1.0]).argmax(1)])["macro_f1"], wa, wm)
            for wa in (1, 1.5, 2, 3)
            for wm in (1, 1.25, 1.5, 2)
        ),
        reverse=True,
    )
    print(
        "stance macro-F1 by class weights (aligned, misaligned; neutral 1):",
        " ".join(f"{f:.3f}@{a},{m}" for f, a, m in grid[:8]),
    )
    # the AI combiner: each fold's documents scored by a combiner fitted on the other folds' out-of-fold scores
    vfold = np.concatenate([np.full(v.height, k) for k, v in enumerate(valids)])
    y = valid["ai_discourse"].to_numpy()
    stacked = [dict(s) for s in scores]
    for k in range(args.folds):
        comb = fit_combiner([s for s, f in zip(scores, vfold, strict=False) if f != k], y[vfold != k])
        for i in np.flatnonzero(vfold == k):
            stacked[i]["ai_discourse"] = (
                comb.score(scores[i]) if comb.score(scores[i]) is not None else scores[i]["ai_discourse"]
            )
    ev = cf.evaluate(valid, stacked)
    print(
        "AI combiner (nested by fold):",
        json.dumps({"final": ev["final"], "by_source": {k: v["f1"] for k, v in ev["final_by_source"].items()}}),
    )
    if args.write_combiner:
        comb = fit_combiner(
            scores,
            y,
            fitted_on=f"out-of-fold scores of {valid.height} real corpus documents "
            f"({int(y.sum())} AI), {args.folds}-fold scripts/classifier/crossval_real.py, "
            f"data {cf.fit_data_hash(df)[:12]}",
        )
        Path(args.write_combiner).write_text(json.dumps(comb.to_dict(), indent=1) + "\n")
        print(f"wrote {args.write_combiner}: {comb.to_dict()}")


if __name__ == "__main__":
    main()
