"""The attribute contract of `curate classify` (docs/data-contract.md), checked on real documents."""

from __future__ import annotations

import json

import polars as pl
import pyarrow.parquet as pq
import pytest
from conftest import curate, write_corpus

from curation.core.shards import attribute_path, list_shards

LAYOUT = {"a/part-0.parquet": slice(0, 25), "a/part-1.jsonl": slice(25, 40), "b/part-2.jsonl.gz": slice(40, 60)}


@pytest.fixture(scope="module")
def run(tmp_path_factory, mixed_docs):
    root = tmp_path_factory.mktemp("corpus")
    shards = write_corpus(root, mixed_docs, LAYOUT)
    out = root.parent / (root.name + "-attrs")
    proc = curate("classify", root, "--output", out, "--no-progress", "--cascade", check=True)
    return root, out, shards, proc


def test_attribute_path_mirrors_shard():
    assert attribute_path("x/y/part-1.jsonl.gz") == "x/y/part-1.parquet"
    assert attribute_path("part.parquet") == "part.parquet"


def test_list_shards_skips_private_dirs(tmp_path):
    (tmp_path / "_errors").mkdir()
    (tmp_path / "_errors" / "x.jsonl").write_text("{}")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "s.jsonl").write_text("{}")
    (tmp_path / "notes.txt").write_text("")
    root, rels = list_shards(str(tmp_path))
    assert rels == ["d/s.jsonl"]
    assert list_shards(str(tmp_path / "d" / "*.jsonl"))[1] == ["s.jsonl"]


def test_one_row_per_document_in_order(run):
    root, out, shards, _ = run
    for rel, docs in shards.items():
        attrs = pl.read_parquet(out / attribute_path(rel))
        assert attrs["id"].to_list() == [str(i) for i in docs["id"]]
        assert attrs["n_bytes"].to_list() == [len(t.encode()) for t in docs["text"]]


def test_columns_and_ranges(run):
    _, out, shards, _ = run
    attrs = pl.concat([pl.read_parquet(out / attribute_path(r)) for r in shards])
    for col in (
        "id",
        "ai_discourse",
        "stance_aligned",
        "stance_misaligned",
        "stance_neutral",
        "kw_strong",
        "kw_candidate",
        "ai_stage",
    ):
        assert col in attrs.columns
    assert attrs.schema["id"] == pl.Utf8
    assert attrs["ai_discourse"].is_between(0, 1).all()
    total = attrs["stance_aligned"] + attrs["stance_misaligned"] + attrs["stance_neutral"]
    assert ((total - 1).abs() < 1e-4).all()
    # documents the cascade skipped (no keyword hit, a prefix the screen did not pass) still carry scores, from the
    # stages that ran; the screen passes some non-candidates on to fastText
    skipped = attrs.filter(pl.col("ft_ai").is_null())
    assert skipped.height and not skipped["kw_candidate"].any() and skipped["ai_discourse"].is_not_null().all()


def test_scores_separate_ai_from_other_text(run, mixed_docs):
    _, out, shards, _ = run
    attrs = pl.concat([pl.read_parquet(out / attribute_path(r)) for r in shards]).join(
        mixed_docs.select(pl.col("id").cast(pl.Utf8), "source"), on="id"
    )
    by = dict(attrs.group_by("source").agg(pl.col("ai_discourse").mean()).iter_rows())
    assert by["turntrout"] > 0.5 > by["wikipedia-recent"]


def test_summary_and_stats(run):
    _, out, shards, proc = run
    s = json.loads((out / "summary.json").read_text())
    assert s["docs"] == sum(d.height for d in shards.values())
    assert s["shards_done"] == s["shards"] == 3 and s["shards_failed"] == 0
    assert 0 < s["share_flagged_at_0.5"] < 1
    assert sum(s["histograms"]["ai_discourse"]["counts"]) == s["docs"]
    assert s["model"]["id"].startswith("curation-classifier-") and "datatrove" in s["versions"] and "seed" in s
    meta = pq.ParquetFile(out / attribute_path("a/part-0.parquet")).schema_arrow.metadata
    assert json.loads(meta[b"curation.run"])["seed"] == 0
    shown = curate("stats", out, check=True).stdout
    assert "AI discourse at 0.5" in shown and str(s["docs"]) in shown.replace(",", "")
    assert json.loads(curate("stats", out, "--json", check=True).stdout)["docs"] == s["docs"]


def test_rerun_skips_finished_shards(run):
    root, out, shards, _ = run
    before = {r: (out / attribute_path(r)).stat().st_mtime_ns for r in shards}
    curate("classify", root, "--output", out, "--no-progress", "--cascade", check=True)
    assert before == {r: (out / attribute_path(r)).stat().st_mtime_ns for r in shards}


def test_models_lists_shipped_default():
    models = json.loads(curate("models", "--json", check=True).stdout)
    default = next(m for m in models if m["name"] == "default")
    assert default["origin"] == "shipped" and default["labels"]["stance"] == ["aligned", "misaligned", "neutral"]
    assert all(__import__("os").path.isfile(p) for p in default["files"].values())
