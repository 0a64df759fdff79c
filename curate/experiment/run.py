"""Run an experiment: the local executor (one process per node, up to `jobs` at once, finished nodes skipped), the
choice of executor, and the experiment record. The plan every executor works from and the executor protocol are in
plan.py; the Slurm executor is in slurm.py, the export executor (a pack for another machine) in export.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from curate.experiment.graph import MARKER, Node, is_done, write_graph
from curate.experiment.plan import PACKAGE_ROOT, Executor, Plan, Submitted, log_path, make_plan
from curate.experiment.prune import prune_finished
from curation.core.errors import CurationError
from curation.core.provenance import git_commit, host, package_versions

# ---------------------------------------------------------------- the record


def write_record(out: Path, plan: Plan, ran: list[str], started: float, executor: str, jobs: int) -> Path:
    nodes = []
    for n in plan.nodes:
        path = out / n.dir / MARKER
        marker = json.loads(path.read_text()) if path.exists() else {}
        nodes.append(
            {
                "id": n.id,
                "kind": n.kind,
                "key": n.key,
                "dir": n.dir,
                "seed": n.seed,
                "status": "ran" if n.id in ran else ("cached" if marker else "pending"),
                "seconds": marker.get("seconds"),
                "host": marker.get("host"),
                "finished": marker.get("finished"),
            }
        )
    exp = plan.experiment_file.exp
    rec = {
        "format": "curate-experiment-record/1",
        "name": exp.name,
        "experiment_file": str(plan.experiment_file.path),
        "experiment_sha256": plan.experiment_file.sha256,
        "toolkit": git_commit(),
        "versions": package_versions(),
        "host": host(),
        "executor": executor,
        "jobs": jobs,
        "seeds": exp.seeds,
        **({"seeds_in_file": plan.file_seeds} if plan.file_seeds else {}),
        "eval_seed": exp.evals.seed,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "wall_s": round(time.time() - started, 1),
        "node_seconds": round(sum(x["seconds"] or 0 for x in nodes), 1),
        "nodes": nodes,
    }
    path = out / "experiment.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rec, indent=1))
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------- the local executor


def _die_with_parent():
    """Children get SIGKILL when the runner dies (Linux), so a killed run leaves no orphan node writing behind it."""
    from curation.core.lifeline import die_with_parent

    die_with_parent()


# The guardian: a small process in a session of its own that holds the read end of a pipe from the runner. The runner
# tells it each node's process group (every node runs in a session of its own: pid = process group), and it kills
# them all when the pipe closes - the runner finished, or died however it died (SIGKILL included). The node itself
# dies with the runner anyway (PR_SET_PDEATHSIG); the guardian takes what the node started with it (a datatrove
# manager, pool workers, a tokenizer's or an eval server's processes), which the kernel would leave running.
_GUARDIAN = """
import os, signal, sys
groups = set()
for line in sys.stdin:
    if line[:1] == "+":
        groups.add(int(line[1:]))
    elif line[:1] == "-":
        groups.discard(int(line[1:]))
for g in groups:
    try:
        os.killpg(g, signal.SIGKILL)
    except OSError:
        pass
"""


class Guardian:
    """Kills the process groups of the nodes when the runner ends or dies (see _GUARDIAN)."""

    def __init__(self):
        r, w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _GUARDIAN],
            stdin=r,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        os.close(r)
        self.pipe = os.fdopen(w, "w", buffering=1)  # not inherited by the nodes (close-on-exec), so EOF is the runner's

    def watch(self, pgid: int) -> None:
        self.pipe.write(f"+{pgid}\n")

    def reaped(self, pgid: int) -> None:
        """A node's process has ended: anything it left in its group goes now (its members keep the id from reuse)."""
        import signal

        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
        self.pipe.write(f"-{pgid}\n")

    def close(self) -> None:
        try:
            self.pipe.close()
        except OSError:
            pass
        self.proc.wait()


def node_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PACKAGE_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    return env


def _last_error(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    errs = [line for line in lines if line.startswith("error:")]
    return (errs or lines or [""])[-1][:400]


class RunLock:
    """One run per output directory at a time."""

    def __init__(self, out: Path):
        import fcntl

        self.f = open(out / ".lock", "w")
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise CurationError(
                f"{out}: another `curate experiment run` is using this directory; wait for it"
            ) from None

    def close(self):
        self.f.close()


RUN_FILES = ("graph.json", "experiment.yaml", "experiment.json", "results.json", ".lock")
RUN_TREES = ("logs", "nodes", "report", "slurm")


def _legacy_run(out: Path) -> dict | None:
    """An experiment directory written before ownership records (it has graph.json): adopted, so it resumes."""
    return {"files": list(RUN_FILES), "trees": list(RUN_TREES)} if (out / "graph.json").is_file() else None


def experiment_inputs(plan: Plan) -> list[str]:
    """Every path the experiment reads: its file, the corpus, attributes and synthetic documents, each condition's
    manifest and sources, the starting model, the train config file, the eval items and data. The output may be none
    of them, contain none and lie inside none (checked before anything is written)."""
    from curate.experiment.graph import CLASSIFY_REF

    experiment_file, inp = plan.experiment_file, plan.experiment_file.exp.inputs
    paths = [
        str(experiment_file.path),
        *(inp.corpus if isinstance(inp.corpus, list) else [inp.corpus]),
        inp.attributes,
        inp.synthetic,
        inp.reflected,
        *[c.manifest for c in experiment_file.exp.conditions],
        experiment_file.exp.train.config,
    ]
    paths = [experiment_file.resolve(p) for p in paths if p]
    for node in plan.nodes:
        params = node.params
        if node.kind == "mix":
            for source in params["manifest"].get("sources", []):
                paths += [
                    v
                    for v in (source.get("path"), source.get("attributes"))
                    if isinstance(v, str) and not v.startswith(CLASSIFY_REF)
                ]
        elif node.kind == "init":
            paths.append(params["source"])
        elif node.kind == "eval":
            paths += [item for suite in params["propensity"] for item in suite["items"]]
            paths += [data for suite in params["perplexity"] for data in suite["data"]]
            capability = params.get("capability")
            if capability:
                paths += [f[0] for f in capability["inputs"]] + ([capability["data"]] if capability["data"] else [])
            if params.get("attacks"):
                paths.append(params["attacks"]["requests"])
    # names that are not paths here (model aliases, shipped config names) cannot hold the output
    return list(dict.fromkeys(x for x in paths if os.path.exists(x) or any(ch in x for ch in "*?[")))


def claim_output(out: Path, inputs: list = ()) -> None:
    """The output as a `curate experiment run` output (curation/core/outputs.py): never an input or inside one, never
    a directory of someone else's files; the runner never deletes anything (a rerun resumes)."""
    from curation.core.outputs import claim

    owned = claim(out, "experiment run", inputs=inputs, legacy=_legacy_run)
    owned.own(*RUN_FILES)
    owned.own(*RUN_TREES, tree=True)


def prepare_output(out: Path, plan: Plan) -> None:
    (out / "logs").mkdir(exist_ok=True)
    write_graph(out, plan.experiment_file, plan.nodes)
    shutil.copyfile(plan.experiment_file.path, out / "experiment.yaml")


def eta_seconds(remaining: list[Node], took: dict[str, list[float]], jobs: int) -> float | None:
    """Time left: each remaining node at the mean duration of its kind in this run (any kind's mean before its own
    kind has finished once), spread over `jobs` workers; None before any node has finished."""
    every = [t for ts in took.values() for t in ts]
    if not every:
        return None
    mean = sum(every) / len(every)
    return sum(sum(took[n.kind]) / len(took[n.kind]) if took.get(n.kind) else mean for n in remaining) / max(1, jobs)


def _fmt_s(s: float) -> str:
    return f"{s:.0f}s" if s < 90 else (f"{s / 60:.0f}m" if s < 5400 else f"{s / 3600:.1f}h")


def selected(plan: Plan, only: set[str] | None, ids: set[str] | None = None) -> list[Node]:
    """The unfinished nodes to run: all of them, those of the kinds in `only` (the data side on a CPU machine, say,
    and training elsewhere) or those named in `ids` (an exported pack's nodes), refused when one of them needs an
    unfinished node left out."""
    pending = [
        n
        for n in plan.nodes
        if not plan.done[n.id] and (only is None or n.kind in only) and (ids is None or n.id in ids)
    ]
    if only is not None:
        unknown = sorted(only - {n.kind for n in plan.nodes})
        if unknown:
            raise CurationError(
                f"--only {','.join(sorted(only))}: no node of kind {', '.join(unknown)} in this experiment; "
                f"kinds: {', '.join(sorted({n.kind for n in plan.nodes}))}"
            )
    if only is not None or ids is not None:
        chosen, by_id = {n.id for n in pending}, {n.id: n for n in plan.nodes}
        for node in pending:
            for dep in node.deps:
                if not plan.done[dep] and dep not in chosen:
                    kind = by_id[dep].kind
                    raise CurationError(
                        f"--only: {node.id} needs {dep}, an unfinished {kind} node; add {kind} to --only"
                        if ids is None
                        else f"{node.id} needs {dep}, an unfinished {kind} node the pack does not hold; "
                        "export the experiment again"
                    )
    return pending


KIND_ORDER = ("classify", "mix", "tokens", "init", "train", "convert", "posttrain", "eval", "report")


def parse_seeds(text: str | None) -> list[int] | None:
    """`--seeds 0,1` as a list (None: every seed of the file)."""
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CurationError(f"--seeds {text}: comma-separated integers, e.g. --seeds 0") from None


def run_order(nodes: list[Node]) -> list[Node]:
    """The order ready nodes start in: seed by seed (no node of the next seed starts while one of the first seed's is
    ready to, so a run cut short has every condition's first seed, not some conditions with every seed), and within a
    seed the stage furthest along first (a trained model is converted and evaluated before another training starts).
    Seeds rank in the order they first appear: the graph lists each condition's runs in the file's order of seeds."""
    rank = {k: i for i, k in enumerate(KIND_ORDER)}
    where: dict[int, int] = {}
    for n in nodes:
        if n.seed is not None:
            where.setdefault(n.seed, len(where))

    def key(p: tuple[int, Node]):
        i, n = p
        group = (len(where) + 1 if n.kind == "report" else -1) if n.seed is None else where.get(n.seed, len(where))
        return group, -rank.get(n.kind, 0), i

    return [n for _, n in sorted(enumerate(nodes), key=key)]


def run_local(
    out: Path,
    plan: Plan,
    jobs: int = 1,
    log: Callable[[str], None] = print,
    only: set[str] | None = None,
    ids: set[str] | None = None,
) -> list[str]:
    """Runs every unfinished node (or those of the kinds in `only`, or named in `ids`), dependencies first, up to
    `jobs` at once, in `run_order`; returns the ids that ran."""
    pending = run_order(selected(plan, only, ids))
    done = {n.id for n in plan.nodes if plan.done[n.id]}
    total, ran = len(pending), []
    running: dict[str, tuple[subprocess.Popen, float, Node]] = {}
    failed: list[str] = []
    took: dict[str, list[float]] = {}
    t_start = time.time()

    def prune() -> None:  # the checkpoints of finished runs whose readers have all finished
        if not plan.keep_checkpoints:
            prune_finished(out, plan.nodes, done.__contains__, log)

    prune()
    guard = Guardian()
    try:
        _loop(out, pending, done, total, ran, running, failed, took, t_start, jobs, log, guard, prune)
    finally:
        guard.close()
    if failed:
        raise CurationError("; ".join(failed) + ". Fix it and rerun the same command: finished nodes are kept")
    return ran


def _loop(out, pending, done, total, ran, running, failed, took, t_start, jobs, log, guard: Guardian, prune) -> None:
    while pending or running:
        if not failed:
            for n in [n for n in pending if all(d in done for d in n.deps)]:
                if len(running) >= max(1, jobs):
                    break
                lp = log_path(out, n)
                with open(lp, "a") as f:
                    f.write(f"==== {time.strftime('%Y-%m-%dT%H:%M:%S')} {n.id} ({n.key})\n")
                fh = open(lp, "a")
                proc = subprocess.Popen(
                    [sys.executable, "-m", "curate.experiment.node", str(out), n.id],
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=node_env(),
                    preexec_fn=_die_with_parent,
                    start_new_session=True,
                )
                guard.watch(proc.pid)
                fh.close()
                running[n.id] = (proc, time.time(), n)
                pending.remove(n)
                log(f"[{len(ran) + len(running)}/{total}] start {n.id}")
        if not running:
            break
        time.sleep(0.2)
        for nid, (proc, t0, n) in list(running.items()):
            rc = proc.poll()
            if rc is None:
                continue
            guard.reaped(proc.pid)
            del running[nid]
            if rc == 0 and is_done(out, n):
                done.add(nid)
                ran.append(nid)
                took.setdefault(n.kind, []).append(time.time() - t0)
                el = time.time() - t_start
                eta = eta_seconds(pending + [r[2] for r in running.values()], took, jobs)
                left = f", ETA {_fmt_s(eta)}" if eta is not None and (pending or running) else ""
                log(f"[{len(ran)}/{total}] done  {nid} in {time.time() - t0:.1f}s (elapsed {_fmt_s(el)}{left})")
                prune()
            else:
                failed.append(f"{nid} failed (exit {rc}): {_last_error(log_path(out, n))}; log: {log_path(out, n)}")
                log(f"failed {nid} (exit {rc})")


@dataclass
class LocalExecutor:
    """Every unfinished node here, one process each, up to `jobs` at once (or only those of the kinds in `only`, or
    named in `ids`); the report, when its node ran or was finished, published into the experiment directory."""

    jobs: int = 1
    only: set[str] | None = None
    ids: set[str] | None = None
    name: str = "local"

    def check(self, plan: Plan) -> None:
        selected(plan, self.only, self.ids)  # refuse before the output is claimed or any work done

    def submit(self, out: Path, plan: Plan, log: Callable[[str], None]) -> Submitted:
        ran = run_local(out, plan, self.jobs, log, self.only, self.ids)
        publish_report(out, plan)
        return Submitted(ran=ran)


def make_executor(name: str, jobs: int = 1, only: set[str] | None = None) -> Executor:
    """The executor `--executor NAME` names (local or slurm; the export executor has its own command)."""
    if name == "local":
        return LocalExecutor(jobs, only)
    if name == "slurm":
        if only is not None:
            raise CurationError("--only runs with the local executor")
        from curate.experiment.slurm import SlurmExecutor

        return SlurmExecutor()
    raise CurationError(f"--executor {name}: choose local or slurm (`curate experiment export` packs for elsewhere)")


def publish_report(out: Path, plan: Plan) -> None:
    from curate.experiment.report import publish

    report = next(n for n in plan.nodes if n.kind == "report")
    if (out / report.dir / MARKER).exists():
        publish(out, out / report.dir)


@dataclass
class RunResult:
    output: Path
    ran: list[str]
    cached: list[str]
    results: Path | None
    report: Path | None
    record: Path
    submitted: dict | None = None  # Slurm: {node id: job id}
    pack: Path | None = None  # export: the pack written
    exported: list[str] | None = None  # export: the node ids it runs


def run_experiment(
    path: str | Path,
    output: str | Path,
    executor: str | Executor = "local",
    jobs: int = 1,
    log: Callable[[str], None] = print,
    only: set[str] | None = None,
    seeds: list[int] | None = None,
) -> RunResult:
    """Plans the experiment file against the output directory, claims and locks the directory, writes graph.json,
    hands the plan to the executor (a name: local or slurm, with `jobs` and `only`; or an Executor), and writes the
    record (experiment.json)."""
    out = Path(output).resolve()
    runner = make_executor(executor, jobs, only) if isinstance(executor, str) else executor
    started = time.time()
    plan = make_plan(path, out, seeds=seeds)
    if plan.problems:
        raise CurationError("impossible budget, nothing was run: " + " | ".join(plan.problems))
    check = getattr(runner, "check", None)
    if check is not None:
        check(plan)
    for note in plan.notes:
        log(f"note: {note}")
    claim_output(out, experiment_inputs(plan))
    lock = RunLock(out)
    try:
        prepare_output(out, plan)
        cached = [n.id for n in plan.nodes if plan.done[n.id]]
        log(f"{len(plan.nodes)} nodes: {len(cached)} finished, {len(plan.to_run)} to run -> {out}")
        if not plan.keep_checkpoints:  # runs finished before (by Slurm jobs, or before pruning existed)
            prune_finished(out, plan.nodes, plan.done.__getitem__, log)
        done = runner.submit(out, plan, log)
        record = write_record(out, plan, done.ran, started, runner.name, runner.jobs)
    finally:
        lock.close()
    finished = all(is_done(out, n) for n in plan.nodes if n.kind == "report")
    results = (
        (out / "results.json", out / "report" / "report.md") if finished and runner.name == "local" else (None,) * 2
    )
    return RunResult(
        out, done.ran, cached, *results, record, submitted=done.jobs, pack=done.pack, exported=done.exported or None
    )
