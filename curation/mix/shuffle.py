"""Two-pass bucketed shuffle in bounded memory.

Pass 1 (`BucketSpill`): rows arrive in input order with a 64-bit shuffle key; they are buffered up to a fixed
number of bytes, then scattered to B on-disk Arrow IPC buckets by the key's high bits.
Pass 2 (`drain`): each bucket is read alone, sorted by key and handed on. Memory: one buffer in pass 1, one
bucket (about `bucket_mb`) in pass 2, whatever the corpus size; B grows with the corpus instead.
The order is a pure function of the keys (and, for equal keys, of the input order), so it is deterministic.
Each spilled row also carries its source index and row number, so pass 2 can drop copies the plan, finished
after they were spilled, did not select (see scatter.py).
"""

from __future__ import annotations

import resource
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from curation.core.errors import CurationError

KEY, SRC, ROW = "_key", "_src", "_row"
CHUNK_BYTES = 64 * 2**20


def _raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need + 64:
        target = hard if hard == resource.RLIM_INFINITY else min(hard, need + 256)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
        if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < need + 64:
            raise CurationError(
                f"the shuffle needs {need} open bucket files but the open-file limit is {soft}; "
                f"raise `output.bucket_mb` or `ulimit -n`"
            )


class BucketSpill:
    def __init__(self, root: Path, buckets: int, schema: pa.Schema, chunk_bytes: int = CHUNK_BYTES):
        _raise_nofile(buckets)
        self.root, self.buckets, self.chunk_bytes = root, buckets, chunk_bytes
        self.schema = (
            schema.append(pa.field(KEY, pa.uint64()))
            .append(pa.field(SRC, pa.uint16()))
            .append(pa.field(ROW, pa.uint64()))
        )
        root.mkdir(parents=True, exist_ok=True)
        self.writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
        self.pending: list[pa.Table] = []
        self.pending_bytes = 0
        self.rows = 0

    def path(self, b: int) -> Path:
        return self.root / f"bucket-{b:05d}.arrow"

    def add(self, table: pa.Table, keys: np.ndarray, sources: np.ndarray, rows: np.ndarray) -> None:
        """table has the output schema; keys, source indices and global row numbers: one per row."""
        t = (
            table.append_column(KEY, pa.array(keys, pa.uint64()))
            .append_column(SRC, pa.array(sources, pa.uint16()))
            .append_column(ROW, pa.array(rows, pa.uint64()))
        )
        self.pending.append(t)
        self.pending_bytes += t.nbytes
        self.rows += t.num_rows
        if self.pending_bytes >= self.chunk_bytes:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        # one chunk: Arrow's take on a many-chunk string column is an order of magnitude slower than on one
        t = pa.concat_tables(self.pending).combine_chunks()
        self.pending, self.pending_bytes = [], 0
        keys = t.column(KEY).to_numpy()
        bucket = ((keys >> np.uint64(32)) % np.uint64(self.buckets)).astype(np.int64)
        order = np.argsort(bucket, kind="stable")
        t = t.take(pa.array(order))
        bounds = np.searchsorted(bucket[order], np.arange(self.buckets + 1))
        for b in range(self.buckets):
            lo, hi = int(bounds[b]), int(bounds[b + 1])
            if hi > lo:
                w = self.writers.get(b)
                if w is None:
                    w = self.writers[b] = pa.ipc.new_stream(str(self.path(b)), self.schema)
                w.write_table(t.slice(lo, hi - lo))

    def close(self) -> None:
        self.flush()
        for w in self.writers.values():
            w.close()
        self.writers.clear()

    def drain(
        self, delete: bool = True, keep: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    ) -> Iterator[pa.Table]:
        """Each bucket in order, sorted by key, without the spill's own columns.

        keep(source indices, row numbers) -> boolean mask: rows to keep (default all)."""
        self.close()
        for b in range(self.buckets):
            p = self.path(b)
            if not p.exists():
                continue
            with pa.ipc.open_stream(str(p)) as r:
                t = r.read_all().combine_chunks()
            keys = t.column(KEY).to_numpy()
            order = np.argsort(keys, kind="stable")
            if keep is not None:
                mask = keep(t.column(SRC).to_numpy(), t.column(ROW).to_numpy())
                order = order[mask[order]]
            t = t.take(pa.array(order)).drop_columns([KEY, SRC, ROW])
            if delete:
                p.unlink()
            yield t
