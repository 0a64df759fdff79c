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
    if lock.get("injections"):
        problems += _check_injections(root, lock)
    if lock.get("reflections"):
        from curation.mix.reflections import check

        problems += check(root, lock)
    return problems


def _check_injections(root: Path, lock: dict) -> list[str]:
    """The injected rows in the shards against the lock: how many there are, and that each recorded position holds
    the recorded document (shards are read in the lock's order: the stream the trainer reads)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = [root / o["path"] for o in lock["outputs"]]
    if not all(p.exists() for p in paths):
        return []  # already reported as missing outputs
    try:
        t = pa.concat_tables([pq.read_table(p, columns=["id", "source"]) for p in paths])
    except (pa.ArrowInvalid, OSError) as e:
        return [f"output unreadable: {str(e).splitlines()[0]} (cannot check the injected documents)"]
    ids, src = t.column("id").to_pylist(), t.column("source").to_pylist()
    problems = []
    for inj in lock["injections"]:
        name = inj["source"]
        found = [k for k, s in enumerate(src) if s == name]
        if len(found) != inj["documents"] or len(inj["positions"]) != inj["documents"]:
            problems.append(
                f"injection changed: source {name} has {len(found)} rows in the shards, the lock records "
                f"{inj['documents']} documents at {len(inj['positions'])} positions"
            )
        moved = [
            (p, i)
            for p, i in zip(inj["positions"], inj["position_ids"], strict=False)
            if not (0 <= p < len(ids)) or src[p] != name or ids[p] != i
        ]
        if moved:
            p, i = moved[0]
            there = f"{src[p]} document {ids[p]}" if 0 <= p < len(ids) else "nothing"
            problems.append(
                f"injection moved: {len(moved)} recorded position(s) of source {name} differ, e.g. position {p} "
                f"should hold {i} but holds {there}"
            )
        elif set(found) != set(inj["positions"]):
            problems.append(f"injection changed: source {name} has rows at positions the lock does not record")
    return problems
