"""What an experiment run works from, shared by its executors (local: run.py, Slurm: slurm.py, export: export.py):
the plan (the node graph, which nodes are finished, budget problems found before any work), the executor protocol,
the toolkit root the node processes import from, and where each node's log goes."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import yaml

from curate.experiment.config import ExperimentFile, load_experiment
from curate.experiment.graph import CLASSIFY_REF, Node, build_graph, node_state, read_graph, tokens_needed
from curate.experiment.prune import redo_pruned
from curation.core.errors import CurationError

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the repository: first on every node process's PYTHONPATH


@dataclass
class Plan:
    # None for a plan read from an experiment directory's graph alone (an exported pack, run on another machine)
    experiment_file: ExperimentFile | None
    nodes: list[Node]
    done: dict[str, bool]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    file_seeds: list[int] | None = None  # the file's seeds, when `seeds` narrowed them
    name: str = ""  # the experiment's name
    keep_checkpoints: bool = False  # train.keep_checkpoints: no pruning (curate/experiment/prune.py)

    def __post_init__(self):
        if self.experiment_file is not None:
            self.name = self.name or self.experiment_file.exp.name
            self.keep_checkpoints = self.experiment_file.exp.train.keep_checkpoints

    @property
    def to_run(self) -> list[Node]:
        return [n for n in self.nodes if not self.done[n.id]]


@dataclass
class Submitted:
    """What an executor did with a plan: nodes it ran here, jobs it queued, or the pack it wrote for elsewhere."""

    ran: list[str] = field(default_factory=list)
    jobs: dict[str, str] | None = None  # Slurm: {node id: job id}
    pack: Path | None = None  # export: the pack directory
    exported: list[str] = field(default_factory=list)  # export: the node ids the pack runs


class Executor(Protocol):
    """How the unfinished nodes of a plan get run: here (local), as cluster jobs (slurm), or on another machine from
    a pack (export). `curate experiment run` claims and locks the experiment directory and writes graph.json before
    `submit`, and the record after it."""

    name: str
    jobs: int

    def submit(self, out: Path, plan: Plan, log: Callable[[str], None]) -> Submitted: ...


def _check_budget(experiment_file: ExperimentFile, node: Node, cfg: dict | None) -> tuple[list[str], list[str]]:
    """(problems, notes) of one condition's mix: the mix plan with estimated token counts (a fast scan), so an
    impossible budget stops the run before any work, naming the documents/tokens missing."""
    from curation.mix.manifest import load_manifest
    from curation.mix.plan import make_plan

    manifest, notes = copy.deepcopy(node.params["manifest"]), []
    who = node.condition or "train.base"  # the shared base run's mix has no condition
    deferred = [
        s
        for s in manifest["sources"]
        if isinstance(s.get("attributes"), str) and s["attributes"].startswith(CLASSIFY_REF)
    ]
    filtered = any(s.get("filter") for s in deferred)
    for s in deferred:  # attributes come from the classify node: check the sources before filtering (an upper bound,
        s.update(attributes=None, filter=None, columns=[])  # so a budget impossible here is impossible after it too)
    if filtered:
        notes.append(
            f"{who}: budgets checked before filtering; the filters apply when the mix is built "
            "(its attributes come from the classify node)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / f"{who}.yaml"
        p.write_text(yaml.safe_dump(manifest, sort_keys=False))
        try:
            plan = make_plan(load_manifest(p), count="estimate")
        except CurationError as e:
            return [f"{'condition ' if node.condition else ''}{who}: {str(e).replace(str(p), 'mix')}"], []
    notes += [f"{who}: source {sp.name}: {n}" for sp in plan.sources for n in sp.rs.notes]
    if cfg is not None:
        need = tokens_needed(cfg) / 1.1
        if need > plan.total_tokens:
            notes.append(
                f"{who}: a run reads about {need:,.0f} tokens and the mix has about "
                f"{plan.total_tokens:,.0f}: the trainer goes through it {need / plan.total_tokens:.1f} times"
            )
    return [], notes


def make_plan(
    path: str | Path, output: str | Path | None = None, check_budgets: bool = True, seeds: list[int] | None = None
) -> Plan:
    """The experiment's nodes and which are finished; `seeds` narrows the file's seeds to a subset (the first seed of
    every condition now, the rest by a later run without it: the nodes are the same, so nothing is redone)."""
    experiment_file = load_experiment(path)
    file_seeds = None
    if seeds is not None:
        unknown = [s for s in seeds if s not in experiment_file.exp.seeds]
        if unknown or not seeds:
            raise CurationError(
                f"--seeds {','.join(map(str, seeds))}: choose among the experiment's seeds "
                f"{','.join(map(str, experiment_file.exp.seeds))} ({experiment_file.path})"
            )
        file_seeds, experiment_file.exp.seeds = (
            experiment_file.exp.seeds,
            [s for s in experiment_file.exp.seeds if s in seeds],
        )
    nodes = build_graph(experiment_file)
    out = Path(output) if output else None
    states = {n.id: node_state(out, n) if out else (False, None) for n in nodes}
    done = {i: s[0] for i, s in states.items()}
    redo = redo_pruned(out, nodes, done) if out else []
    plan = Plan(experiment_file, nodes, done, file_seeds=file_seeds)
    plan.notes += [f"{i}: finished before, but {why}; it runs again" for i, (_, why) in states.items() if why]
    plan.notes += [
        f"{i}: finished before, but its checkpoints were pruned and {r} reads them; it runs again" for i, r in redo
    ]
    if check_budgets:
        cfgs = {n.condition: n.params["config"] for n in nodes if n.kind == "train"}
        for n in nodes:
            if n.kind == "mix" and not done[n.id]:
                probs, notes = _check_budget(experiment_file, n, cfgs.get(n.condition))
                plan.problems += probs
                plan.notes += notes
        from train.sizing import experiment_notes  # per-GPU memory of the training runs (train/sizing.py)

        probs, notes = experiment_notes([n.params for n in nodes if n.kind == "train"], str(experiment_file.path))
        plan.problems, plan.notes = plan.problems + probs, plan.notes + notes
    return plan


def plan_from_directory(out: Path) -> Plan:
    """The plan of an experiment directory from its graph.json and markers alone, without the experiment file or
    its inputs (the directory of an exported pack, on a machine that has neither)."""
    out = Path(out)
    if not (out / "graph.json").is_file():
        raise CurationError(f"{out}: no graph.json; give the directory `curate experiment run -o` wrote")
    graph, nodes = read_graph(out)
    done = {i: node_state(out, node)[0] for i, node in nodes.items()}
    redo_pruned(out, list(nodes.values()), done)
    return Plan(
        None,
        list(nodes.values()),
        done,
        name=graph.get("name", ""),
        keep_checkpoints=bool(graph.get("keep_checkpoints", False)),
    )


def log_path(out: Path, node: Node) -> Path:
    return out / "logs" / (node.id.replace("/", "__") + ".log")
