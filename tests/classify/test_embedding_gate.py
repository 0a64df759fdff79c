"""Where the embedding stage runs (the gate that decides classify's speed), its bf16 encoder, and document progress."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from conftest import REPO, curate, shared_corpus, write_corpus


def _texts() -> list[str]:
    """16 real documents: alignment posts (AI discourse) and Wikipedia articles (mostly not)."""
    return pl.concat([shared_corpus("turntrout").head(6), shared_corpus("wikipedia-recent").head(10)])["text"].to_list()


def test_embedding_runs_only_where_the_cheaper_stages_leave_doubt():
    from curation.classify.combiner import AICombiner
    from curation.classify.config import ClassifyConfig
    from curation.classify.models import resolve
    from curation.classify.predict import score_texts

    texts, models = _texts(), resolve("default")
    comb = AICombiner.from_dict(models.ai_combiner)
    window = dict(max_chunks=1, max_tokens=64)  # short windows: the test checks the gate, not the head
    open_gate = score_texts(texts, ClassifyConfig(embedding={**window, "min_combined": None}), models)
    p0 = [comb.score_without(a, "emb_ai") for a in open_gate]
    embedded = sorted(p for p, a in zip(p0, open_gate, strict=False) if a.get("emb_ai") is not None)
    cut = (embedded[0] + embedded[-1]) / 2  # between the least and the most certain of the documents embedded
    rows = score_texts(texts, ClassifyConfig(embedding={**window, "min_combined": cut}), models)
    for a, b, p in zip(rows, open_gate, p0, strict=False):
        assert (a.get("emb_ai") is not None) == (b.get("emb_ai") is not None and p >= cut)
        if a.get("emb_ai") is not None:
            # who is embedded, not the score: the same document in another batch differs by bf16 rounding (the
            # padding and the kernels' blocking depend on the batch), about 1e-4
            assert a["emb_ai"] == pytest.approx(b["emb_ai"], abs=1e-3)
            assert a["ai_discourse"] == pytest.approx(b["ai_discourse"], abs=1e-3)
        else:  # ruled out by keyword + fastText: the final score is theirs alone
            assert a["ai_discourse"] == p
    assert 0 < sum(a.get("emb_ai") is not None for a in rows) < sum(b.get("emb_ai") is not None for b in open_gate)
    # the fastText cascade's skipped documents are not embedded (their keyword prior used to let them all through)
    cascade = score_texts(
        texts,
        ClassifyConfig(
            fasttext={"only_candidates": True, "screen_chars": 0}, embedding={**window, "min_combined": None}
        ),
        models,
    )
    skipped = [a for a in cascade if a.get("ft_ai") is None]
    assert skipped and all(a.get("emb_ai") is None for a in skipped)


def test_bf16_encoder_matches_float32(monkeypatch):
    from curation.classify.embedding import embed_documents, low_precision

    texts, bf16 = _texts()[:3], low_precision("cpu")
    fast = embed_documents(texts, max_chunks=1, max_tokens=64)
    monkeypatch.setenv("CURATE_EMBED_FP32", "1")
    exact = embed_documents(texts, max_chunks=1, max_tokens=64)
    assert fast.shape == exact.shape == (3, 384)
    assert (fast * exact).sum(1).min() > 0.999
    assert bf16 != np.array_equal(fast, exact)  # bf16 ran where the CPU has it, float32 elsewhere


def test_progress_counts_documents_from_footers_and_writers(tmp_path):
    from curation.classify.config import ClassifyConfig
    from curation.classify.pipeline import classify, documents_done, shard_rows
    from curation.core.shards import attribute_path

    df = shared_corpus("wikipedia-recent").head(30).select("id", "text")
    write_corpus(tmp_path / "c", df, {"a.parquet": slice(0, 10), "b.parquet": slice(10, 30)})
    out = tmp_path / "attrs"
    r = classify(str(tmp_path / "c"), out, ClassifyConfig(embedding={"enabled": False}), progress=False)
    assert r.ok
    rows = shard_rows(str(tmp_path / "c"), ["a.parquet", "b.parquet"])
    assert rows == {"a.parquet": 10, "b.parquet": 20}
    assert documents_done(out, rows) == (30, 2)
    assert json.loads((out / "_progress" / "rank-00000.json").read_text())["shard"] == "a.parquet"  # the writer reports
    # a shard not yet committed counts the rows its writer reported
    (out / attribute_path("b.parquet")).unlink()
    (out / "_progress" / "rank-00001.json").write_text(json.dumps({"shard": "b.parquet", "rows": 7}))
    assert documents_done(out, rows) == (17, 1)


def test_progress_counts_jsonl_documents_with_a_rate_and_a_total(tmp_path):
    """JSONL shards have no row count up front: committed ones count by their attribute files, and the total is
    estimated from the bytes until every shard is done."""
    import os

    from curation.classify.pipeline import documents_done, estimated_total, shard_rows
    from curation.core.shards import attribute_path

    demo = REPO / "curate" / "data" / "demo_corpus"
    shards = sorted(p.name for p in demo.glob("*.jsonl"))
    n = sum(1 for p in demo.glob("*.jsonl") for line in p.read_text().splitlines() if line.strip())
    out = tmp_path / "attrs"
    proc = curate("classify", demo, "--output", out, "--no-embedding", check=True)  # the bar as a user sees it
    bar = [ln for ln in proc.stdout.splitlines() if ln.startswith("classify ")]
    assert bar and f"{n:,}/{n:,} docs" in bar[-1] and f"{len(shards)}/{len(shards)} shards" in bar[-1], proc.stdout
    assert " 0 docs/s" not in bar[-1] and "docs/s" in bar[-1]
    rows = shard_rows(str(demo), shards)
    assert set(rows.values()) == {None}
    seen: dict[str, int] = {}
    assert documents_done(out, rows, seen) == (n, len(shards))
    sizes = {s: os.path.getsize(demo / s) for s in shards}
    assert estimated_total(str(demo), rows, seen, sizes) == (n, True)
    # one shard still to do: the total is estimated from its bytes, at the others' documents per byte
    (out / attribute_path(shards[0])).unlink()
    seen = {}
    docs, _ = documents_done(out, rows, seen)
    total, exact = estimated_total(str(demo), rows, seen, sizes)
    assert not exact and docs < n and abs(total - n) < 0.5 * (n - docs)
