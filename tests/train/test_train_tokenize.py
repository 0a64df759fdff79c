"""curate train tokenize: Megatron indexed datasets per source, EOD, blend weights, resume per shard, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import SHARED as SHARED_DATA

SHARED = SHARED_DATA / "corpus"
CURATE = [sys.executable, "-m", "curate"]


def curate(*args, timeout=300):
    return subprocess.run([*CURATE, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def make_mix(root: Path, n_shards: int = 3, per_source: int = 12) -> pl.DataFrame:
    """A shuffled two-source mix like `curate mix build` writes (id, text, source), from real shared documents."""
    for src in ("arbital", "wikipedia-recent"):
        if not (SHARED / src).is_dir():
            pytest.skip(f"{SHARED / src} not present")
    a = (
        pl.read_parquet(str(SHARED / "arbital" / "*.parquet"))
        .head(per_source)
        .select("id", "text")
        .with_columns(source=pl.lit("arbital"))
    )
    b = (
        pl.read_parquet(str(SHARED / "wikipedia-recent" / "*.parquet"))
        .head(per_source)
        .select("id", "text")
        .with_columns(source=pl.lit("wikipedia-recent"))
    )
    df = pl.concat([a, b]).sample(fraction=1.0, shuffle=True, seed=0)
    df = pl.concat([df, pl.DataFrame({"id": ["empty"], "text": [""], "source": ["arbital"]})])  # empty docs are skipped
    root.mkdir(parents=True, exist_ok=True)
    step = -(-len(df) // n_shards)
    for i in range(n_shards):
        df[i * step : (i + 1) * step].write_parquet(root / f"shard-{i:05d}.parquet")
    return df


@pytest.fixture(scope="module")
def tok():
    from curation.lm.loading import load_tokenizer

    return load_tokenizer("smollm2")


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    df = make_mix(root / "mix")
    proc = curate(
        "train",
        "tokenize",
        root / "mix",
        "--tokenizer",
        "smollm2",
        "--output",
        root / "out",
        "--workers",
        "2",
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    return root, df, proc


def test_indexed_datasets_hold_every_document_with_eod(tokenized, tok):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    root, df, _ = tokenized
    blend = json.loads((root / "out" / "blend.json").read_text())
    assert blend["prefixes"] == ["arbital", "wikipedia-recent"] and blend["eod"] == tok.eos_token_id
    for src in ("arbital", "wikipedia-recent"):
        ds = IndexedDataset(str(root / "out" / src))
        texts = df.filter((pl.col("source") == src) & (pl.col("text") != ""))["text"].to_list()
        assert len(ds) == len(texts) == 12
        # order inside a source follows shard order, then row order
        expected = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]
        got = [ds[i].tolist() for i in range(len(ds))]
        assert sorted(map(tuple, got)) == sorted(map(tuple, expected))
        assert ds[0].dtype == np.uint16  # vocab 49152 fits
    s = {x["name"]: x for x in blend["sources"]}
    total = sum(x["tokens"] for x in blend["sources"])
    assert abs(sum(blend["weights"]) - 1) < 1e-9
    assert abs(s["arbital"]["weight"] - s["arbital"]["tokens"] / total) < 1e-9  # no hand-off: weights = token shares


def test_read_record_lists_every_document_in_stream_order(tokenized, tok):
    """read.parquet: one row per tokenised document (id, mix source, tokens with EOD), in shard then row order, and
    blend.json's per-source totals agree with the indexed datasets."""
    root, df, _ = tokenized
    read = pl.read_parquet(root / "out" / "read.parquet")
    kept = df.filter(pl.col("text") != "")
    assert read["id"].to_list() == kept["id"].to_list()
    assert read["source"].to_list() == kept["source"].to_list()
    want = [len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in kept["text"].to_list()]
    assert read["tokens"].to_list() == want
    blend = json.loads((root / "out" / "blend.json").read_text())
    for s in blend["sources"]:
        assert blend["read"]["sources"][s["name"]] == {"documents": s["documents"], "tokens": s["tokens"]}


def test_resume_redoes_only_unfinished_shards(tokenized, tmp_path):
    root, _, _ = tokenized
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    before = {p.name: p.read_bytes() for p in out.glob("*.bin")}
    (out / "parts" / "shard-00001.done.json").unlink()  # as if killed while shard 1 was being written
    for p in (out / "parts").glob("shard-00001.*"):
        p.unlink()
    from train.tokenize import tokenize_mix

    res = tokenize_mix(root / "mix", "smollm2", out, workers=1)
    assert res.shards_skipped == 2 and res.shards_done == 1
    assert {p.name: p.read_bytes() for p in out.glob("*.bin")} == before


def test_mix_handoff_datasets_and_weights(tokenized, tmp_path):
    root, _, _ = tokenized
    mix = tmp_path / "mix"
    shutil.copytree(root / "mix", mix)
    (mix / "blend.json").write_text(
        json.dumps(
            {
                "format": "curate-mix-blend/1",
                "datasets": [
                    {"name": "part-a", "weight": 0.25, "shards": ["shard-00000.parquet"]},
                    {"name": "part-b", "weight": 0.75, "shards": ["shard-00001.parquet", "shard-00002.parquet"]},
                ],
            }
        )
    )
    from train.tokenize import tokenize_mix

    res = tokenize_mix(mix, "smollm2", tmp_path / "out", workers=1)
    assert res.blend["prefixes"] == ["part-a", "part-b"] and res.blend["weights"] == [0.25, 0.75]
    assert res.blend["weights_from"].endswith("blend.json")
    res2 = tokenize_mix(mix, "smollm2", tmp_path / "out2", workers=1, weights={"part-a": 1, "part-b": 1})
    assert res2.blend["weights"] == [0.5, 0.5]


def test_bad_inputs_are_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = curate("train", "tokenize", tmp_path / "empty", "--output", tmp_path / "o", "--no-progress")
    assert proc.returncode == 2 and "no *.parquet shards" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "notext").mkdir()
    pl.DataFrame({"id": ["a"], "body": ["x"]}).write_parquet(tmp_path / "notext" / "s.parquet")
    proc = curate(
        "train", "tokenize", tmp_path / "notext", "--output", tmp_path / "o2", "--no-progress", "--workers", "1"
    )
    assert proc.returncode == 2 and "no `text` column" in proc.stderr and "--text-key" in proc.stderr
