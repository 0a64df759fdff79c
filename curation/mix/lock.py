"""mix.lock.json: what a build read (manifest hash, every input's size and sha256), what it realised per source,
and what it wrote (every output shard's size, rows and sha256), with the seed and tool versions."""

from __future__ import annotations

import json
from pathlib import Path

from curation.core.digests import cached_sha256
from curation.core.errors import CurationError
from curation.mix.hashing import file_sha256

LOCK_NAME = "mix.lock.json"
LOCK_FORMAT = "curate-mix-lock/1"


def hash_inputs(files: list[tuple[str, str, str]], progress=None) -> list[dict]:
    """files: (source, role, absolute path) -> lock entries."""
    out = []
    for source, role, path in files:
        p = Path(path)
        out.append(
            {
                "source": source,
                "role": role,
                "path": str(p),
                "size": p.stat().st_size,
                "sha256": cached_sha256(p, full=True),
            }
        )  # the attribute check hashed the shards already
        if progress:
            progress(1)
    return out


def describe_outputs(root: Path, files: list[tuple[Path, int]]) -> list[dict]:
    return [
        {"path": str(p.relative_to(root)), "rows": rows, "size": p.stat().st_size, "sha256": file_sha256(p)}
        for p, rows in files
    ]


def write_lock(root: Path, lock: dict) -> Path:
    p = root / LOCK_NAME
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps({"format": LOCK_FORMAT, **lock}, indent=1, sort_keys=False) + "\n")
    tmp.replace(p)
    return p


def read_lock(root: Path) -> dict:
    p = Path(root) / LOCK_NAME
    if not p.exists():
        raise CurationError(
            f"{p}: no lock file; `curate mix build MANIFEST --output {root}` writes it (a build that "
            f"stopped early leaves none)"
        )
    try:
        lock = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CurationError(f"{p}: unreadable lock ({e}); rebuild the mix") from None
    if lock.get("format") != LOCK_FORMAT:
        raise CurationError(f"{p}: format {lock.get('format')!r}, expected {LOCK_FORMAT}; rebuild with this version")
    return lock
