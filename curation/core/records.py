"""Row-by-row reading of small record files (JSONL, JSON arrays, Parquet) with one-line errors naming file and line.

Used for item files (evals) and post-training data (train.posttrain); corpus shards go through datatrove readers.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from pathlib import Path

from curation.core.errors import CurationError


def read_records(path: Path) -> Iterable[tuple[int, dict]]:
    """(line number, row) for JSONL (gzipped too), a JSON array, or Parquet; a bad line is an error naming file and
    line."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for corrupt files
            raise CurationError(
                f"{path}: not a readable Parquet file ({str(e).splitlines()[0]}); re-export it"
            ) from None
        yield from enumerate(table.to_pylist(), start=1)
        return
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:  # truncated, or not gzip at all
            raise CurationError(f"{path}: not a readable gzip file ({e}); re-export it") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CurationError(f"{path}: not valid UTF-8 (byte {e.start}); re-save the file as UTF-8") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise CurationError(f"{path}:{e.lineno}: malformed JSON array ({e.msg}); fix that line") from None
        yield from enumerate(data, start=1)
        return
    # split on "\n" only: str.splitlines() also breaks at U+0085/U+2028, which JSON strings may hold raw (MMLU does)
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise CurationError(f"{path}:{n}: malformed JSONL ({e.msg}); fix or remove that line") from None
        if not isinstance(row, dict):
            raise CurationError(f"{path}:{n}: each JSONL line must be an object; fix that line")
        yield n, row
