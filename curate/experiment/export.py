"""Part of an experiment's graph run on another machine: the export executor and its two commands.

  export    (here)       `curate experiment export EXP -d DIR --only KINDS -o PACK`: the unfinished nodes of those
                         kinds, packed with what they read: graph.json unchanged, the finished nodes they depend on
                         (markers and files), the inputs their parameters name (eval items, capability suites) under
                         inputs/, and paths.json, which moves those paths into the pack when the graph is loaded.
  run-pack  (there)      `curate experiment run-pack PACK -o WORK --results RES`: the pack's nodes, run by the local
                         executor in a copy of the pack (a second call on the same pack resumes), then RES/
                         results.tar.gz (what the nodes back home read, each node's marker, logs) and summary.json.
  import    (here)       `curate experiment import RES --into DIR`: the results checked against DIR's graph and
                         unpacked; `curate experiment run EXP -o DIR` then runs the report as after a local run.

A pack needs no experiment file and none of this machine's paths; names that are not paths (a model alias such as
smollm2) must resolve there as here.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from curate.experiment.graph import (
    MARKER,
    PATHS,
    PATHS_FORMAT,
    RECORDS,
    SCRATCH,
    Node,
    graph_digest,
    is_done,
    node_state,
    read_graph,
)
from curate.experiment.plan import Plan, Submitted, plan_from_directory
from curation.core.errors import CurationError
from curation.core.provenance import host

PACK_FILE = "pack.json"
PACK_FORMAT = "curate-experiment-pack/1"
RESULTS_FILE = "results.tar.gz"
RESULTS_FORMAT = "curate-experiment-results/1"
SUMMARY = "summary.json"


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


# ------------------------------------------------------------------------------------------------ export (here)
def external_paths(nodes: list[Node], markers: list[dict], out: Path) -> dict[str, set[str] | None]:
    """Absolute paths outside the experiment directory that the nodes' parameters (and the outputs their finished
    dependencies record) name: {path: the capability suites a data directory is reduced to, or None (all of it)}."""
    found: dict[str, set[str] | None] = {}
    out = out.resolve()

    def walk(obj, suites: set[str] | None = None) -> None:
        if isinstance(obj, dict):
            for key, value in obj.items():
                scored = {s for s in obj.get("suites") or [] if "/" not in s} if key == "data" else None
                walk(value, scored or None)
        elif isinstance(obj, list):
            for value in obj:
                walk(value)
        elif isinstance(obj, str) and os.path.isabs(obj) and os.path.exists(obj):
            path = Path(obj).resolve()
            if path != out and out not in path.parents:
                found[obj] = suites if suites else found.get(obj)

    for node in nodes:
        walk(node.params)
    for marker in markers:
        walk(marker.get("outputs"))
    return found


def _copy_input(src: Path, dst: Path, suites: set[str] | None) -> None:
    if src.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    elif suites:
        for suite in sorted(suites):
            if (src / suite).exists():
                shutil.copytree(src / suite, dst / suite)
    else:
        shutil.copytree(src, dst)


def travelling_marker(node_dir: Path, carried: Callable[[str], bool], left_where: str) -> bytes:
    """The node's marker as it travels: it lists only the files that travel with it (a marker whose files are missing
    reruns its node), and says how many stayed where they were made."""
    marker = json.loads((node_dir / MARKER).read_text())
    files = marker.get("files") or {}
    marker["files"] = {rel: size for rel, size in files.items() if carried(rel)}
    if len(marker["files"]) < len(files):
        marker["files_left"] = {"count": len(files) - len(marker["files"]), "where": left_where}
    return json.dumps(marker, indent=1).encode()


@dataclass
class ExportExecutor:
    """Writes a pack of the unfinished nodes of the kinds in `only` (and what they read) for another machine."""

    only: set[str]
    pack: Path
    label: str = "export"
    name: str = "export"
    jobs: int = 1

    def check(self, plan: Plan) -> None:
        from curate.experiment.run import selected

        if not selected(plan, self.only):
            raise CurationError(
                f"--only {','.join(sorted(self.only))}: every node of these kinds is finished; nothing to export"
            )

    def submit(self, out: Path, plan: Plan, log: Callable[[str], None]) -> Submitted:
        exported = write_pack(out, plan, self.only, Path(self.pack), self.label, log)
        return Submitted(pack=Path(self.pack).resolve(), exported=exported)


def write_pack(out: Path, plan: Plan, only: set[str], pack: Path, label: str, log: Callable[[str], None]) -> list[str]:
    """The pack (see the module docstring); a second export to the same directory replaces only what the first one
    wrote there. Returns the ids of the nodes it runs."""
    from curate.experiment.run import selected
    from curation.core.outputs import claim

    exported = selected(plan, only)
    ids = {n.id for n in exported}
    by_id = {n.id: n for n in plan.nodes}
    carried = [by_id[d] for d in dict.fromkeys(d for n in exported for d in n.deps) if d not in ids]
    markers = [json.loads((out / n.dir / MARKER).read_text()) for n in carried]
    owned = claim(pack, "experiment export", inputs=[out], flag="--output", lock=True)
    try:
        owned.clear()
        root = owned.root
        shutil.copyfile(out / "graph.json", owned.path("graph.json"))  # unchanged: the keys are the keys back home
        owned.tree("inputs")
        packed: dict[str, str] = {}  # a path the graph names -> its place in the pack
        for orig, suites in sorted(external_paths(exported, markers, out).items()):  # a directory before its files
            parent = next((p for p in packed if orig.startswith(p + "/")), None)
            if parent:  # inside a directory already packed: the same place inside its copy
                rel = packed[parent] + orig[len(parent) :]
                if not (root / rel).exists():
                    _copy_input(Path(orig), root / rel, suites)
            else:
                rel = f"inputs/{len(packed)}/{Path(orig).name}"
                _copy_input(Path(orig), root / rel, suites)
            packed[orig] = rel
        owned.path(PATHS).write_text(json.dumps({"format": PATHS_FORMAT, "paths": packed}, indent=1))
        owned.tree("nodes")
        for node in carried:  # the finished nodes the exported ones read: their files, less scratch, and markers
            scratch = SCRATCH.get(node.kind, ())
            marker = json.loads((out / node.dir / MARKER).read_text())
            files = [rel for rel in marker.get("files") or {} if not rel.startswith(scratch)]
            for rel in files:
                (root / node.dir / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(out / node.dir / rel, root / node.dir / rel)
            (root / node.dir).mkdir(parents=True, exist_ok=True)
            kept = set(files)
            (root / node.dir / MARKER).write_bytes(travelling_marker(out / node.dir, kept.__contains__, str(out)))
        aliases = sorted(
            {n.params["source"] for n in exported if n.kind == "init" and not os.path.exists(n.params["source"])}
        )
        sizes = {
            "nodes": _size(root / "nodes"),
            "inputs": _size(root / "inputs"),
            "graph": _size(root / "graph.json"),
        }
        manifest = {
            "format": PACK_FORMAT,
            "name": plan.name,
            "label": label,
            "exported_from": str(out),
            "graph_sha256": graph_digest(plan.nodes),
            "kinds": sorted(only),
            "nodes": {n.id: n.key for n in exported},
            "carried": {n.id: n.key for n in carried},
            "paths": packed,
            "names_not_packed": aliases,
            "host": host(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "sizes": sizes,
        }
        owned.path(PACK_FILE).write_text(json.dumps(manifest, indent=1))
    finally:
        owned.release()
    log(
        f"pack {root}: {len(exported)} nodes to run ({', '.join(sorted(only))}), {_mb(sum(sizes.values()))}: "
        f"{len(carried)} finished nodes they read {_mb(sizes['nodes'])}, {len(packed)} inputs {_mb(sizes['inputs'])}"
    )
    for name in aliases:
        log(f"note: {name} is a name, not a path: it is not packed and must resolve where the pack runs")
    return [n.id for n in exported]


def read_pack(pack: Path) -> dict:
    path = Path(pack) / PACK_FILE
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("format") != PACK_FORMAT:
            raise ValueError(manifest.get("format"))
    except (OSError, ValueError, AttributeError) as e:
        raise CurationError(
            f"{path}: not a `curate experiment export` pack ({type(e).__name__}); give the directory export wrote"
        ) from None
    return manifest


# ------------------------------------------------------------------------------------------------ run-pack (there)
def _train_metrics(run_dir: Path) -> dict:
    from train.metrics import read_metrics

    lines = read_metrics(run_dir) if (run_dir / "metrics.jsonl").exists() else []
    steady = lines[1:] or lines  # the first logged step holds compilation and warm-up
    tps = [x["tokens_per_s"] for x in steady if x.get("tokens_per_s")]
    mfu = [x["mfu"] for x in steady if x.get("mfu") is not None]
    return {
        "steps": lines[-1]["iteration"] if lines else None,
        "tokens": lines[-1].get("tokens") if lines else None,
        "loss": lines[-1].get("loss") if lines else None,
        "tokens_per_s": sum(tps) / len(tps) if tps else None,
        "mfu": sum(mfu) / len(mfu) if mfu else None,
    }


def _device() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name()
    except ImportError:
        pass
    return f"cpu ({host()})"


@dataclass
class PackRun:
    work: Path
    results: Path
    summary: dict
    ran: list[str] = field(default_factory=list)


def run_pack(
    pack: str | Path,
    work: str | Path,
    results: str | Path,
    jobs: int = 1,
    fresh: bool = False,
    log: Callable[[str], None] = print,
) -> PackRun:
    """Runs the pack's nodes in WORK, a copy of the pack (a second call on the same pack keeps the nodes the first
    finished; `fresh` starts over), then writes RESULTS/results.tar.gz and RESULTS/summary.json, also after a failure
    or an interrupt (what finished comes back); a failure is raised after that."""
    from curate.experiment.run import run_local, selected
    from curation.core.outputs import claim

    pack = Path(pack).resolve()
    manifest = read_pack(pack)
    owned = claim(work, "experiment run-pack", inputs=[pack], flag="--output", lock=True)
    failed, ran = None, []
    try:
        out = owned.root
        mine = out / PACK_FILE
        same = mine.is_file() and (out / "graph.json").is_file() and mine.read_text() == (pack / PACK_FILE).read_text()
        if fresh or not same:
            owned.clear()
            for entry in sorted(pack.iterdir()):
                if entry.name.startswith("."):  # the pack's ownership record and lock stay the pack's
                    continue
                if entry.is_dir():
                    shutil.copytree(entry, owned.tree(entry.name), dirs_exist_ok=True)
                else:
                    shutil.copy2(entry, owned.path(entry.name))
            owned.tree("logs")
        else:
            log(f"resuming {out}: the nodes an earlier call on this pack finished are kept (--fresh starts over)")
        plan = plan_from_directory(out)
        ids = set(manifest["nodes"])
        # several node processes share the machine's cores: each gets its share of threads instead of all of them
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, jobs))))
        device = _device()
        log(f"{device}: {len(selected(plan, None, ids))} nodes to run, {jobs} at once")
        started = time.time()
        try:
            ran = run_local(out, plan, jobs, log, ids=ids)
        except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - still bring back what finished, and the logs
            failed = str(e) or type(e).__name__  # KeyboardInterrupt: `timeout -s INT` ahead of a time limit
            log(f"error: {failed}")
        summary = {
            "device": device,
            "wall_s": round(time.time() - started, 1),
            "jobs": jobs,
            "failed": failed,
            "nodes": {},
            "train": {},
        }
        for node in plan.nodes:
            if node.id in ids and is_done(out, node):
                summary["nodes"][node.id] = json.loads((out / node.dir / MARKER).read_text()).get("seconds")
            if node.id in ids and node.kind == "train":
                summary["train"][node.id] = _train_metrics(out / node.dir / "run")
        res = write_results(out, plan, manifest, summary, results)
    finally:
        owned.release()
    if failed:
        raise CurationError(f"{failed} (what finished is in {res / RESULTS_FILE}; the same command resumes)")
    return PackRun(out, res, summary, ran)


def write_results(out: Path, plan: Plan, manifest: dict, summary: dict, results: str | Path) -> Path:
    """RESULTS/results.tar.gz: for each finished node of the pack its marker, with every file when a node back home
    reads it (the evals the report reads) or else the files worth keeping (RECORDS: a training run's metrics);
    the logs; results.json (what it holds, for import's checks) and summary.json."""
    from curation.core.outputs import claim

    ids = set(manifest["nodes"])
    read_back_home = {d for n in plan.nodes if n.id not in ids for d in n.deps}
    finished = [n for n in plan.nodes if n.id in ids and is_done(out, n)]
    owned = claim(results, "experiment run-pack results", inputs=[out], flag="--results", lock=True)
    try:
        res = owned.root
        record = {
            "format": RESULTS_FORMAT,
            "name": manifest["name"],
            "label": manifest.get("label", "export"),
            "pack_created": manifest["created"],
            "graph_sha256": manifest["graph_sha256"],
            "nodes": manifest["nodes"],
            "finished": [n.id for n in finished],
            "host": host(),
            "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        owned.path(SUMMARY).write_text(json.dumps(summary, indent=1))
        with tarfile.open(owned.path(RESULTS_FILE), "w:gz") as tar:
            for node in finished:
                d = out / node.dir
                files = json.loads((d / MARKER).read_text()).get("files") or {}
                whole = node.id in read_back_home
                keep = {rel for rel in files if whole or rel in RECORDS.get(node.kind, ())}
                for rel in sorted(keep):
                    tar.add(d / rel, arcname=f"{node.dir}/{rel}")
                _add_bytes(tar, f"{node.dir}/{MARKER}", travelling_marker(d, keep.__contains__, "where the pack ran"))
            if (out / "logs").is_dir():
                tar.add(out / "logs", arcname="logs")
            _add_bytes(tar, SUMMARY, json.dumps(summary, indent=1).encode())
            _add_bytes(tar, "results.json", json.dumps(record, indent=1).encode())
    finally:
        owned.release()
    return res


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), int(time.time())
    tar.addfile(info, io.BytesIO(data))


# ------------------------------------------------------------------------------------------------ import (here)
@dataclass
class Imported:
    into: Path
    imported: list[str]
    kept: list[str]  # finished here already: left as they were
    unfinished: list[str]  # exported nodes the results do not hold (of seeds not asked for)
    summary: dict
    logs: Path
    experiment: str | None  # the experiment file graph.json names


def import_results(
    results: str | Path, into: str | Path, seeds: list[int] | None = None, log: Callable[[str], None] = print
) -> Imported:
    """Checks the results of a pack against INTO's graph and moves its finished nodes there: refused when it was
    exported from another graph (a node's key differs), when it holds a file no exported node writes, when a node it
    calls finished lacks its marker or files, or when a node of the seeds asked for (all, by default) is unfinished.
    Nodes finished in INTO already are kept as they are; nothing outside the exported nodes and logs/ is written."""
    from curate.experiment.run import RunLock, claim_output

    src = Path(results)
    tgz = src / RESULTS_FILE if src.is_dir() else src
    into = Path(into).resolve()
    if not tgz.is_file():
        raise CurationError(f"{tgz}: not found; give the folder `curate experiment run-pack --results` wrote")
    if not (into / "graph.json").is_file():
        raise CurationError(f"{into}: no graph.json; import into the experiment directory the pack was exported from")
    try:
        tar = tarfile.open(tgz)
        record = json.loads(tar.extractfile("results.json").read())
        if record.get("format") != RESULTS_FORMAT:
            raise ValueError(record.get("format"))
    except (OSError, KeyError, ValueError, AttributeError, tarfile.TarError) as e:
        raise CurationError(
            f"{tgz}: not the results of `curate experiment run-pack` ({type(e).__name__}); give its --results folder"
        ) from None
    with tar:
        graph, nodes = read_graph(into)
        exported: dict[str, str] = record["nodes"]
        foreign = [i for i, key in exported.items() if i not in nodes or nodes[i].key != key]
        if foreign:
            raise CurationError(
                f"{tgz}: exported from another graph: {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''} "
                f"is not a node of {into / 'graph.json'} with the same key; import into the directory the pack was "
                "exported from (if its experiment changed since, export and run the pack again)"
            )
        dirs = {nodes[i].dir + "/": i for i in exported}
        for member in tar.getmembers():
            name = member.name.lstrip("./")
            if name in ("results.json", SUMMARY) or name == "logs" or name.startswith("logs/"):
                continue
            if not any(name.startswith(d) for d in dirs):
                raise CurationError(
                    f"{tgz}: holds {name}, which no exported node writes; import only what run-pack wrote"
                )
        claim_output(into, [tgz])
        lock = RunLock(into)
        staging = into / f".import-{os.getpid()}"
        try:
            tar.extractall(staging, filter="data")
            finished = [i for i in exported if node_state(staging, nodes[i])[0]]
            broken = [i for i in record["finished"] if i not in finished]
            if broken:
                raise CurationError(
                    f"{tgz}: {', '.join(broken[:3])} finished there, but the results lack its marker or files "
                    "(a damaged copy?); fetch the results again"
                )
            kept = [i for i in finished if is_done(into, nodes[i])]
            unfinished = [i for i in exported if i not in finished and not is_done(into, nodes[i])]
            wanted = [i for i in unfinished if seeds is None or nodes[i].seed is None or nodes[i].seed in seeds]
            if wanted:
                whole = sorted({n.seed for n in nodes.values() if n.seed is not None} - {nodes[i].seed for i in wanted})
                hint = (
                    f"; or import the seeds every node finished: --seeds {','.join(map(str, whole))}" if whole else ""
                )
                more = ", ..." if len(wanted) > 4 else ""
                raise CurationError(
                    f"{len(wanted)} exported nodes unfinished ({', '.join(wanted[:4])}{more}): "
                    f"run the pack again where it ran (it resumes) and bring its results back{hint}"
                )
            imported = [i for i in finished if i not in kept]
            for i in imported:
                _move_node(staging / nodes[i].dir, into / nodes[i].dir)
            logs = into / "logs" / record.get("label", "export")
            if (staging / "logs").is_dir():
                shutil.copytree(staging / "logs", logs, dirs_exist_ok=True)
            summary = json.loads((staging / SUMMARY).read_text()) if (staging / SUMMARY).is_file() else {}
            logs.mkdir(parents=True, exist_ok=True)
            (logs / SUMMARY).write_text(json.dumps(summary, indent=1))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            lock.close()
    log(
        f"imported {len(imported)} nodes into {into}"
        + (f"; {len(kept)} were finished here and are kept" if kept else "")
    )
    return Imported(into, imported, kept, unfinished, summary, logs, graph.get("experiment"))


def _move_node(src: Path, dst: Path) -> None:
    """The node's files into its directory here, its marker last (a copy cut short leaves the node unfinished)."""
    (dst / MARKER).unlink(missing_ok=True)
    for path in sorted(p for p in src.rglob("*") if p.is_file() and p.name != MARKER):
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    dst.mkdir(parents=True, exist_ok=True)
    os.replace(src / MARKER, dst / MARKER)
