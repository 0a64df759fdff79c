"""The corpus side of the data contract: which files are shards, and where each shard's attributes go."""

from __future__ import annotations

import glob as globlib
import json
import os
from pathlib import Path

FINGERPRINT_KEY = b"curation.input_fingerprint"  # Parquet key/value metadata of an attribute file
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


def input_fingerprint(path: str | Path, rel: str) -> dict:
    """The identity of a local shard that its attribute file records: relative path, size and the sha256 of its bytes
    (cached per file by size, mtime, ctime and inode: curation/core/digests.py). Any edit changes it, a restored mtime
    included, so the shard is redone; a copy or a fresh clone of the corpus keeps it."""
    from curation.core.digests import cached_sha256

    return {"path": rel, "size": os.path.getsize(path), "sha256": cached_sha256(path, full=True)}


def fingerprint_of(f) -> dict | None:
    """The input fingerprint recorded in an attribute file (a path or an open binary file); None if it has none."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(f).schema_arrow.metadata or {}
    raw = meta.get(FINGERPRINT_KEY)
    return json.loads(raw) if raw else None


def stored_fingerprint(attr_path: str | Path) -> dict | None:
    """The input identity an attribute file was written from (None if it records none or is unreadable)."""
    try:
        with open(attr_path, "rb") as f:
            return fingerprint_of(f)
    except Exception:  # a truncated or foreign file
        return None


def same_input(recorded: dict | None, current: dict) -> bool:
    """Whether an attribute file's recorded fingerprint is the shard as it is now: same size and bytes (the relative
    path may differ: attributes of `ROOT` serve a source `ROOT/wiki` as well)."""
    return (
        bool(recorded)
        and recorded.get("sha256") is not None
        and all(recorded.get(k) == current.get(k) for k in ("size", "sha256"))
    )


def _classify_roots(root: str, attr_root: str, recorded_rel: str | None, rel: str) -> tuple[str, str]:
    """(corpus, attributes) of the `curate classify` run that wrote this source's attributes: the source's own, or, when
    the attribute file records a longer relative path (`wiki/part-0.parquet` for a source `ROOT/wiki`), the roots
    above."""
    if recorded_rel and recorded_rel != rel and Path(recorded_rel).parts[-len(Path(rel).parts) :] == Path(rel).parts:
        extra = Path(recorded_rel).parts[: -len(Path(rel).parts)]
        if Path(root).parts[-len(extra) :] == extra and Path(attr_root).parts[-len(extra) :] == extra:
            return str(Path(root).parents[len(extra) - 1]), str(Path(attr_root).parents[len(extra) - 1])
    return root, attr_root


def check_attributes_match(shard: str, rel: str, attrs: str, root: str, attr_root: str, where: str) -> None:
    """Refuses an attribute file computed from another version of its shard (its recorded input fingerprint: size and
    sha256 of the bytes), naming both files and the command that brings the attributes up to date."""
    recorded = stored_fingerprint(attrs)
    current = input_fingerprint(shard, rel)
    if same_input(recorded, current):
        return
    if recorded is None:
        why = "it records no input fingerprint (not written by `curate classify`, or unreadable)"
    elif recorded.get("sha256") is None:
        why = (
            "it records only the shard's size and mtime (written before content fingerprints), so it cannot be checked"
        )
    else:
        why = (
            f"it was computed from {recorded.get('size', 0):,} bytes with sha256 {str(recorded['sha256'])[:12]}, "
            f"the shard now has {current['size']:,} bytes with sha256 {current['sha256'][:12]}"
        )
    croot, aroot = _classify_roots(root, attr_root, (recorded or {}).get("path"), rel)
    from curation.core.errors import CurationError

    raise CurationError(
        f"{attrs}: does not match its shard {shard} ({where}): {why}, so its scores are not those of "
        f"the text there; the attributes are out of date: rerun `curate classify` (`curate classify {croot} "
        f"--output {aroot}` redoes only the shards that changed), then build again"
    )
