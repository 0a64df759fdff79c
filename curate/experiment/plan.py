"""What an experiment run works from, shared by the local executor (run.py) and the Slurm one (slurm.py): the plan
(the node graph, which nodes are finished, budget problems found before any work), the toolkit root the node
processes import from, and where each node's log goes."""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from curate.experiment.config import ExperimentFile, load_experiment
from curate.experiment.graph import CLASSIFY_REF, Node, build_graph, node_state, tokens_needed
from curation.core.errors import CurationError

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the repository: first on every node process's PYTHONPATH


@dataclass
class Plan:
    ef: ExperimentFile
    nodes: list[Node]
    done: dict[str, bool]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    file_seeds: list[int] | None = None  # the file's seeds, when `seeds` narrowed them

    @property
    def to_run(self) -> list[Node]:
        return [n for n in self.nodes if not self.done[n.id]]


def _check_budget(ef: ExperimentFile, node: Node, cfg: dict | None) -> tuple[list[str], list[str]]:
    """(problems, notes) of one condition's mix: the mix plan with estimated token counts (a fast scan), so an
    impossible budget stops the run before any work, naming the documents/tokens missing."""
    from curation.mix.manifest import load_manifest
    from curation.mix.plan import make_plan

    manifest, notes = copy.deepcopy(node.params["manifest"]), []
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
            f"{node.condition}: budgets checked before filtering; the filters apply when the mix is built "
            "(its attributes come from the classify node)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / f"{node.condition}.yaml"
        p.write_text(yaml.safe_dump(manifest, sort_keys=False))
        try:
            plan = make_plan(load_manifest(p), count="estimate")
        except CurationError as e:
            return [f"condition {node.condition}: {str(e).replace(str(p), 'mix')}"], []
    if cfg is not None:
        need = tokens_needed(cfg) / 1.1
        if need > plan.total_tokens:
            notes.append(
                f"{node.condition}: a run reads about {need:,.0f} tokens and the mix has about {plan.total_tokens:,.0f}: "
                f"the trainer goes through it {need / plan.total_tokens:.1f} times"
            )
    return [], notes


def make_plan(
    path: str | Path, output: str | Path | None = None, check_budgets: bool = True, seeds: list[int] | None = None
) -> Plan:
    """The experiment's nodes and which are finished; `seeds` narrows the file's seeds to a subset (the first seed of
    every condition now, the rest by a later run without it: the nodes are the same, so nothing is redone)."""
    ef = load_experiment(path)
    file_seeds = None
    if seeds is not None:
        unknown = [s for s in seeds if s not in ef.exp.seeds]
        if unknown or not seeds:
            raise CurationError(
                f"--seeds {','.join(map(str, seeds))}: choose among the experiment's seeds "
                f"{','.join(map(str, ef.exp.seeds))} ({ef.path})"
            )
        file_seeds, ef.exp.seeds = ef.exp.seeds, [s for s in ef.exp.seeds if s in seeds]
    nodes = build_graph(ef)
    out = Path(output) if output else None
    states = {n.id: node_state(out, n) if out else (False, None) for n in nodes}
    done = {i: s[0] for i, s in states.items()}
    plan = Plan(ef, nodes, done, file_seeds=file_seeds)
    plan.notes += [f"{i}: finished before, but {why}; it runs again" for i, (_, why) in states.items() if why]
    if check_budgets:
        cfgs = {n.condition: n.params["config"] for n in nodes if n.kind == "train"}
        for n in nodes:
            if n.kind == "mix" and not done[n.id]:
                probs, notes = _check_budget(ef, n, cfgs.get(n.condition))
                plan.problems += probs
                plan.notes += notes
        from train.sizing import experiment_notes  # per-GPU memory of the training runs (train/sizing.py)

        probs, notes = experiment_notes([n.params for n in nodes if n.kind == "train"], str(ef.path))
        plan.problems, plan.notes = plan.problems + probs, plan.notes + notes
    return plan


def log_path(out: Path, node: Node) -> Path:
    return out / "logs" / (node.id.replace("/", "__") + ".log")
