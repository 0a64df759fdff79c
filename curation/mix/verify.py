"""`curate mix verify DIR`: recheck the lock against the inputs, the manifest and the outputs; name what changed."""

from __future__ import annotations

import hashlib
from pathlib import Path

from curation.mix.hashing import file_sha256
from curation.mix.lock import read_lock


def verify(root: str | Path, check_manifest: bool = True, progress=None) -> list[str]:
    """One line per difference (empty when everything matches). Raises CurationError when there is no usable lock."""
    root = Path(root)
    lock = read_lock(root)
    problems: list[str] = []
    man = lock["manifest"]
    mp = Path(man["path"])
    if check_manifest:
        if not mp.exists():
            problems.append(f"manifest missing: {mp} (the lock was built from it)")
        elif hashlib.sha256(mp.read_text(encoding="utf-8").encode()).hexdigest() != man["sha256"]:
            problems.append(f"manifest changed: {mp} (sha256 {man['sha256'][:12]} in the lock)")
    for i in lock["inputs"]:
        p = Path(i["path"])
        if not p.exists():
            problems.append(f"input missing: {p} ({i['role']} of source {i['source']})")
            continue
        size = p.stat().st_size
        if size != i["size"]:
            problems.append(f"input changed: {p} ({i['role']} of source {i['source']}; size {i['size']} -> {size})")
        elif file_sha256(p) != i["sha256"]:
            problems.append(f"input changed: {p} ({i['role']} of source {i['source']}; same size, content differs)")
        if progress:
            progress(1)
    listed = set()
    for o in lock["outputs"]:
        p = root / o["path"]
        listed.add(o["path"])
        if not p.exists():
            problems.append(f"output missing: {p}")
        elif p.stat().st_size != o["size"] or file_sha256(p) != o["sha256"]:
            problems.append(f"output changed: {p} (size {o['size']} -> {p.stat().st_size})")
        if progress:
            progress(1)
    shards = root / "shards"
    if shards.is_dir():
        for p in sorted(shards.rglob("*.parquet")):
            rel = str(p.relative_to(root))
            if rel not in listed:
                problems.append(f"output not in the lock: {p}")
    for name in ("blend.json",):
        if not (root / name).exists():
            problems.append(f"hand-off missing: {root / name}")
    return problems
