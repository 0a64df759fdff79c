"""A SIGKILLed run resumes without duplicates; the local (2 workers) and Ray executors give the same rows."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import polars as pl
import pytest
from conftest import CURATE, curate, shared_corpus, write_corpus

from curation.core.shards import attribute_path


@pytest.fixture(scope="module")
def wiki_corpus(tmp_path_factory):
    docs = shared_corpus("wikipedia-2015").head(1200).select("id", "text")
    root = tmp_path_factory.mktemp("wiki")
    layout = {f"part-{i:02d}.parquet": slice(i * 100, (i + 1) * 100) for i in range(12)}
    return root, write_corpus(root, docs, layout)


def _rows(out, shards):
    return {rel: pl.read_parquet(out / attribute_path(rel))["id"].to_list() for rel in shards}


def test_sigkill_then_rerun_gives_exactly_one_row_per_document(wiki_corpus, tmp_path):
    root, shards = wiki_corpus
    out = tmp_path / "attrs"
    proc = subprocess.Popen(
        [*CURATE, "classify", root, "--output", out, "--no-progress", "--no-cascade"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and len(list(out.glob("part-*.parquet"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(out.glob("part-*.parquet")))
    assert 0 < done_before < len(shards), "the kill should land mid-run"
    curate("classify", root, "--output", out, "--no-progress", "--no-cascade", check=True)
    rows = _rows(out, shards)
    for rel, docs in shards.items():
        assert rows[rel] == [str(i) for i in docs["id"]]
    assert not list(out.glob("*.tmp"))


def test_two_local_workers_match_one(wiki_corpus, tmp_path):
    root, shards = wiki_corpus
    curate("classify", root, "--output", tmp_path / "w1", "--no-progress", "--no-embedding", check=True)
    curate(
        "classify", root, "--output", tmp_path / "w2", "--no-progress", "--no-embedding", "--workers", "2", check=True
    )
    for rel in shards:
        assert pl.read_parquet(tmp_path / "w1" / attribute_path(rel)).equals(
            pl.read_parquet(tmp_path / "w2" / attribute_path(rel))
        )
    # this process works next to a pool of one: every task still completes once and logs to its own file
    logs = tmp_path / "w2" / "_logs"
    assert len(list((logs / "completions").iterdir())) == len(list((logs / "logs").glob("task_*.log"))) == len(shards)
    assert all("Processing done" in f.read_text() for f in (logs / "logs").glob("task_*.log"))


@pytest.mark.ray
def test_ray_executor_on_a_local_ray_instance(wiki_corpus, tmp_path):
    pytest.importorskip("ray")
    root, shards = wiki_corpus
    curate("classify", root, "--output", tmp_path / "local", "--no-progress", "--no-embedding", check=True)
    proc = curate(
        "classify",
        root,
        "--output",
        tmp_path / "ray",
        "--no-progress",
        "--no-embedding",
        "--executor",
        "ray",
        "--workers",
        "2",
        env={"RAY_ADDRESS": ""},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rel in shards:
        assert pl.read_parquet(tmp_path / "local" / attribute_path(rel)).equals(
            pl.read_parquet(tmp_path / "ray" / attribute_path(rel))
        )
    assert len(list((tmp_path / "ray" / "_logs" / "completions").iterdir())) == len(shards)
