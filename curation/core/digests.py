"""Content digests of input files, cached by (path, size, mtime, inode) so an unchanged file is hashed once.

Keys built from content, not modification times, survive what changes only the times: a fresh clone, a copy of the
corpus to another disk, a restored backup. The cache is an optimisation only: a lost or stale entry costs a rehash,
never a wrong answer (an entry is used only while size, mtime and inode all still match).

Files above `FULL_HASH_MAX` (256 MiB) are identified by their size and their first and last `SAMPLE` (8 MiB) bytes, so
planning over a multi-terabyte corpus reads a few MB per shard, not the corpus: a Parquet file's footer (row-group
offsets, sizes and statistics) and a gzip member's trailer (CRC-32 and length) sit in the tail, so a rewritten shard
of those formats changes the sample. A same-size in-place edit in the middle of a large plain-text file would not:
touch nothing that way, or set `CURATE_FULL_HASH=1`.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

_LOCK = threading.Lock()
_MEMO: dict[str, list] | None = None


FULL_HASH_MAX = 256 << 20
SAMPLE = 8 << 20


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def content_digest(path: str | Path) -> str:
    """sha256 of the whole file, or for a file above FULL_HASH_MAX "sampled:" + sha256 of size, head and tail."""
    size = os.path.getsize(path)
    if size <= FULL_HASH_MAX or os.environ.get("CURATE_FULL_HASH") == "1":
        return file_sha256(path)
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(SAMPLE))
        f.seek(size - SAMPLE)
        h.update(f.read(SAMPLE))
    return "sampled:" + h.hexdigest()


def cache_path() -> Path:
    root = os.environ.get("CURATE_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                              os.path.expanduser("~/.cache"), "curate")
    return Path(root) / "digests.json"


def _load() -> dict[str, list]:
    global _MEMO
    if _MEMO is None:
        try:
            _MEMO = json.loads(cache_path().read_text())
        except (OSError, ValueError):
            _MEMO = {}
    return _MEMO


def _save(memo: dict) -> None:
    p = cache_path()
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo))
        os.replace(tmp, p)
    except OSError:   # a read-only home: hashing still works, only uncached
        pass


def cached_sha256(path: str | Path) -> str:
    """`content_digest` of the file; reuses the cached digest while size, mtime and inode are unchanged."""
    p = os.path.abspath(path)
    st = os.stat(p)
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
    with _LOCK:
        hit = _load().get(p)
        if hit and hit[:3] == stamp:
            return hit[3]
    digest = content_digest(p)
    with _LOCK:
        memo = _load()
        memo[p] = [*stamp, digest]
        _save(memo)
    return digest
