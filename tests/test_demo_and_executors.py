"""The demo entry point, empty shards, and executor construction for Slurm (no Slurm here: built, not submitted)."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl

from curation.executors import make_executor
from conftest import curate


def test_demo_writes_attributes_summary_and_chart(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "curation.demo", str(tmp_path / "demo")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "results:" in proc.stdout and "agreement with the demo documents' own labels" in proc.stdout
    png = tmp_path / "demo" / "classify_summary.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    s = json.loads((tmp_path / "demo" / "attrs" / "summary.json").read_text())
    assert s["docs"] >= 300 and s["shards_failed"] == 0 and all(s["stance_of_flagged"].values())


def test_empty_shard_gets_an_empty_attribute_file(tmp_path):
    (tmp_path / "c").mkdir()
    pl.DataFrame({"id": [], "text": []}, schema={"id": pl.Utf8, "text": pl.Utf8}).write_parquet(tmp_path / "c" / "empty.parquet")
    (tmp_path / "c" / "one.jsonl").write_text('{"id": 7, "text": "An essay on AI alignment and the shutdown problem."}\n')
    curate("classify", tmp_path / "c", "--output", tmp_path / "a", "--no-progress", check=True)
    assert pl.read_parquet(tmp_path / "a" / "empty.parquet").height == 0
    one = pl.read_parquet(tmp_path / "a" / "one.parquet")
    assert one["id"].to_list() == ["7"] and one["kw_candidate"][0]


def test_slurm_executor_is_datatroves(tmp_path):
    from datatrove.executor.slurm import SlurmPipelineExecutor

    ex = make_executor("slurm", [lambda data, rank, world_size: data], tasks=12, workers=4, logging_dir=str(tmp_path),
                       extra={"partition": "cpu-long", "time": "01:00:00"})
    assert isinstance(ex, SlurmPipelineExecutor) and ex.tasks == 12 and ex.partition == "cpu-long"
