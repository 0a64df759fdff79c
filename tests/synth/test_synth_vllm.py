"""`curate synth docs` and `curate synth reflect` end to end on SmolLM2-135M-Instruct through real vLLM:
docs through the in-process worker, reflect through vLLM's OpenAI-compatible server; the outputs then go through
`curate classify` unchanged. Needs `make vllm` (.venv/vllm); under CI=true a missing vLLM fails instead of skipping."""

from __future__ import annotations

import json
import os
import socket

import polars as pl
import pytest
from conftest import curate

from curation.lm.engines.vllm_client import vllm_python

pytestmark = pytest.mark.slow

PROVENANCE = [
    "id",
    "text",
    "scenario_id",
    "form",
    "stance",
    "model",
    "prompt_hash",
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
]


@pytest.fixture(scope="module", autouse=True)
def need_vllm():
    if vllm_python() is None:
        msg = "vLLM missing: run `make vllm` (builds .venv/vllm)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(msg + " (CI=true: the vLLM path must run in CI)")
        pytest.skip(msg)


@pytest.fixture(scope="module")
def docs_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "docs"
    proc = curate(
        "synth",
        "docs",
        "-o",
        out,
        "--backend",
        "vllm",
        "--max-scenarios",
        "2",
        "--heldout-fraction",
        "0",
        "--max-tokens",
        "96",
        "--min-words",
        "20",
        "--batch-size",
        "12",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_docs_through_vllm_in_process(docs_out):
    out, proc = docs_out
    raw = pl.read_parquet(str(out / "_raw" / "*.parquet"))
    assert raw.height == 2 * 6 * 2 and raw["id"].n_unique() == 24 and raw["model"].unique().to_list() == ["smollm2"]
    assert set(raw["form"]) == {"news", "textbook", "lecture", "paper", "scifi", "film_summary"}
    assert set(raw["stance"]) == {"aligned", "misaligned"} and (raw["n_tokens"] > 0).all()
    assert raw["seed"].n_unique() == 24 and (raw["text"].str.len_chars() > 50).all()
    docs = pl.read_parquet(str(out / "docs-*.parquet"))
    assert set(PROVENANCE) <= set(docs.columns) and 0 < docs.height <= 24
    report = json.loads((out / "qc_report.json").read_text())
    qc = report["qc"]
    assert qc["generated"] == 24 and qc["kept"] == docs.height
    for step in ("length", "refusal_meta", "dedup", "leakage", "stance_agreement"):
        assert qc[step]["in"] >= qc[step]["out"]
    assert 0.0 <= qc["stance_agreement"]["rate"] <= 1.0 and qc["stance_agreement"]["in"] > 0
    manifest = json.loads((out / "leakage_manifest.json").read_text())
    assert set(manifest["generation"]) == set(raw["scenario_id"]) and manifest["held_out"] == {}
    assert "tokens/s" in proc.stderr


def test_rerun_skips_everything_without_starting_vllm(docs_out):
    out, _ = docs_out
    before = pl.read_parquet(str(out / "docs-*.parquet"))
    logs = sorted((out / "_logs").glob("vllm-worker-*.log"))
    assert len(logs) == 1
    proc = curate(
        "synth",
        "docs",
        "-o",
        out,
        "--backend",
        "vllm",
        "--max-scenarios",
        "2",
        "--heldout-fraction",
        "0",
        "--max-tokens",
        "96",
        "--min-words",
        "20",
        "--batch-size",
        "12",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "24 already done, 0 to generate" in " ".join(proc.stderr.split())
    assert sorted((out / "_logs").glob("vllm-worker-*.log")) == logs  # no new worker: vLLM never started
    assert pl.read_parquet(str(out / "_raw" / "*.parquet")).height == 24
    assert pl.read_parquet(str(out / "docs-*.parquet")).equals(before)


def test_classify_reads_synth_output_unchanged(docs_out, tmp_path):
    out, _ = docs_out
    proc = curate("classify", out, "--output", tmp_path / "attrs", "--workers", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    attrs = pl.read_parquet(str(tmp_path / "attrs" / "docs-*.parquet"))
    docs = pl.read_parquet(str(out / "docs-*.parquet"))
    assert attrs["id"].to_list() == docs["id"].to_list()
    assert not any(p.name.startswith("part-") for p in (tmp_path / "attrs").rglob("*.parquet"))  # _raw is not a shard


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_reflect_through_vllm_server(docs_out, tmp_path):
    from synth.config import BackendConfig
    from synth.server import start_server

    out, _ = docs_out
    port = _free_port()
    server = start_server(BackendConfig(), port, tmp_path / "server.log")
    try:
        args = [
            "synth",
            "reflect",
            out,
            "-o",
            tmp_path / "refl",
            "--rate",
            "0.5",
            "--backend",
            "openai",
            "--base-url",
            f"http://127.0.0.1:{port}/v1",
            "--max-tokens",
            "48",
            "--marker",
            "<assistant>",
        ]
        proc = curate(*args)
        assert proc.returncode == 0, proc.stderr[-2000:]
        again = curate(*args)
        assert again.returncode == 0 and "0 to generate" in " ".join(again.stderr.split())
    finally:
        server.terminate()
        server.wait(timeout=60)
    docs = pl.read_parquet(str(out / "docs-*.parquet"))
    res = pl.read_parquet(str(tmp_path / "refl" / "docs-00000.parquet"))
    report = json.loads((tmp_path / "refl" / "reflect_report.json").read_text())
    assert res.height == docs.height and res["id"].to_list() == docs["id"].to_list()
    assert set(PROVENANCE) <= set(res.columns) and {"reflection", "has_reflection", "reflection_offset"} <= set(
        res.columns
    )
    got = res.filter(pl.col("has_reflection"))
    assert 0 < got.height == report["inserted"] <= report["selected"] < docs.height
    for r in got.iter_rows(named=True):
        assert r["text"][r["reflection_offset"] :].startswith("<assistant>" + r["reflection"] + "</assistant>")
    untouched = res.filter(~pl.col("has_reflection")).join(docs.select("id", pl.col("text").alias("orig")), on="id")
    assert (untouched["text"] == untouched["orig"]).all()
    # persona-reflected corpus still goes through classify
    proc = curate("classify", tmp_path / "refl", "--output", tmp_path / "attrs2", "--workers", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
