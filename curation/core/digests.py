"""Content digests of input files, cached by (path, size, mtime, ctime, inode) so an unchanged file is hashed once.

Keys built from content, not modification times, survive what changes only the times: a fresh clone, a copy of the
corpus to another disk, a restored backup. The cache is an optimisation only: a lost or stale entry costs a rehash,
never a wrong answer. An entry is used only while size, mtime, ctime and inode all still match, and the kernel sets
ctime on every write (no user call can set it back), so an edit hidden by restoring the mtime (`touch -r`) is hashed
again.

Files above `FULL_HASH_MAX` (256 MiB) are identified by their size and their first and last `SAMPLE` (8 MiB) bytes, so
planning over a multi-terabyte corpus reads a few MB per shard, not the corpus: a Parquet file's footer (row-group
offsets, sizes and statistics) and a gzip member's trailer (CRC-32 and length) sit in the tail, so a rewritten shard
of those formats changes the sample. A same-size in-place edit in the middle of a large plain-text file would not:
touch nothing that way, or set `CURATE_FULL_HASH=1`. Callers that read the whole file anyway (`curate classify`, the
attribute check of `curate mix build`) ask for the full digest (`full=True`) whatever the size.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import threading
import time
from pathlib import Path

_LOCK = threading.Lock()
_MEMO: dict[str, list] | None = None
_SAVES = {"dirty": False, "last": float("-inf")}
SAVE_EVERY = (
    2.0  # seconds between cache writes while hashing many files (each write is the whole cache); flush() at exit
)


FULL_HASH_MAX = 256 << 20
SAMPLE = 8 << 20


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _sampled(size: int, full: bool = False) -> bool:
    return not full and size > FULL_HASH_MAX and os.environ.get("CURATE_FULL_HASH") != "1"


def content_digest(path: str | Path, full: bool = False) -> str:
    """sha256 of the whole file, or for a file above FULL_HASH_MAX (unless `full`) "sampled:" + sha256 of size, head
    and tail."""
    size = os.path.getsize(path)
    if not _sampled(size, full):
        return file_sha256(path)
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(SAMPLE))
        f.seek(size - SAMPLE)
        h.update(f.read(SAMPLE))
    return "sampled:" + h.hexdigest()


def cache_path() -> Path:
    root = os.environ.get("CURATE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "curate"
    )
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
    _SAVES.update(dirty=False, last=time.monotonic())
    p = cache_path()
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo))
        os.replace(tmp, p)
    except OSError:  # a read-only home: hashing still works, only uncached
        pass


def flush() -> None:
    """Writes unsaved cache entries now (before handing work to other processes that will look them up)."""
    with _LOCK:
        if _SAVES["dirty"] and _MEMO is not None:
            _save(_MEMO)


atexit.register(flush)


def stamp(path: str | Path) -> list[int]:
    """What a cached digest is valid for: size, mtime, ctime (set by the kernel on every write) and inode."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def cached_sha256(path: str | Path, full: bool = False) -> str:
    """`content_digest(path, full)`; reuses the cached digest while size, mtime, ctime and inode are unchanged."""
    p = os.path.abspath(path)
    st = stamp(p)
    key = p + ("#sampled" if _sampled(st[0], full) else "")
    with _LOCK:
        hit = _load().get(key)
        if hit and hit[:4] == st:
            return hit[4]
    digest = content_digest(p, full)
    with _LOCK:
        memo = _load()
        memo[key] = [*st, digest]
        _SAVES["dirty"] = True
        if time.monotonic() - _SAVES["last"] >= SAVE_EVERY:
            _save(memo)
    return digest
