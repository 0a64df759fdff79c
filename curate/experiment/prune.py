"""Pruning: a training node's Megatron checkpoints (weights and optimizer state, 1.6 GB a save for SmolLM2-135M) are
removed once every node that reads them has finished, so a study of many runs fits its disk. The readers of a train
node are the nodes that depend on it in the graph: its convert nodes (each reads one saved iteration) and the midtrain
/ cpt runs that continue or start from a base run. What a finished node still needs downstream is the converted model,
not the trainer's checkpoint.

The pruned node stays finished: its marker (node.json) drops the removed files from `files` and records them under
`pruned`. When a node that reads the pruned checkpoint is unfinished later (a new condition continuing a base run, a
deleted converted model), the plan runs the train node again from an empty directory (`redo_pruned`) instead of
letting its reader fail on a missing checkpoint. Only files the node's marker recorded (files the node wrote) are
removed, with the hidden files the trainer wrote beside them, and directories only when left empty.
`train.keep_checkpoints: true` in the experiment file turns it off.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from curate.experiment.graph import MARKER, Node

# what a finished node of each kind keeps that only its dependents read, relative to its directory
PRUNABLE = {"train": ("run/checkpoints/",)}


def readers(nodes: Iterable[Node]) -> dict[str, list[str]]:
    """{node id: the ids of the nodes that read it (depend on it)}."""
    out: dict[str, list[str]] = {}
    for n in nodes:
        for d in n.deps:
            out.setdefault(d, []).append(n.id)
    return out


def _marker(out: Path, node: Node) -> dict | None:
    try:
        return json.loads((out / node.dir / MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_pruned(out: Path, node: Node) -> bool:
    m = _marker(out, node)
    return bool(m and m.get("pruned"))


def redo_pruned(out: Path, nodes: list[Node], done: dict[str, bool]) -> list[tuple[str, str]]:
    """Finished nodes whose pruned checkpoints an unfinished node reads, marked unfinished in `done` (repeated until
    nothing changes: a midtrain run done again reads its base run's checkpoint too); [(id, the reader)]."""
    by_reader = readers(nodes)
    redo: list[tuple[str, str]] = []
    changed = True
    while changed:
        changed = False
        for n in nodes:
            if n.kind not in PRUNABLE or not done.get(n.id) or not is_pruned(out, n):
                continue
            waiting = [r for r in by_reader.get(n.id, []) if not done.get(r)]
            if waiting:
                done[n.id] = False
                redo.append((n.id, waiting[0]))
                changed = True
    return redo


def _inside(path: Path, root: Path) -> bool:
    real, top = os.path.realpath(path), os.path.realpath(root)
    return real.startswith(top + os.sep)


def prune_node(out: Path, node: Node, reader_ids: list[str]) -> tuple[int, int]:
    """Removes what no later node reads from one finished node: the marker first (so a kill in between leaves a
    finished node whose record names what is still to go), then the files it recorded. Returns (files, bytes)."""
    d = out / node.dir
    marker = _marker(out, node)
    if marker is None:
        return 0, 0
    prefixes = PRUNABLE[node.kind]
    files = marker.get("files") or {}
    gone = {rel: size for rel, size in files.items() if rel.startswith(prefixes)}
    record = marker.get("pruned") or {}
    if gone:
        record = {
            "files": {**(record.get("files") or {}), **gone},
            "bytes": int(record.get("bytes", 0)) + sum(gone.values()),
            "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "readers": reader_ids,
        }
        marker["files"] = {rel: size for rel, size in files.items() if rel not in gone}
        marker["pruned"] = record
        tmp = d / (MARKER + ".tmp")
        tmp.write_text(json.dumps(marker, indent=1))
        os.replace(tmp, d / MARKER)
    n, freed = 0, 0
    rels = list(record.get("files") or {})  # also what a kill left of an earlier prune
    # the hidden files beside them (a checkpoint's `.metadata`), which markers leave out as bookkeeping: the same
    # writer made them, in the same directories
    for parent in sorted({(d / rel).parent for rel in rels}):
        if parent.is_dir() and _inside(parent, d):
            rels += [str((parent / f.name).relative_to(d)) for f in parent.iterdir() if f.name.startswith(".")]
    for rel in rels:
        p = d / rel
        if not os.path.lexists(p) or not _inside(p.parent, d) or p.is_dir():
            continue
        freed += p.lstat().st_size
        p.unlink()
        n += 1
    for prefix in prefixes:  # the directories the removed files left empty, deepest first
        top = d / prefix
        if top.is_dir() and not top.is_symlink() and _inside(top, d):
            for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass  # not empty: something the node did not record stays
    return n, freed


def prune_finished(out: Path, nodes: list[Node], done: Callable[[str], bool], log: Callable[[str], None]) -> int:
    """Prunes every finished node whose readers have all finished; one line per node pruned. Returns bytes freed."""
    total, by_id = 0, {n.id: n for n in nodes}
    for node_id, rs in readers(nodes).items():
        node = by_id.get(node_id)
        if node is None or node.kind not in PRUNABLE or not done(node_id) or not all(done(r) for r in rs):
            continue
        count, freed = prune_node(out, node, rs)
        if count:
            total += freed
            log(f"pruned {node_id}: {count} checkpoint files, {freed:,} bytes freed (its readers have finished)")
    return total
