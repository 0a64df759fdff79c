"""Copies of selected rows, each with its 64-bit shuffle key, handed to the bucket spill.

Copy number c of global row r of a source gets key splitmix64(row_hash(shuffle stream, r) ^ splitmix64(c + k)):
the key depends only on the seed, the source, the row and the copy number, never on which pass emitted the
copy, so the planning scan can emit every kept row's first copy while the text is in memory anyway, and a later
pass the extra copies of upsampled sources, with the same output as one pass emitting all of them.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.mix.hashing import row_hash, splitmix64
from curation.mix.shuffle import BucketSpill


def conform(t: pa.Table, schema: pa.Schema, source: str) -> pa.Table:
    """The table in the output schema: the `source` column filled in, missing columns null, types cast."""
    n = t.num_rows
    cols = []
    for f in schema:
        if f.name == "source":
            col = pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, np.int32)), pa.array([source])
            ).dictionary_decode()
        elif f.name in t.column_names:
            col = t.column(f.name)
            if col.type != f.type:
                col = pc.cast(col, f.type)
        else:
            col = pa.nulls(n, f.type)
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=schema)


def scatter(
    spill: BucketSpill,
    schema: pa.Schema,
    source: str,
    source_index: int,
    shuffle_key: np.uint64,
    t: pa.Table,
    rows: np.ndarray,
    first: np.ndarray,
    stop: np.ndarray,
) -> int:
    """Spill copies first[i] .. stop[i]-1 of row i of `t` (global row numbers `rows`); returns how many."""
    counts = np.maximum(stop - first, 0).astype(np.int64)
    total = int(counts.sum())
    if total == 0:
        return 0
    n = t.num_rows
    every_row_once = total == n and bool((counts == 1).all())
    idx = np.arange(n) if every_row_once else np.repeat(np.arange(n), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    copy_no = (first[idx] + (np.arange(total) - starts)).astype(np.uint64)
    rows_out = rows[idx].astype(np.uint64)
    keys = splitmix64(row_hash(shuffle_key, rows_out) ^ splitmix64(copy_no + np.uint64(0x51ED)))
    spill.add(
        conform(t if every_row_once else t.take(pa.array(idx)), schema, source),
        keys,
        np.full(total, source_index, np.uint16),
        rows_out,
    )
    return total
