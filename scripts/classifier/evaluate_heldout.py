"""Measures a model set on ../shared/data/heldout (evaluation only: never used for training or tuning).

Labels: scripts/classifier/data/labels/heldout_engineer.jsonl (fast pass) and heldout_part*.jsonl (careful pass,
preferred), by hand following ../shared/labelling/GUIDE.md.
Prints AI-discourse P/R/F1 at 0.5 and stance macro-F1 for the cascade, for fastText on every document, and for a
plain keyword blocklist baseline, and the default's F1 by source; writes scripts/classifier/heldout-eval.json.

`--extra` measures ../shared/data/heldout/docs-extra.parquet instead (the sources added in December 2026, full texts),
writing scripts/classifier/heldout-eval-extra.json. It reports, by source, what the default predicts (the documents it
calls AI discourse, score >= 0.5, and their predicted stances), and scores the documents labelled in
heldout_extra.jsonl (all 187, by hand, README-heldout-extra.md) as for docs.parquet. heldout_extra.jsonl is read only
with `--extra`, so the docs.parquet measurement is unchanged; no training script reads it.

    python scripts/classifier/evaluate_heldout.py [--model default] [--extra]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[2]  # the repository
HERE = Path(__file__).resolve().parent  # the classifier workspace: labels, written documents, combiner, heldout scores
HELDOUT = ROOT.parent / "shared" / "data" / "heldout" / "docs.parquet"
HELDOUT_EXTRA = HELDOUT.with_name("docs-extra.parquet")
BLOCKLIST = (
    r"(?i)\b(AI|AGI|artificial intelligence|robots?|androids?|machine learning|neural networks?|superintelligence|"
    r"chatbots?)\b"
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    ap.add_argument("--extra", action="store_true", help="measure heldout/docs-extra.parquet (December sources)")
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
    if args.extra:  # the docs-extra labels (measurement only); docs.parquet is scored without them
        files.append(HERE / "data" / "labels" / "heldout_extra.jsonl")
    schema = {"id": pl.Utf8, "ai_discourse": pl.Int8, "stance": pl.Utf8}
    labels = pl.concat([pl.read_ndjson(p).select(list(schema)).cast(schema) for p in files if p.is_file()])
    labels = labels.unique("id", keep="last", maintain_order=True)
    if args.extra:
        return predict_extra(args.model, labels)
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
    for src, r in report["default"].get("final_by_source", {}).items():
        pr = f"P {r['precision']:.3f} R {r['recall']:.3f}"
        print(f"  {src:20s} AI F1 {r['f1']:.3f} ({pr}) on {r['n']}, {r['support']} AI")
    print(f"-> {out}")


def predict_extra(model: str, labels: pl.DataFrame) -> None:
    """docs-extra: the default's predictions by source, and metrics for whatever documents have labels."""
    from curation.classify.config import ClassifyConfig
    from curation.classify.fit import evaluate
    from curation.classify.models import resolve
    from curation.classify.predict import score_texts
    from curation.classify.steps.base import STANCES

    docs = pl.read_parquet(HELDOUT_EXTRA)
    models = resolve(model)
    scores = score_texts(docs["text"].to_list(), ClassifyConfig(model=model), models)
    ai = [(s.get("ai_discourse") or 0) >= 0.5 for s in scores]
    stance = [
        max(STANCES, key=lambda k: s.get(f"stance_{k}") or 0) if a else None for s, a in zip(scores, ai, strict=True)
    ]
    pred = docs.select("id", "source").with_columns(pl.Series("pred_ai", ai), pl.Series("pred_stance", stance))
    by_source = {}
    for (src,), g in pred.group_by("source", maintain_order=True):
        by_source[src] = {
            "documents": g.height,
            "predicted_ai": int(g["pred_ai"].sum()),
            **{f"predicted_{k}": int((g["pred_stance"] == k).sum()) for k in STANCES},
        }
    by_source = dict(sorted(by_source.items()))
    labelled = docs.join(labels, on="id", how="inner")
    report = {"model": models.card.get("id"), "documents": docs.height, "labelled": labelled.height}
    report["predicted_by_source"] = by_source
    if labelled.height:
        by_id = dict(zip(docs["id"], scores, strict=True))
        report["default"] = evaluate(labelled, [by_id[i] for i in labelled["id"]])
    out = HERE / "heldout-eval-extra.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"{docs.height} docs-extra documents, {labelled.height} with labels; model {report['model']}")
    print(f"{'source':15s} {'docs':>5s} {'pred AI':>8s} " + " ".join(f"{k:>10s}" for k in STANCES))
    for src, r in by_source.items():
        print(
            f"{src:15s} {r['documents']:5d} {r['predicted_ai']:8d} "
            + " ".join(f"{r[f'predicted_{k}']:10d}" for k in STANCES)
        )
    if labelled.height:
        r = report["default"]
        print(f"labelled: AI F1 {r['final']['f1']:.3f} (P {r['final']['precision']:.3f} R {r['final']['recall']:.3f})")
        st = r.get("stance_final", {})
        print(f"stance macro-F1 {st.get('macro_f1', float('nan')):.3f} on {st.get('n', 0)}: {st.get('per_class_f1')}")
        for src, m in r.get("final_by_source", {}).items():
            pr = f"P {m['precision']:.3f} R {m['recall']:.3f}"
            print(f"  {src:15s} AI F1 {m['f1']:.3f} ({pr}) on {m['n']}, {m['support']} AI")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
