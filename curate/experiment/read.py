"""What a run read: the tokenised stream's documents (`read.parquet` of the tokens node) joined with the corpus's
classifier attributes, so a result can say how much AI discourse each condition saw. A filter that removes nothing
from what a run reads tests nothing, and the share read is the dose that matters, not the mix's share."""

from __future__ import annotations

from pathlib import Path

AI_COLUMN = "ai_discourse"  # the classifier's attribute, as the `filtered` preset's filter reads it
AI_THRESHOLD = 0.5  # the same cut as that filter (`ai_discourse < 0.5` kept)


def read_summary(mix_dir: Path, tokens_dir: Path) -> dict | None:
    """Tokens read per mix source and, where a source has classifier attributes, the tokens of documents scored as AI
    discourse (>= AI_THRESHOLD). None when the tokens were written before read records existed."""
    import polars as pl

    from curation.mix.manifest import load_manifest
    from curation.mix.sources import resolve_source

    path = Path(tokens_dir) / "read.parquet"
    if not path.is_file():
        return None
    read = pl.read_parquet(path)
    mf = load_manifest(Path(mix_dir) / "manifest.yaml")
    total = int(read["tokens"].sum())
    by_source = {
        str(r["source"]): {"documents": int(r["documents"]), "tokens": int(r["tokens"])}
        for r in read.group_by("source")
        .agg(pl.len().alias("documents"), pl.col("tokens").sum())
        .sort("source")
        .iter_rows(named=True)
    }
    classified = ai = 0
    for i, src in enumerate(mf.manifest.sources):
        if not src.attributes or src.name not in by_source:
            continue
        rs = resolve_source(mf, i)
        if AI_COLUMN not in rs.attr_columns:
            continue
        attrs = pl.concat(
            [pl.read_parquet(s.attributes, columns=["id", AI_COLUMN]) for s in rs.shards if s.attributes]
        ).unique("id")
        mine = read.filter(pl.col("source") == src.name).join(attrs, on="id", how="left")
        scored = mine.filter(pl.col(AI_COLUMN).is_not_null())
        n_ai = int(scored.filter(pl.col(AI_COLUMN) >= AI_THRESHOLD)["tokens"].sum())
        by_source[src.name]["ai_discourse_tokens"] = n_ai
        classified += int(scored["tokens"].sum())
        ai += n_ai
    return {
        "tokens": total,
        "sources": by_source,
        "classified_tokens": classified,  # tokens of documents with a classifier score (synthetic sources have none)
        "ai_discourse_tokens": ai,
        "ai_discourse_share": round(ai / total, 6) if total else 0.0,
        "ai_discourse_threshold": AI_THRESHOLD,
    }
