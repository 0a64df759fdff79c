"""Experiment keys follow file content, not modification times: a fresh clone or a copied corpus is the same input."""

from __future__ import annotations

import os
import shutil

from curate.experiment.graph import fingerprint
from curation.core import digests


def test_fingerprint_follows_content_not_mtime(tmp_path, monkeypatch):
    monkeypatch.setenv("CURATE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(digests, "_MEMO", None)
    src = tmp_path / "corpus"
    src.mkdir()
    (src / "part-0.parquet").write_bytes(b"one shard")
    (src / "_logs").mkdir()
    (src / "_logs" / "x.log").write_text("skipped")
    before = fingerprint([str(src)])
    assert before == [["corpus/part-0.parquet", 9, digests.file_sha256(src / "part-0.parquet")]]
    digests.flush()  # writes are batched (at most every 2 s, and at exit)
    assert (tmp_path / "cache" / "digests.json").exists()
    os.utime(src / "part-0.parquet", (1, 1))  # only the time changes: same key
    assert fingerprint([str(src)]) == before
    copy = tmp_path / "elsewhere" / "corpus"  # copied to another disk: same relative key
    shutil.copytree(src, copy)
    assert fingerprint([str(copy)]) == before
    (src / "part-0.parquet").write_bytes(b"one shard!")  # the content changes: a new key
    assert fingerprint([str(src)]) != before
    (src / "part-0.parquet").write_bytes(b"one_shard")  # an in-place edit of the same size: caught
    os.utime(src / "part-0.parquet", (2, 2))  # (the cache trusts size + mtime + ctime + inode)
    assert fingerprint([str(src)])[0][2] == digests.file_sha256(src / "part-0.parquet") != before[0][2]


def test_large_files_are_identified_by_size_head_and_tail(tmp_path, monkeypatch):
    monkeypatch.setattr(digests, "FULL_HASH_MAX", 64)
    monkeypatch.setattr(digests, "SAMPLE", 16)
    f = tmp_path / "big.parquet"
    f.write_bytes(b"H" * 16 + b"middle" * 20 + b"footer-and-stats")
    d = digests.content_digest(f)
    assert d.startswith("sampled:")
    f.write_bytes(b"H" * 16 + b"middle" * 20 + b"footer-and-STATS")  # a rewritten footer: a new identity
    assert digests.content_digest(f) != d
    monkeypatch.setenv("CURATE_FULL_HASH", "1")
    assert digests.content_digest(f) == digests.file_sha256(f)
