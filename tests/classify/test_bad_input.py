"""Bad input fails only its own shard, with one line naming the file and the fix; a rerun completes the rest."""

from __future__ import annotations

import polars as pl
import pytest
from conftest import curate, write_corpus

from curation.core.shards import attribute_path


def _good(df):
    return df.select("id", "text")


@pytest.fixture()
def bad_corpus(tmp_path, mixed_docs):
    root = tmp_path / "corpus"
    write_corpus(root, _good(mixed_docs), {"good.parquet": slice(0, 10)})
    (root / "corrupt.parquet").write_bytes(b"PAR1" + bytes(range(256)) * 8)
    mixed_docs.select("id", pl.col("text").alias("body")).head(5).write_parquet(root / "notext.parquet")
    (root / "empty.jsonl").write_text('{"id": "e1", "text": "fine text"}\n{"id": "e2", "text": ""}\n')
    (root / "badutf8.jsonl").write_bytes(b'{"id": "u1", "text": "ok"}\n{"id": "u2", "text": "caf\xe9 au lait"}\n')
    (root / "huge.jsonl").write_text('{"id": "h1", "text": "' + "word " * 2_100_000 + '"}\n')
    return root


BAD = {
    "corrupt.parquet": "Parquet",
    "notext.parquet": "--text-key",
    "empty.jsonl": "empty text",
    "badutf8.jsonl": "UTF-8",
    "huge.jsonl": "--max-doc-chars",
}


def test_each_bad_shard_gets_one_clear_line_and_others_finish(bad_corpus, tmp_path, mixed_docs):
    out = tmp_path / "attrs"
    proc = curate("classify", bad_corpus, "--output", out, "--no-progress")
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    for name, hint in BAD.items():
        mine = [ln for ln in lines if name in ln]
        assert mine, f"no error line for {name}:\n{proc.stderr}"
        assert hint in mine[0], mine[0]
        assert not (out / attribute_path(name)).exists()
    assert "Traceback" not in proc.stderr
    good = pl.read_parquet(out / "good.parquet")
    assert good.height == 10

    # fix every bad shard; the rerun does only what is missing
    mtime = (out / "good.parquet").stat().st_mtime_ns
    docs = _good(mixed_docs)
    write_corpus(bad_corpus, docs, {"corrupt.parquet": slice(10, 14), "notext.parquet": slice(14, 19)})
    (bad_corpus / "empty.jsonl").write_text('{"id": "e1", "text": "fine text"}\n{"id": "e2", "text": "now filled"}\n')
    (bad_corpus / "badutf8.jsonl").write_text(
        '{"id": "u1", "text": "ok"}\n{"id": "u2", "text": "café au lait"}\n', encoding="utf-8"
    )
    (bad_corpus / "huge.jsonl").write_text('{"id": "h1", "text": "a short one now"}\n')
    proc = curate("classify", bad_corpus, "--output", out, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert (out / "good.parquet").stat().st_mtime_ns == mtime
    assert pl.read_parquet(out / "corrupt.parquet").height == 4
    assert pl.read_parquet(out / "empty.jsonl".replace(".jsonl", ".parquet"))["id"].to_list() == ["e1", "e2"]
    assert not list((out / "_errors").rglob("*.txt"))


def test_tag_policy_keeps_bad_rows(bad_corpus, tmp_path):
    out = tmp_path / "attrs"
    proc = curate("classify", bad_corpus, "--output", out, "--no-progress", "--on-bad-doc", "tag")
    assert proc.returncode == 1  # corrupt and column-less shards still fail
    empty = pl.read_parquet(out / "empty.parquet")
    assert empty["id"].to_list() == ["e1", "e2"]
    assert empty["error"].to_list() == [None, "empty text"]
    assert empty["ai_discourse"][1] is None and empty["ai_discourse"][0] is not None
    assert pl.read_parquet(out / "badutf8.parquet").height == 2
    assert "exceeds" in pl.read_parquet(out / "huge.parquet")["error"][0]


def test_output_holding_a_different_run_is_refused(tmp_path, mixed_docs):
    root = tmp_path / "corpus"
    write_corpus(root, _good(mixed_docs), {"s.parquet": slice(0, 5)})
    out = tmp_path / "attrs"
    curate("classify", root, "--output", out, "--no-progress", "--no-embedding", check=True)
    proc = curate("classify", root, "--output", out, "--no-progress")
    assert proc.returncode == 2
    assert str(out) in proc.stderr and "--overwrite" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("not ours")
    proc = curate("classify", root, "--output", tmp_path / "other", "--no-progress")
    assert proc.returncode == 2 and "not a `curate classify` output" in proc.stderr
    curate("classify", root, "--output", out, "--no-progress", "--overwrite", check=True)


def test_bad_config_and_missing_corpus(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("fasttext:\n  max_chars: -3\n")
    proc = curate("classify", tmp_path, "--output", tmp_path / "o", "--config", cfg)
    assert proc.returncode == 2 and "fasttext.max_chars" in proc.stderr and str(cfg) in proc.stderr
    cfg.write_text("unknown_stage: {}\n")
    assert "unknown_stage" in curate("classify", tmp_path, "--output", tmp_path / "o", "--config", cfg).stderr
    (tmp_path / "nothing").mkdir()
    proc = curate("classify", tmp_path / "nothing", "--output", tmp_path / "o")
    assert proc.returncode == 2 and "no shards found" in proc.stderr
