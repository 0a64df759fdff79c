"""The corpus side of the data contract: which files are shards, and where each shard's attributes go."""

from __future__ import annotations

import glob as globlib
import os
from pathlib import Path

SHARD_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".jsonl.zst", ".json.gz", ".ndjson")


def is_shard(name: str) -> bool:
    return name.endswith(SHARD_SUFFIXES)


def attribute_path(rel: str) -> str:
    """`a/b/part-0.jsonl.gz` -> `a/b/part-0.parquet`: the attribute file mirrors its shard's relative path."""
    for suffix in sorted(SHARD_SUFFIXES, key=len, reverse=True):
        if rel.endswith(suffix):
            return rel[: -len(suffix)] + ".parquet"
    return rel + ".parquet"


def list_shards(corpus: str) -> tuple[str, list[str]]:
    """(root, sorted relative shard paths) for a directory or a glob; hidden and `_`-prefixed entries are skipped."""
    if any(ch in corpus for ch in "*?["):
        root = corpus.split("*")[0].split("?")[0].split("[")[0]
        root = root if root.endswith(os.sep) or os.path.isdir(root) else os.path.dirname(root)
        files = [f for f in globlib.glob(corpus, recursive=True) if os.path.isfile(f) and is_shard(f)]
    else:
        root = corpus
        if os.path.isfile(corpus):
            root, files = os.path.dirname(corpus) or ".", [corpus]
        else:
            files = [str(p) for p in Path(corpus).rglob("*") if p.is_file() and is_shard(p.name)]
    root = os.path.abspath(root or ".")
    rels = sorted(os.path.relpath(os.path.abspath(f), root) for f in files)
    rels = [r for r in rels if not any(part.startswith((".", "_")) for part in Path(r).parts)]
    return root, rels
