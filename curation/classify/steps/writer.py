"""Writes one attribute Parquet file per input shard, committed atomically when the shard was read completely."""

from __future__ import annotations

import json
import time

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import DocumentsPipeline
from datatrove.io import get_datafolder
from datatrove.pipeline.base import PipelineStep

from curation.classify.steps.base import ATTRS, MARKER
from curation.core.shards import attribute_path

BASE_COLUMNS = {"id": pa.string(), "n_bytes": pa.int64(), "error": pa.string()}


class AttributeWriter(PipelineStep):
    """Rows stream into `<attr>.tmp`; the end-of-shard marker renames it into place, so a killed run never
    leaves a half file that looks finished, and a rerun rewrites the shard from scratch (no duplicate rows)."""

    type = "💽 - WRITER"
    name = "🗂️ Attribute writer"

    def __init__(
        self, output_folder: str, columns: dict[str, pa.DataType], run_metadata: dict, rows_per_group: int = 8192
    ):
        super().__init__()
        self.output_folder = get_datafolder(output_folder)
        self.schema = pa.schema([pa.field(k, v) for k, v in {**BASE_COLUMNS, **columns}.items()])
        self._pl_schema = pl.Schema(self.schema)
        self.run_metadata = run_metadata
        self.rows_per_group = rows_per_group
        self._shard = self._writer = self._file = None
        self._rows: list = []
        self._written = 0
        self._seen, self._rank, self._reported = 0, 0, 0.0

    def _report(self, force: bool = False):
        """Rows of the open shard so far, in `_progress/rank-N.json` (about once a second): the progress bar of
        `curate classify` counts documents from these and the committed files, whichever process does the work."""
        now = time.monotonic()
        if self._shard is None or not (force or now - self._reported >= 1.0):
            return
        self._reported = now
        with self.output_folder.open(f"_progress/rank-{self._rank:05d}.json", "w") as f:
            f.write(json.dumps({"shard": self._shard, "rows": self._seen}))

    def _open(self, shard: str, fingerprint: dict):
        meta = {
            "curation.input_fingerprint": json.dumps(fingerprint, sort_keys=True),
            "curation.shard": shard,
            "curation.run": json.dumps(self.run_metadata, sort_keys=True),
        }
        self._shard, self._written, self._seen = shard, 0, 0
        self._file = self.output_folder.open(attribute_path(shard) + ".tmp", "wb")
        self._writer = pq.ParquetWriter(self._file, self.schema.with_metadata(meta), compression="zstd")

    def _flush(self):
        if self._rows:
            # built by polars, then cast: pyarrow's own conversion of Python lists imports pandas (~0.25 s a process)
            cols = {name: [r.get(name) for r in self._rows] for name in self.schema.names}
            self._writer.write_table(pl.DataFrame(cols, schema=self._pl_schema).to_arrow().cast(self._writer.schema))
            self._written += len(self._rows)
            self.stat_update("rows", value=len(self._rows))
            self._rows = []

    def _close(self, commit: bool):
        if self._writer is None:
            return
        tmp = attribute_path(self._shard) + ".tmp"
        if commit:
            self._flush()
        self._rows = []
        self._writer.close()
        self._file.close()
        if commit:
            self.output_folder.fs.mv(
                self.output_folder.resolve_paths(tmp), self.output_folder.resolve_paths(attribute_path(self._shard))
            )
        else:
            self.output_folder.rm(tmp)
        self._writer = self._file = self._shard = None

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self._rank = rank
        try:
            for doc in data:
                kind = doc.metadata.get(MARKER)
                if kind == "abort":
                    if self._shard == doc.metadata["shard"]:
                        self._close(commit=False)
                    continue
                if kind == "end":
                    if self._shard != doc.metadata["shard"]:  # an empty shard: still one (empty) attribute file
                        self._open(doc.metadata["shard"], doc.metadata["fingerprint"])
                    self._flush()
                    if self._written != doc.metadata["ndocs"]:
                        raise RuntimeError(
                            f"{self._shard}: wrote {self._written} rows for {doc.metadata['ndocs']} documents"
                        )
                    self._close(commit=True)
                    self.stat_update("shards_written")
                    continue
                if self._shard != doc.metadata["shard"]:
                    self._close(commit=False)
                    self._open(doc.metadata["shard"], doc.metadata["fingerprint"])
                n_bytes = doc.metadata.get("n_bytes")  # the reader's, where the input format gave it for free
                row = {
                    "id": doc.id,
                    "n_bytes": len(doc.text.encode("utf-8")) if n_bytes is None else n_bytes,
                    "error": doc.metadata.get("error"),
                }
                row.update(doc.metadata.get(ATTRS, {}))
                self._rows.append(row)
                self._seen += 1
                if len(self._rows) >= self.rows_per_group:
                    self._flush()
                self._report()
        finally:
            self._close(commit=False)  # whatever is still open was not finished
        return
        yield  # a generator, like every datatrove step
