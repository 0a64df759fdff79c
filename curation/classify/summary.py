"""summary.json of a classify run, computed from the attribute files themselves (so it is right after a resume)."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

import numpy as np
import polars as pl

from curation.classify.steps.base import STANCES
from curation.core.shards import attribute_path

SUMMARY = "summary.json"
BINS = 20


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in (
        "alignment-pretraining",
        "datatrove",
        "fasttext-numpy2-wheel",
        "sentence-transformers",
        "torch",
        "pyarrow",
        "polars",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def histogram(values: np.ndarray) -> dict:
    counts, edges = np.histogram(values, bins=BINS, range=(0.0, 1.0))
    return {"edges": [round(float(e), 3) for e in edges], "counts": counts.tolist()}


def write_summary(output: Path, rels: list[str], cfg, models, elapsed: float, errors: list[str]) -> dict:
    files = [output / attribute_path(r) for r in rels if (output / attribute_path(r)).is_file()]
    summary = {
        "shards": len(rels),
        "shards_done": len(files),
        "shards_failed": len(errors),
        "errors": errors,
        "model": {
            "name": models.name,
            "path": str(models.path),
            "id": models.card.get("id"),
            "created": models.card.get("created"),
            "validation": models.card.get("metrics", {}).get("validation"),
        },
        "config": cfg.model_dump(),
        "seed": cfg.seed,
        "versions": versions(),
        "elapsed_s": round(elapsed, 3),
    }
    if files:
        df = (
            pl.scan_parquet([str(f) for f in files])
            .select("id", "n_bytes", "error", "ai_discourse", *[f"stance_{s}" for s in STANCES], "ai_stage")
            .collect()
        )
        scored = df.filter(pl.col("error").is_null() & pl.col("ai_discourse").is_not_null())
        flagged = scored.filter(pl.col("ai_discourse") >= 0.5)
        stance_argmax = flagged.select(pl.concat_list([f"stance_{s}" for s in STANCES]).list.arg_max().alias("k"))["k"]
        ids = df.group_by("id").len().filter(pl.col("len") > 1)
        summary.update(
            {
                "docs": df.height,
                # mix joins attributes on id: a repeated id is reported here and refused by `curate mix build`
                "duplicate_ids": {
                    "ids": ids.height,
                    "rows": int(ids["len"].sum()) if ids.height else 0,
                    "examples": sorted(ids["id"].head(5).to_list()),
                },
                "bytes": int(df["n_bytes"].sum()),
                "docs_with_error": df.height - scored.height,
                "flagged_at_0.5": flagged.height,
                "share_flagged_at_0.5": round(flagged.height / max(scored.height, 1), 6),
                "bytes_flagged_at_0.5": int(flagged["n_bytes"].sum()),
                "stance_of_flagged": {s: int((stance_argmax == i).sum()) for i, s in enumerate(STANCES)},
                "stage_counts": dict(scored.group_by("ai_stage").len().iter_rows()),
                "histograms": {
                    "ai_discourse": histogram(scored["ai_discourse"].to_numpy()),
                    **{f"stance_{s}_of_flagged": histogram(flagged[f"stance_{s}"].to_numpy()) for s in STANCES},
                },
            }
        )
    (output / SUMMARY).write_text(json.dumps(summary, indent=1))
    return summary


def load_summary(path: str | Path) -> dict:
    from curation.core.errors import CurationError

    p = Path(path)
    p = p / SUMMARY if p.is_dir() else p
    if not p.is_file():
        raise CurationError(f"{path}: no {SUMMARY} here; run `curate classify CORPUS --output {path}` first")
    return json.loads(p.read_text())
