"""Shared plumbing of the tagging blocks: batching, and shard markers that flow through untouched."""

from __future__ import annotations

from abc import abstractmethod

import polars as pl
import pyarrow as pa
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

STANCES = ("aligned", "misaligned", "neutral")
ATTRS = "attributes"  # key in Document.metadata holding this document's attribute columns
MARKER = "_shard_marker"  # metadata key of the end-of-shard / abort-shard markers the reader emits
TEXT_REF = "_text_ref"  # metadata key: (Arrow string array, row, the str given to doc.text) where the reader had one


def end_of_shard(rel: str, ndocs: int, fingerprint: dict) -> Document:
    """Tells the writer a shard was read completely, so its attribute file can be committed."""
    return Document(
        text="", id=f"__end__/{rel}", metadata={MARKER: "end", "shard": rel, "ndocs": ndocs, "fingerprint": fingerprint}
    )


def abort_shard(rel: str) -> Document:
    """Tells the writer to discard what it holds of a shard that failed part-way."""
    return Document(text="", id=f"__abort__/{rel}", metadata={MARKER: "abort", "shard": rel})


def is_marker(doc: Document) -> bool:
    return MARKER in doc.metadata


def attrs(doc: Document) -> dict:
    return doc.metadata.setdefault(ATTRS, {})


def first_score(a: dict, keys: tuple[str, ...]) -> float | None:
    """The first of `keys` an earlier stage filled in (most refined first), or None: a cascade stage's prior."""
    for key in keys:
        if a.get(key) is not None:
            return a[key]
    return None


def text_series(docs: list[Document]) -> pl.Series:
    """The documents' texts as a polars Series, without copying them out of Python where the reader can help.

    Turning Python strings into a polars Series re-encodes every one to UTF-8 (most real text is not pure ASCII),
    ~1 ns a byte and a second UTF-8 copy cached in each string. The Parquet reader keeps a reference to the Arrow
    array each text came from (`TEXT_REF`), so a batch of rows is a zero-copy slice of it (or an Arrow `take` for
    a scattered subset). A reference counts only while `doc.text` is still the very string the reader put there
    (an `is` test), so a step that rewrites the text falls back to the copy.
    """
    runs: list[tuple] = []  # (array, rows) for consecutive documents from the same array
    for d in docs:
        ref = d.metadata.get(TEXT_REF)
        if ref is None or ref[2] is not d.text:
            return pl.Series([d.text for d in docs], dtype=pl.Utf8)
        if runs and runs[-1][0] is ref[0]:
            runs[-1][1].append(ref[1])
        else:
            runs.append((ref[0], [ref[1]]))
    if not runs:
        return pl.Series([], dtype=pl.Utf8)
    chunks = [
        a.slice(r[0], len(r)) if r == list(range(r[0], r[0] + len(r))) else a.take(pa.array(r, pa.int64()))
        for a, r in runs
    ]
    if len({c.type for c in chunks}) > 1:  # string and large_string shards in one batch
        chunks = [c.cast(pa.large_string()) for c in chunks]
    return pl.Series(pa.chunked_array(chunks), dtype=pl.Utf8)


def scorable(doc: Document) -> bool:
    """Documents the reader flagged as bad (only kept under --on-bad-doc tag) get no scores."""
    return not doc.metadata.get("error")


class TaggerStep(PipelineStep):
    """A block that adds attribute columns to documents in batches; markers pass straight through.

    Subclasses declare the columns they add (`columns`) so the writer's schema is known before any data.
    """

    type = "🏷️ - TAGGER"
    batch_size: int = 256

    @abstractmethod
    def columns(self) -> dict[str, pa.DataType]: ...

    @abstractmethod
    def tag_batch(self, docs: list[Document]) -> None: ...

    def _flush(self, batch: list[Document]):
        if batch:
            with self.track_time("batch"):
                self.tag_batch(batch)
            self.stat_update("documents", value=len(batch))
        return batch

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        batch: list[Document] = []
        for doc in data:
            if is_marker(doc):
                yield from self._flush(batch)
                batch = []
                yield doc
                continue
            batch.append(doc)
            if len(batch) >= self.batch_size:
                yield from self._flush(batch)
                batch = []
        yield from self._flush(batch)
