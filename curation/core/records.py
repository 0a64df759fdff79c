"""Row-by-row reading of record files (JSONL, JSON arrays, Parquet) with one-line errors naming file and line.

Used for item files (evals) and post-training data (train.posttrain); corpus shards go through datatrove readers.
JSONL (gzipped too) and Parquet stream (a line / a record batch at a time), so a file of any size reads in bounded
memory; a JSON array is parsed whole (it has no row boundaries to stream on).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from curation.core.errors import CurationError


def _lines(path: Path) -> Iterator[bytes]:
    """Raw lines split on b"\\n" only (str.splitlines() also breaks at U+0085/U+2028, which JSON strings may hold raw:
    MMLU does); a corrupt or truncated gzip is an error naming the file wherever it shows."""
    gz = path.name.endswith(".gz")
    with gzip.open(path, "rb") if gz else path.open("rb") as f:
        while True:
            try:
                line = f.readline()
            except (OSError, EOFError) as e:  # truncated, or not gzip at all
                if not gz:
                    raise
                raise CurationError(f"{path}: not a readable gzip file ({e}); re-export it") from None
            if not line:
                return
            yield line


def _decode(path: Path, n: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CurationError(
            f"{path}:{n}: not valid UTF-8 (byte {e.start} of the line); re-save the file as UTF-8"
        ) from None


def read_records(path: Path) -> Iterable[tuple[int, dict]]:
    """(line number, row) for JSONL (gzipped too), a JSON array, or Parquet (row number); a bad line is an error naming
    file and line."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        n = 0
        try:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
                for row in batch.to_pylist():
                    n += 1
                    yield n, row
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for corrupt files
            if isinstance(e, CurationError):
                raise
            raise CurationError(
                f"{path}: not a readable Parquet file ({str(e).splitlines()[0]}); re-export it"
            ) from None
        return
    lines = _lines(path)
    first = True
    for n, raw in enumerate(lines, start=1):
        line = _decode(path, n, raw)
        if not line.strip():
            continue
        if first and line.lstrip().startswith("["):  # a JSON array: the rest of the file is the same value
            rest = b"".join(lines)
            text = line + _decode(path, n + 1, rest)
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise CurationError(
                    f"{path}:{e.lineno + n - 1}: malformed JSON array ({e.msg}); fix that line"
                ) from None
            yield from enumerate(data, start=1)
            return
        first = False
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise CurationError(f"{path}:{n}: malformed JSONL ({e.msg}); fix or remove that line") from None
        if not isinstance(row, dict):
            raise CurationError(f"{path}:{n}: each JSONL line must be an object; fix that line")
        yield n, row
