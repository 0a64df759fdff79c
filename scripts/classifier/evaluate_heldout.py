"""Measures a model set on ../shared/data/heldout (evaluation only: never used for training or tuning).

Labels: scripts/classifier/data/labels/heldout_engineer.jsonl (fast pass) and heldout_part*.jsonl (careful pass,
preferred), by hand following ../shared/labelling/GUIDE.md.
Prints AI-discourse P/R/F1 at 0.5 and stance macro-F1 for the cascade, for fastText on every document, and for a
plain keyword blocklist baseline; writes scripts/classifier/heldout-eval.json.

    python scripts/classifier/evaluate_heldout.py [--model default]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[2]  # the repository
HERE = Path(__file__).resolve().parent  # the classifier workspace: labels, written documents, combiner, heldout scores
HELDOUT = ROOT.parent / "shared" / "data" / "heldout" / "docs.parquet"
BLOCKLIST = (
    r"(?i)\b(AI|AGI|artificial intelligence|robots?|androids?|machine learning|neural networks?|superintelligence|"
    r"chatbots?)\b"
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    args = ap.parse_args()
    from curation.classify.config import ClassifyConfig
    from curation.classify.fit import evaluate, precision_recall_f1
    from curation.classify.models import resolve
    from curation.classify.predict import score_texts

    # a careful pass (heldout_part*.jsonl) overrides the fast one (heldout_engineer.jsonl) where both exist
    files = [
        HERE / "data" / "labels" / "heldout_engineer.jsonl",
        *sorted((HERE / "data" / "labels").glob("heldout_part*.jsonl")),
    ]
    schema = {"id": pl.Utf8, "ai_discourse": pl.Int8, "stance": pl.Utf8}
    labels = pl.concat([pl.read_ndjson(p).select(list(schema)).cast(schema) for p in files if p.is_file()])
    labels = labels.unique("id", keep="last", maintain_order=True)
    docs = pl.read_parquet(HELDOUT).join(labels, on="id", how="inner")
    print(
        f"{docs.height} labelled heldout documents, {int(docs['ai_discourse'].sum())} AI;",
        dict(docs.filter(pl.col("ai_discourse") == 1).group_by("stance").len().iter_rows()),
    )
    models = resolve(args.model)
    y = docs["ai_discourse"].to_numpy()
    report = {"model": models.card.get("id"), "documents": docs.height, "ai_documents": int(y.sum())}
    for n in (1, 3):
        hits = docs["text"].str.count_matches(BLOCKLIST).to_numpy()
        report[f"blocklist_at_{n}"] = precision_recall_f1(y, (hits >= n).astype(int))
    for name, cfg in (
        ("default", ClassifyConfig(model=args.model)),
        ("default_ungated", ClassifyConfig(model=args.model, embedding={"min_combined": None})),
        ("cascade", ClassifyConfig(model=args.model, fasttext={"only_candidates": True})),
        ("default_no_embedding", ClassifyConfig(model=args.model, embedding={"enabled": False})),
    ):
        report[name] = evaluate(docs, score_texts(docs["text"].to_list(), cfg, models))
    out = HERE / "heldout-eval.json"
    out.write_text(json.dumps(report, indent=1))
    for name in ("blocklist_at_1", "blocklist_at_3"):
        r = report[name]
        print(f"{name:22s} AI F1 {r['f1']:.3f} (P {r['precision']:.3f} R {r['recall']:.3f})")
    for name in ("default", "default_ungated", "cascade", "default_no_embedding"):
        r = report[name]
        st = r.get("stance_final", {})
        print(
            f"{name:22s} AI F1 {r['final']['f1']:.3f} (P {r['final']['precision']:.3f} R {r['final']['recall']:.3f})  "
            f"stance macro-F1 {st.get('macro_f1', float('nan')):.3f} on {st.get('n', 0)}"
        )
    print(f"-> {out}")


if __name__ == "__main__":
    main()
