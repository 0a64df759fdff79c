"""Trains the default model set shipped in curation/classify/models/default (rerun: `make models`).

Training data (all real text from ../shared/data/corpus, never heldout/):
  * every corpus document the candidate rule below selects was labelled by hand following
    ../shared/labelling/GUIDE.md: scripts/classifier/data/labels/corpus_engineer.jsonl covers all of them, and labels
    in scripts/classifier/data/labels/corpus_part*.jsonl (a second, slower pass reading longer excerpts) override it
    where present;
  * every other corpus document is a negative: it has fewer than two AI terms (Wikipedia) or no AI term at all
    and no alignment domain tag (Arbital), so by the guide it cannot have AI as a substantial subject;
  * corpus documents outside that rule read and labelled by hand anyway
    (scripts/classifier/data/labels/corpus_extra.jsonl: Wikipedia articles with at most one AI term, about fiction,
    machines and people, mostly hard negatives);
  * the sources added to ../shared/data/corpus in December 2026 (aisafetyatlas, pauseai, distill, gutenberg, gwern,
    issarice, vitalik: every document; scp: 194 keyword-selected and seeded random documents), labelled by hand in
    scripts/classifier/data/labels/corpus_dec_*.jsonl (README-dec.md); their other documents are negatives;
  * the demo corpus written by this project (scripts/write_demo_corpus.py), with its own labels;
  * documents written for training by this project (scripts/classifier/data/written/*.jsonl, labelled as
    written): encyclopedic articles on fiction with machine characters, AI people and techniques, hard negatives,
    and essays, wiki pages, stories, abstracts and forum threads that separate the three stances; Wikipedia-style
    articles on AI fiction, people and techniques with look-alike hard negatives (encyclopedic2.jsonl); Arbital- and
    blog-style alignment posts across the three stances with decision-theory hard negatives (forum.jsonl).

Stance class weights (aligned x1.5, misaligned x1.5): the models under-predict both on real text, whose style the
written documents teach them to read as "neutral". Chosen by 5-fold cross-validation on the labelled real corpus
documents (scripts/classifier/crossval_real.py): aligned x2, misaligned x1.5 on two earlier versions of the training
data (pooled stance macro-F1 0.512 -> 0.543 and 0.523 -> 0.554); with the December 2026 labels the grid's best is
aligned x1.5, misaligned x1.5 (0.531 at x2/x1.5 -> 0.548 on 19,040 real documents, 576 AI; docs/models.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[2]  # the repository
HERE = Path(__file__).resolve().parent  # the classifier workspace: labels, written documents, combiner, heldout scores
STANCE_CLASS_WEIGHTS = {"aligned": 1.5, "misaligned": 1.5, "neutral": 1.0}
# the embedding head's windows (the card's `embedding_window`): four of 180 words, MiniLM's 256 tokens. One window of
# 100 words (128 tokens) is 5-10x cheaper but lost stance macro-F1 on the real-text CV (0.545 -> 0.51; docs/models.md)
EMBEDDING_WINDOW = {"embedding_words_per_chunk": 180, "embedding_max_chunks": 4, "embedding_max_tokens": None}
COMBINER = HERE / "default_combiner.json"  # written by scripts/classifier/crossval_real.py --write-combiner
SHARED = ROOT.parent / "shared" / "data" / "corpus"
LABELS = HERE / "data" / "labels"
STRICT = (
    r"(?i)\b(artificial intelligence|AI|AGI|robot\w*|androids?|machine learning|neural net\w*|superintelligen\w*|"
    r"chatbots?|language models?|cyborgs?|automat(a|on|ons)|deep learning|expert systems?|turing test|"
    r"intelligent agents?|"
    r"cybernetic\w*|thinking machines?|computer chess|GPT-?\d?|reinforcement learning|HAL 9000|skynet)\b"
)
BROAD = STRICT[:-3] + r"|alignment|corrigib\w*|paperclip|utility functions?|agents?|optimi[sz]er)\b"
ALIGNMENT_DOMAINS = ["domain:MIRI", "domain:PaulChristiano", "domain:value_alignment"]


def candidates(df: pl.DataFrame) -> pl.Series:
    """The documents that were labelled by hand (the rest are negatives by construction)."""
    ks, kb = pl.col("text").str.count_matches(STRICT), pl.col("text").str.count_matches(BROAD)
    ali = pl.col("tags").list.eval(pl.element().is_in(ALIGNMENT_DOMAINS)).list.any()
    return df.select(
        (pl.col("source") == "turntrout")
        | ((pl.col("source") == "arbital") & ((kb > 0) | ali))
        | (pl.col("source").str.starts_with("wikipedia") & (ks >= 2))
    ).to_series()


def labelled_frame() -> pl.DataFrame:
    corpus = pl.read_parquet(str(SHARED / "*" / "*.parquet"))
    labels = {}
    for path in [
        LABELS / "corpus_engineer.jsonl",
        *sorted(LABELS.glob("corpus_part*.jsonl")),
        LABELS / "corpus_extra.jsonl",
        # the sources added to ../shared/data/corpus in December 2026 (README-dec.md); their unlabelled documents
        # (330 of scp's 524) stay negatives like every other document outside the candidate rule
        *sorted(LABELS.glob("corpus_dec_*.jsonl")),
    ]:
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                labels[row["id"]] = (int(row["ai_discourse"]), row.get("stance") if int(row["ai_discourse"]) else None)
    cand = corpus.filter(candidates(corpus))
    missing = set(cand["id"]) - set(labels)
    if missing:
        raise SystemExit(
            f"{len(missing)} candidate documents have no label (e.g. {sorted(missing)[:3]}); label them first"
        )
    lab = pl.DataFrame(
        {
            "id": list(labels),
            "ai_discourse": [v[0] for v in labels.values()],
            "stance": [v[1] for v in labels.values()],
        },
        schema={"id": pl.Utf8, "ai_discourse": pl.Int8, "stance": pl.Utf8},
    )
    corpus = (
        corpus.select("id", "text").join(lab, on="id", how="left").with_columns(pl.col("ai_discourse").fill_null(0))
    )
    demo = pl.concat([pl.read_ndjson(p) for p in sorted((ROOT / "curate" / "data" / "demo_corpus").glob("*.jsonl"))])
    demo = demo.select(
        "id",
        "text",
        pl.col("label_ai_discourse").cast(pl.Int8).alias("ai_discourse"),
        pl.col("label_stance").cast(pl.Utf8).alias("stance"),
    )
    written = pl.concat(
        [
            pl.read_ndjson(p).select("id", "text", "ai_discourse", "stance")
            for p in sorted((HERE / "data" / "written").glob("*.jsonl"))
        ]
    )
    written = written.select("id", "text", pl.col("ai_discourse").cast(pl.Int8), pl.col("stance").cast(pl.Utf8))
    both = pl.concat([corpus.select("id", "text", "ai_discourse", "stance"), demo, written])
    return both.with_columns(
        pl.when(pl.col("id").str.starts_with("demo-"))
        .then(pl.lit("demo"))
        .when(pl.col("id").str.starts_with("written-"))
        .then(pl.lit("written"))
        .otherwise(pl.col("id").str.split("/").list.first())
        .alias("source")
    )


def retrain_head(df: pl.DataFrame, out: Path, p) -> None:
    """A new embedding head (and combiner) for a model set whose fastText models stay byte-identical: the same
    training split and candidates `curate fit` uses, the same head recipe (`fit_embedding_head`)."""
    from curation.classify.fit import fit_data_hash, fit_embedding_head, head_candidates, split, validate
    from curation.classify.lexicon import Lexicon

    card = json.loads((out / "card.json").read_text())
    if card["data"]["sha256"] != fit_data_hash(df):
        raise SystemExit(f"{out}: its card was trained on other data; retrain the whole set instead")
    train, valid = split(df, p.valid_fraction, p.seed)
    counts = Lexicon.load(p.lexicon).count_batch(train["text"].to_list())
    card["embedding_window"] = fit_embedding_head(
        head_candidates(train, counts), out / card["files"]["embedding_head"], p
    )
    card["params"].update({k: getattr(p, k) for k in EMBEDDING_WINDOW})
    card["ai_combiner"] = p.ai_combiner
    card["sizes_bytes"]["embedding_head"] = (out / card["files"]["embedding_head"]).stat().st_size
    (out / "card.json").write_text(json.dumps(card, indent=1))
    card["metrics"] = validate(out, valid, True)
    (out / "card.json").write_text(json.dumps(card, indent=1))
    print(json.dumps(card["metrics"]["validation"], indent=1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--output",
        default=str(ROOT / "build" / "models" / "candidate"),
        help="where the retrained set goes (build/ is not committed: an experiment never grows git history)",
    )
    ap.add_argument(
        "--promote",
        action="store_true",
        help="write into curation/classify/models/default instead: only for a set that becomes the default "
        "(docs/models.md)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--embedding-head-only",
        action="store_true",
        help="keep the model set's fastText models and keyword calibration; retrain only the embedding head "
        "(EMBEDDING_WINDOW) and put the current combiner in its card",
    )
    args = ap.parse_args()
    if args.promote:
        args.output = str(ROOT / "curation" / "classify" / "models" / "default")
    from curation.classify.combiner import AICombiner
    from curation.classify.fit import FitParams, fit

    df = labelled_frame()
    print(
        f"{df.height} labelled documents, {int(df['ai_discourse'].sum())} AI discourse;",
        dict(df.filter(pl.col("ai_discourse") == 1).group_by("stance").len().iter_rows()),
    )
    tmp = ROOT / "build" / "labelled.parquet"
    tmp.parent.mkdir(exist_ok=True)
    df.write_parquet(tmp)
    out = Path(args.output)
    params = FitParams(
        seed=args.seed,
        stance_class_weights=STANCE_CLASS_WEIGHTS,
        ai_combiner=AICombiner.load(COMBINER).to_dict(),
        **EMBEDDING_WINDOW,
    )
    if args.embedding_head_only:
        return retrain_head(df, out, params)
    if out.exists():
        shutil.rmtree(out)
    card = fit([str(tmp)], out, params, progress=print)
    card["data"]["sources"] = [
        "../shared/data/corpus (labels: scripts/classifier/data/labels/)",
        "curate/data/demo_corpus",
        "scripts/classifier/data/written",
    ]
    (out / "card.json").write_text(json.dumps(card, indent=1))
    print(json.dumps(card["metrics"]["validation"], indent=1))


if __name__ == "__main__":
    main()
