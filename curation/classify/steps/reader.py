"""Reads Parquet/JSONL shards into documents, validating as it goes so bad input fails one shard, clearly."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datatrove.data import Document, DocumentsPipeline
from datatrove.io import get_datafolder, get_shard_from_paths_file
from datatrove.pipeline.readers.base import BaseDiskReader
from datatrove.utils.logging import logger
from datatrove.utils.stats import MetricStats
from fsspec.implementations.local import LocalFileSystem

from curation.classify.steps.base import TEXT_REF, abort_shard, end_of_shard
from curation.core.errors import ShardError, ShardsFailed
from curation.core.shards import attribute_path, fingerprint_of, input_fingerprint, stored_fingerprint  # noqa: F401

FIX_TAG = "or pass --on-bad-doc tag to keep such rows with an `error` column"


# the identity of a shard its attribute file records (the attribute file's row count is the shard's): kernel functions,
# so that `curate mix build` checks attributes against its corpus with the same definition
_fingerprint_of = fingerprint_of


class ShardReader(BaseDiskReader):
    """One document per input row, in order; shards whose attributes are already committed are skipped.

    With `on_bad_doc="error"` an empty/oversized/undecodable row fails its shard (nothing of it is written);
    with `"tag"` the row is kept, unscored, with the problem in the `error` column.
    """

    name = "📚 Shard reader"

    def __init__(
        self,
        data_folder: str,
        paths_file: str,
        output_folder: str,
        text_key: str = "text",
        id_key: str = "id",
        on_bad_doc: str = "error",
        max_doc_chars: int = 5_000_000,
        batch_size: int = 1000,
        doc_progress: bool = False,
    ):
        super().__init__(
            data_folder, paths_file=paths_file, text_key=text_key, id_key=id_key, doc_progress=doc_progress
        )
        self.output_folder = get_datafolder(output_folder)
        self.on_bad_doc = on_bad_doc
        self.max_doc_chars = max_doc_chars
        self.batch_size = batch_size

    # -- resumability -------------------------------------------------------------------------------------
    def fingerprint(self, rel: str) -> dict:
        if isinstance(self.data_folder.fs, LocalFileSystem):
            return input_fingerprint(self.data_folder.resolve_paths(rel), rel)
        info = self.data_folder.info(rel)  # a remote store: what it reports (its content hash where it gives one)
        tag = next((str(info[k]) for k in ("ETag", "etag", "md5Hash", "checksum", "crc32c") if info.get(k)), None)
        return {
            "path": rel,
            "size": int(info.get("size") or 0),
            "mtime": float(info.get("mtime") or info.get("created") or 0),
            **({"etag": tag} if tag else {}),
        }

    def is_committed(self, rel: str, fingerprint: dict) -> bool:
        out = attribute_path(rel)
        if not self.output_folder.isfile(out):
            return False
        try:
            with self.output_folder.open(out, "rb") as f:
                return _fingerprint_of(f) == fingerprint
        except Exception:  # unreadable leftovers are simply redone
            return False

    # -- validation ----------------------------------------------------------------------------------------
    def _document(self, rel: str, row: int, doc_id, text, problem: str | None = None) -> Document:
        where = f"row {row}" + (f" (id {doc_id})" if doc_id is not None else "")
        if problem is None:
            if doc_id is None or doc_id == "":
                problem = f"no `{self.id_key}`"
            elif not isinstance(text, str) or not text or text.isspace():  # `not text.strip()` without copying the text
                problem = "empty text"
            elif len(text) > self.max_doc_chars:
                problem = f"text of {len(text):,} characters exceeds --max-doc-chars {self.max_doc_chars:,}"
        if problem and self.on_bad_doc == "error":
            fix = (
                f"drop or split that row, raise --max-doc-chars, {FIX_TAG}"
                if "exceeds" in problem
                else f"fix or drop that row, {FIX_TAG}"
            )
            raise ShardError(rel, f"{where} has {problem}", fix)
        meta = {"error": problem} if problem else {}
        return Document(
            text="" if problem else text, id=str(doc_id if doc_id is not None else f"{rel}#{row}"), metadata=meta
        )

    def _read_parquet(self, rel: str):
        try:
            f = self.data_folder.open(rel, "rb")
            pf = pq.ParquetFile(f)
        except Exception as e:
            raise ShardError(
                rel,
                f"not a readable Parquet file ({type(e).__name__}: {str(e).splitlines()[0][:120]})",
                "re-export the shard or move it out of the corpus",
            ) from None
        names = pf.schema_arrow.names
        for key, flag in ((self.id_key, "--id-key"), (self.text_key, "--text-key")):
            if key not in names:
                raise ShardError(rel, f"has no column `{key}` (columns: {', '.join(names[:12])})", f"pass {flag} NAME")
        row = 0
        try:
            for batch in pf.iter_batches(batch_size=self.batch_size, columns=[self.id_key, self.text_key]):
                texts = batch.column(1)
                # UTF-8 sizes from Arrow's offsets, so the writer need not re-encode every text (~1 ns/byte)
                utf8 = pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)
                sizes = pc.binary_length(texts).to_pylist() if utf8 else [None] * len(texts)
                for i, (doc_id, text, size) in enumerate(
                    zip(batch.column(0).to_pylist(), texts.to_pylist(), sizes, strict=False)
                ):
                    doc = self._document(rel, row, doc_id, text)
                    if size is not None and not doc.metadata:
                        # the text's Arrow array, so the tagging steps batch it into polars without a copy
                        doc.metadata["n_bytes"], doc.metadata[TEXT_REF] = size, (texts, i, doc.text)
                    yield doc
                    row += 1
        except ShardError:
            raise
        except Exception as e:
            raise ShardError(
                rel, f"corrupt Parquet data after row {row} ({type(e).__name__})", "re-export the shard"
            ) from None
        finally:
            f.close()

    def _read_jsonl(self, rel: str):
        try:
            f = self.data_folder.open(rel, "rb", compression="infer")
        except Exception as e:
            raise ShardError(rel, f"cannot be opened ({type(e).__name__})", "check the path and permissions") from None
        with f:
            for row, raw in enumerate(iter_lines(f)):
                bad_utf8 = None
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    if self.on_bad_doc == "error":
                        raise ShardError(
                            rel,
                            f"line {row + 1} is not valid UTF-8 (byte {e.start})",
                            f"re-encode the file as UTF-8, {FIX_TAG}",
                        ) from None
                    line = raw.decode("utf-8", errors="replace")
                    bad_utf8 = f"invalid UTF-8 at byte {e.start} (replaced)"
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ShardError(
                        rel, f"line {row + 1} is not valid JSON ({e.msg})", "fix or remove that line"
                    ) from None
                if not isinstance(obj, dict) or self.text_key not in obj or self.id_key not in obj:
                    missing = self.text_key if not isinstance(obj, dict) or self.text_key not in obj else self.id_key
                    flag = "--text-key" if missing == self.text_key else "--id-key"
                    raise ShardError(rel, f"line {row + 1} has no field `{missing}`", f"pass {flag} NAME")
                yield self._document(rel, row, obj[self.id_key], obj[self.text_key], bad_utf8)

    def read_file(self, filepath: str) -> DocumentsPipeline:
        return self._read_parquet(filepath) if filepath.endswith(".parquet") else self._read_jsonl(filepath)

    def _add_doc_lengths(self, lengths: list[int]) -> None:
        """The same `doc_len` statistic as `update_doc_stats` per document (count, total, mean, variance, range)."""
        if not lengths:
            return
        x = np.asarray(lengths, dtype=np.float64)
        mean = float(x.mean())
        part = MetricStats(
            total=int(x.sum()),
            n=len(lengths),
            mean=mean,
            min=int(x.min()),
            max=int(x.max()),
            _running_variance=float(((x - mean) ** 2).sum()),
            unit="doc",
        )
        stat = self.stats["doc_len"]
        stat.__dict__.update((stat + part).__dict__)

    # -- driver ---------------------------------------------------------------------------------------------
    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        failed = []
        for rel in get_shard_from_paths_file(self.paths_file, rank, world_size):
            fp = self.fingerprint(rel)
            if self.is_committed(rel, fp):
                self.stat_update("shards_already_done")
                continue
            lengths: list[int] = []  # datatrove's doc_len statistic, added per shard (per document it costs ~2 us)
            try:
                for doc in self.read_file(rel):
                    doc.metadata["shard"], doc.metadata["fingerprint"] = rel, fp
                    lengths.append(len(doc.text))
                    yield doc
            except ShardError as e:
                self._add_doc_lengths(lengths)
                failed.append(str(e))
                record_error(self.output_folder, rel, str(e))
                logger.error(str(e))
                self.stat_update("shards_failed")
                yield abort_shard(rel)
                continue
            self._add_doc_lengths(lengths)
            clear_error(self.output_folder, rel)
            self.stat_update("shards_read")
            yield end_of_shard(rel, len(lengths), fp)
        if failed:
            raise ShardsFailed(f"{len(failed)} shard(s) failed in task {rank}: " + " | ".join(failed))


def iter_lines(f):
    """Raw lines (bytes, no newline), skipping blank ones; bytes so a bad byte is reported, not silently replaced."""
    for line in f:
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield line


def error_path(rel: str) -> str:
    return os.path.join("_errors", attribute_path(rel) + ".txt")


def record_error(folder, rel: str, message: str) -> None:
    with folder.open(error_path(rel), "wt") as f:
        f.write(message + "\n")


def clear_error(folder, rel: str) -> None:
    if folder.isfile(error_path(rel)):
        folder.rm(error_path(rel))
