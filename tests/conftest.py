"""Fixtures: small real corpora cut from ../shared/data (the package itself never reads ../shared)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
CURATE = [sys.executable, "-m", "curate"]


def shared_corpus(source: str) -> pl.DataFrame:
    path = SHARED / "corpus" / source
    if not path.is_dir():
        pytest.skip(f"{path} not present")
    return pl.read_parquet(str(path / "*.parquet"))


@pytest.fixture(scope="session")
def mixed_docs() -> pl.DataFrame:
    """60 real documents: AI-heavy TurnTrout/Arbital posts and ordinary Wikipedia articles."""
    a = shared_corpus("turntrout").head(15)
    b = shared_corpus("arbital").head(15)
    c = shared_corpus("wikipedia-recent").head(30)
    return pl.concat([a, b, c]).select("id", "text", "source", "title")


def write_corpus(root: Path, df: pl.DataFrame, layout: dict[str, slice]) -> dict[str, pl.DataFrame]:
    """Writes slices of df as shards named by `layout` keys (suffix picks the format)."""
    out = {}
    for rel, sl in layout.items():
        part = df[sl]
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".parquet"):
            part.write_parquet(path)
        elif rel.endswith(".jsonl.gz"):
            with gzip.open(path, "wt", encoding="utf-8") as f:
                for row in part.iter_rows(named=True):
                    f.write(json.dumps(row) + "\n")
        else:
            part.write_ndjson(path)
        out[rel] = part
    return out


def curate(*args, check: bool = False, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, **(env or {})}
    proc = subprocess.run([*CURATE, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=e)
    if check and proc.returncode != 0:
        raise AssertionError(f"curate {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
