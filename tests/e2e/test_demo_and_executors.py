"""The demo entry point, empty shards, and the Slurm executor (through a local sbatch stand-in: no cluster here)."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
from conftest import REPO, curate

from curation.classify.executors import make_executor


def test_demo_writes_attributes_summary_and_chart(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "curate.demo", str(tmp_path / "demo"), "--classify-only"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "results:" in proc.stdout and "agreement with the demo documents' own labels" in proc.stdout
    png = tmp_path / "demo" / "classify_summary.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    s = json.loads((tmp_path / "demo" / "attrs" / "summary.json").read_text())
    assert s["docs"] >= 300 and s["shards_failed"] == 0 and all(s["stance_of_flagged"].values())


def test_empty_shard_gets_an_empty_attribute_file(tmp_path):
    (tmp_path / "c").mkdir()
    pl.DataFrame({"id": [], "text": []}, schema={"id": pl.Utf8, "text": pl.Utf8}).write_parquet(
        tmp_path / "c" / "empty.parquet"
    )
    (tmp_path / "c" / "one.jsonl").write_text(
        '{"id": 7, "text": "An essay on AI alignment and the shutdown problem."}\n'
    )
    curate("classify", tmp_path / "c", "--output", tmp_path / "a", "--no-progress", check=True)
    assert pl.read_parquet(tmp_path / "a" / "empty.parquet").height == 0
    one = pl.read_parquet(tmp_path / "a" / "one.parquet")
    assert one["id"].to_list() == ["7"] and one["kw_candidate"][0]


def test_slurm_executor_is_datatroves(tmp_path):
    from datatrove.executor.slurm import SlurmPipelineExecutor

    ex = make_executor(
        "slurm",
        [lambda data, rank, world_size: data],
        tasks=12,
        workers=4,
        logging_dir=str(tmp_path),
        extra={"partition": "cpu-long", "time": "01:00:00"},
    )
    assert isinstance(ex, SlurmPipelineExecutor) and ex.tasks == 12 and ex.partition == "cpu-long"


def test_slurm_run_through_datatroves_executor_with_a_local_sbatch(tmp_path, mixed_docs):
    """`executor.kind: slurm` end to end: datatrove's SlurmPipelineExecutor writes its array script and calls
    `sbatch`; tests/slurm_shim's sbatch and srun (no cluster here) run the array tasks in this machine. The attribute
    files must equal a local run's, and a rerun launches nothing and writes the finished summary."""
    import os
    from pathlib import Path

    shim = REPO / "tests" / "slurm_shim"
    env = {
        "PATH": f"{shim}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "SLURM_SHIM_LOG": str(tmp_path / "shim.log"),
    }
    corpus = tmp_path / "c"
    corpus.mkdir()
    for i in range(3):
        mixed_docs.slice(20 * i, 20).select("id", "text").write_parquet(corpus / f"part-{i}.parquet")
    cfg = tmp_path / "slurm.yaml"
    cfg.write_text(
        "embedding: {enabled: false}\n"
        "executor: {kind: slurm, tasks: 3, workers: 2, slurm: {partition: test, time: '00:10:00', cpus_per_task: 1}}\n"
    )
    # submitted, still queued: a success that says so, and nothing written yet
    queued = curate(
        "classify",
        corpus,
        "--output",
        tmp_path / "s",
        "--config",
        cfg,
        "--no-progress",
        env={**env, "SLURM_SHIM_QUEUE_ONLY": "1"},
        check=True,
    )
    assert "submitted to Slurm (job " in queued.stderr and "0/3 shards" in queued.stderr
    assert not list((tmp_path / "s").glob("*.parquet"))
    proc = curate("classify", corpus, "--output", tmp_path / "s", "--config", cfg, "--no-progress", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr + (tmp_path / "shim.log").read_text()
    script = (tmp_path / "s" / "_logs" / "launch_script.slurm").read_text()
    assert (
        "#SBATCH --array=0-2%2" in script
        and "#SBATCH --partition=test" in script
        and "launch_pickled_pipeline" in script
    )
    curate("classify", corpus, "--output", tmp_path / "l", "--no-embedding", "--no-progress", check=True)
    for i in range(3):
        s, loc = (pl.read_parquet(tmp_path / d / f"part-{i}.parquet") for d in ("s", "l"))
        assert s["id"].to_list() == loc["id"].to_list() == mixed_docs.slice(20 * i, 20)["id"].to_list()
        assert s["ai_discourse"].to_list() == loc["ai_discourse"].to_list()
    rerun = curate(
        "classify", corpus, "--output", tmp_path / "s", "--config", cfg, "--no-progress", env=env, check=True
    )
    assert "submitted" not in rerun.stderr and "3/3 shards, 60 docs" in rerun.stderr
    assert json.loads((tmp_path / "s" / "summary.json").read_text())["shards_done"] == 3
