"""Output shards of a fixed number of documents, written in fixed-size row groups (so bytes depend only on rows)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


class ShardWriter:
    def __init__(
        self,
        directory: Path,
        schema: pa.Schema,
        shard_docs: int,
        row_group_docs: int,
        compression: str,
        metadata: dict[str, str] | None = None,
        own=None,
    ):
        self.dir, self.shard_docs = directory, shard_docs
        self.rg = min(row_group_docs, shard_docs)
        self.compression = None if compression == "none" else compression
        self.schema = schema.with_metadata(metadata or {})
        self.buf: pa.Table | None = None
        self.writer: pq.ParquetWriter | None = None
        self.in_shard = 0
        self.files: list[tuple[Path, int]] = []  # (path, rows)
        self.own = own  # records each file in the output's ownership record first

    def append(self, t: pa.Table) -> None:
        if t.num_rows == 0:
            return
        t = t.cast(self.schema) if t.schema != self.schema else t
        self.buf = t if self.buf is None else pa.concat_tables([self.buf, t])
        while self.buf is not None and self.buf.num_rows >= self._next_size():
            self._emit(self._next_size())

    def _next_size(self) -> int:
        return min(self.rg, self.shard_docs - self.in_shard)

    def _emit(self, n: int) -> None:
        if self.writer is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            path = self.dir / f"part-{len(self.files):05d}.parquet"
            if self.own:
                self.own(path)
            self.files.append((path, 0))
            self.writer = pq.ParquetWriter(str(path), self.schema, compression=self.compression)
        piece = self.buf.slice(0, n)
        rest = self.buf.slice(n)
        self.buf = rest if rest.num_rows else None
        self.writer.write_table(piece, row_group_size=n)
        self.in_shard += n
        path, rows = self.files[-1]
        self.files[-1] = (path, rows + n)
        if self.in_shard >= self.shard_docs:
            self._close_shard()

    def _close_shard(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer, self.in_shard = None, 0

    def close(self) -> list[tuple[Path, int]]:
        if self.buf is not None and self.buf.num_rows:
            self._emit(self.buf.num_rows)
        self._close_shard()
        return self.files
