"""Checkpointed part files: every finished batch is one Parquet file written atomically (tmp + rename).

A rerun reads the ids already stored and skips them, so nothing is generated twice; SIGKILL loses at most the batch
in flight (its tmp file is ignored and removed).
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl


class PartStore:
    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob(".tmp-*"):
            stale.unlink(missing_ok=True)

    def parts(self) -> list[Path]:
        return sorted(self.dir.glob("part-*.parquet"))

    def read(self) -> pl.DataFrame | None:
        parts = self.parts()
        return pl.concat([pl.read_parquet(p) for p in parts], how="diagonal_relaxed") if parts else None

    def ids(self) -> set[str]:
        df = self.read()
        return set(df["id"].to_list()) if df is not None else set()

    def append(self, rows: list[dict]) -> Path:
        n = len(self.parts())
        path = self.dir / f"part-{n:05d}-{os.getpid()}.parquet"
        tmp = self.dir / f".tmp-{path.name}"
        pl.DataFrame(rows).write_parquet(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        tmp.replace(path)
        return path


def write_atomic(df: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    df.write_parquet(tmp, compression="zstd")
    tmp.replace(path)
