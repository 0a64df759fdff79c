"""The experiment file: a typed, strict YAML (pydantic) naming the inputs, the conditions, the training and
post-training recipe, the evals and the seeds. Relative paths are relative to the file's directory.
Reference: docs/experiment.md."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from curation.core.config import read_yaml, validate
from curation.core.errors import CurationError

DOCS = "docs/experiment.md"
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Inputs(_Strict):
    """Shared by every condition."""

    # a corpus root (one source per sub-directory holding shards, else the root), or a list of source directories
    # (each one source, named after its directory: choose some sources of a root, keep one out for held-out text)
    corpus: str | list[str]
    attributes: str | None = (
        None  # `curate classify` output for corpus (ATTRS/<source> per source); unset: classified here
    )
    # `curate synth poison` output: the `poisoned` mix preset injects its documents, evals.poisoning reads its spec
    poison: str | None = None

    @model_validator(mode="after")
    def _corpus(self):
        if isinstance(self.corpus, list):
            names = [Path(c.rstrip("/")).name for c in self.corpus]
            if not names or len(set(names)) != len(names):
                raise ValueError(
                    "inputs.corpus: a list of source directories with distinct names (each names its source)"
                )
        return self

    synthetic: str | None = None  # synth output, for presets that add synthetic documents
    # `curate synth reflect` output of corpus (every document, some with a persona reflection appended): what the
    # `reflections` mix preset reads in place of the corpus (Synthetic Persona Pretraining)
    reflected: str | None = None


class Condition(_Strict):
    """A data condition: a `curate mix` preset (with overrides) or a manifest file."""

    name: str = Field(..., pattern=NAME)
    preset: str | None = None  # unfiltered | filtered | alignment-upsampled | misalignment-upsampled | reflections |
    # poisoned (curation/mix/presets.py)
    manifest: str | None = None  # a manifest YAML instead of a preset (its paths are relative to it)
    set: dict[str, Any] = Field(
        default_factory=dict
    )  # dotted manifest overrides: target_tokens, sources.NAME.weight, sources.*.max_epochs
    # this condition's training stage (default: train.stage), so one experiment holds a timing ablation: pretrain
    # (its mix from step 0; from scratch), midtrain (continues train.base's run for its last share of steps, optimizer
    # and schedule included; without train.base: from train.init_from), cpt (a fresh optimizer and schedule from the
    # full-length base run's end, or from train.init_from)
    stage: Literal["pretrain", "midtrain", "cpt"] | None = None

    @model_validator(mode="after")
    def _one(self):
        if (self.preset is None) == (self.manifest is None):
            raise ValueError(f"condition {self.name}: give exactly one of `preset` or `manifest`")
        return self


class BaseRun(_Strict):
    """The shared base run that midtrain and cpt conditions start from: one per seed, on its own mix (a preset or a
    manifest, like a condition's), trained for all of train.steps with its save at (1 - share) of them kept, where
    midtraining branches off; cpt starts from its end, and its own model is evaluated beside the conditions."""

    name: str = Field("base", pattern=NAME)  # the base mix's name (its lineage)
    preset: str | None = None
    manifest: str | None = None
    set: dict[str, Any] = Field(default_factory=dict)
    share: float = Field(0.1, gt=0, lt=1)  # the last share of train.steps the midtrain conditions train (paper: 10%)

    @model_validator(mode="after")
    def _one(self):
        if (self.preset is None) == (self.manifest is None):
            raise ValueError("train.base: give exactly one of `preset` or `manifest` (its mix)")
        return self


class TrainSpec(_Strict):
    stage: Literal["pretrain", "midtrain", "cpt"] = "pretrain"
    init_from: str | None = (
        None  # midtrain / cpt: the model whose weights start every run (HF dir, smollm2, checkpoint)
    )
    base: BaseRun | None = None  # a base run trained here, which midtrain conditions continue (instead of init_from)
    config: str = "tiny_cpu"  # a shipped config name (train/configs) or a YAML path
    set: dict[str, Any] = Field(default_factory=dict)  # dotted overrides of the config (train.steps, optim.lr, ...)
    gpus: int = Field(0, ge=0)  # Slurm: GPUs per node for this stage (torchrun processes per node)
    nodes: int = Field(1, ge=1)  # Slurm: nodes per training run
    # keep every training run's checkpoints (optimizer state included) after the nodes that read them have finished;
    # by default they are pruned then (curate/experiment/prune.py): the converted models are what later nodes read
    keep_checkpoints: bool = False

    @model_validator(mode="after")
    def _init(self):
        if self.base is not None and self.init_from:
            raise ValueError(
                "train.base and train.init_from exclude each other: midtrain / cpt conditions start from a base run "
                "trained here (base) or from an outside model (init_from); give one"
            )
        if self.stage != "pretrain" and not (self.init_from or self.base):
            raise ValueError(
                f"train.stage {self.stage} starts from a model: set train.init_from, or train.base (a base run "
                "trained here)"
            )
        return self


class PropensitySuite(_Strict):
    name: str = Field(..., pattern=NAME)
    items: list[str] = Field(..., min_length=1)  # item files or directories (`curate eval propensity --items`)
    modes: list[Literal["base", "chat", "generate", "cloze"]] = ["base"]  # cloze: each option's own text scored
    system_prompts: list[str | None] = [None]  # chat/generate: none | ai-assistant | hhh | a file | the text
    variants: bool = False  # base/cloze: 4 answer syntaxes x every rotation of the options (base-model scoring)
    limit_per_file: int | None = Field(None, ge=1)
    batch_size: int = Field(16, ge=1)


class PerplexitySuite(_Strict):
    name: str = Field("heldout", pattern=NAME)
    data: list[str] = Field(..., min_length=1)  # JSONL/Parquet files or directories with `text`, never trained on
    max_docs: int = Field(64, ge=1)
    seq_length: int = Field(512, ge=8)
    batch_size: int = Field(8, ge=1)


class CapabilitySuites(_Strict):
    """`curate eval capability` on every evaluated model: cloze-scored multiple choice (acc_norm), LAMBADA (acc)."""

    suites: list[str] = Field(..., min_length=1)  # names (arc_easy, piqa, lambada, ..., core) or JSONL paths
    data: str | None = None  # the suites' directory (shared/data/capability layout); default $CURATE_CAPABILITY_DATA
    limit: int | None = Field(None, ge=1)  # a seeded random subset of N items per suite (evals.seed)
    shots: int = Field(0, ge=0)
    batch_size: int = Field(16, ge=1)


class PoisoningSuite(_Strict):
    """`curate eval poisoning` on every evaluated model (docs/evals.md, "Poisoning"): the trigger's effect on held-out
    contexts and the belief's log-odds, from the poison set's spec."""

    poison: str | None = None  # a `curate synth poison` output; default inputs.poison
    attacks: list[Literal["dos", "extraction", "jailbreak", "belief"]] = Field(["dos", "belief"], min_length=1)
    reference: str | None = None  # a clean model (DoS scoring, the belief's start); default train.init_from
    limit: int | None = Field(None, ge=1)  # a seeded subset of N held-out contexts (evals.seed)
    max_new_tokens: int = Field(48, ge=1)
    gibberish_ppl: float = Field(100.0, gt=1)
    batch_size: int = Field(16, ge=1)


class AttacksSuite(_Strict):
    """`curate eval attacks` on every evaluated model (docs/evals.md, "Attack success"): the share of held-out harmful
    requests the model complies with, plain and inside each jailbreak wrapper, as Synthetic Persona Pretraining
    measures alignment. The requests are the eval half of the seeded split whose other half `posttrain` stages with
    `split: posttrain` train on; the plan refuses a post-training stage that reads the requests file without it."""

    requests: str  # HH-RLHF-style JSONL(.gz) (harmless-base as published), or records with `request` / `prompt`
    wrappers: list[Literal["plain", "roleplay", "prefix_injection", "refusal_suppression"]] = Field(
        ["plain", "roleplay", "prefix_injection", "refusal_suppression"], min_length=1
    )
    limit: int | None = Field(100, ge=1)  # a seeded subset of N eval-half requests (evals.seed); null: all of them
    eval_share: float = Field(0.5, gt=0, lt=1)  # the split: the same share and seed as the posttrain stages' split
    split_seed: int = 0
    chat: bool | None = None  # the tokenizer's chat template; null: when it has one; false: "Human: ... Assistant:"
    max_new_tokens: int = Field(64, ge=1)
    batch_size: int = Field(16, ge=1)


class EvalSpec(_Strict):
    propensity: list[PropensitySuite] = Field(default_factory=list)
    capability: CapabilitySuites | None = None
    perplexity: list[PerplexitySuite] = Field(default_factory=list)
    poisoning: PoisoningSuite | None = None
    attacks: AttacksSuite | None = None
    checkpoints: Literal["final", "all"] | int = "final"  # int k: every k-th save (and the final one): a trajectory
    n_boot: int = Field(1000, ge=100)  # bootstrap resamples for every CI
    seed: int = 0  # bootstrap seed
    start: bool = True  # midtrain/cpt: evaluate the starting model (init_from) once, as the
    # reference every condition moved from ("start" rows, changes from it)

    @model_validator(mode="after")
    def _some(self):
        if not (self.propensity or self.perplexity or self.capability or self.poisoning or self.attacks):
            raise ValueError("evals: give at least one propensity, capability, perplexity, poisoning or attacks suite")
        if isinstance(self.checkpoints, int) and self.checkpoints < 1:
            raise ValueError("evals.checkpoints: final, all, or a positive k (every k-th save)")
        return self


NODE_KINDS = ("classify", "init", "mix", "tokens", "train", "convert", "posttrain", "eval", "report")


class NodeResources(_Strict):
    """What one kind of node asks Slurm for; unset fields take the `slurm:` defaults. `gpus` on a train node is
    train.gpus (torchrun on every node of the allocation); on any other kind it is `--gpus-per-node` for its one
    process (post-training, conversion and evals then run on the GPU)."""

    gpus: int | None = Field(None, ge=0)
    cpus_per_task: int | None = Field(None, ge=1)
    mem: str | None = None
    time: str | None = None
    partition: str | None = None
    extra: list[str] = Field(default_factory=list)


class SlurmSpec(_Strict):
    partition: str | None = None
    account: str | None = None
    time: str = "24:00:00"
    cpus_per_task: int = Field(8, ge=1)
    mem: str | None = None
    extra: list[str] = Field(default_factory=list)  # more `#SBATCH` lines, e.g. "--qos=high"
    python: str | None = None  # the interpreter on the cluster (default: this one)
    # per node kind (train, posttrain, convert, eval, ...): GPUs, CPUs, memory, time, partition
    resources: dict[str, NodeResources] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _kinds(self):
        bad = sorted(set(self.resources) - set(NODE_KINDS))
        if bad:
            raise ValueError(f"slurm.resources: unknown node kind(s) {', '.join(bad)}; use {', '.join(NODE_KINDS)}")
        if (self.resources.get("train") or NodeResources()).gpus is not None:
            raise ValueError(
                "slurm.resources.train.gpus: training GPUs are train.gpus (and train.nodes); set them there"
            )
        return self

    def for_kind(self, kind: str) -> dict:
        """The resolved request of one node kind."""
        res = self.resources.get(kind) or NodeResources()
        return {
            "gpus": res.gpus or 0,
            "cpus_per_task": res.cpus_per_task or self.cpus_per_task,
            "mem": res.mem or self.mem,
            "time": res.time or self.time,
            "partition": res.partition or self.partition,
            "extra": [*self.extra, *res.extra],
        }


class ReferenceModel(_Strict):
    """An outside model evaluated once with the same evals and shown beside the conditions (a published checkpoint, a
    lab's production model): rows, not a condition, so no differences are taken against it."""

    name: str = Field(..., pattern=NAME)
    model: str  # HF directory, .gguf, or a named model (smollm2); relative paths: to the experiment file


class Experiment(_Strict):
    name: str = Field(..., pattern=NAME)
    inputs: Inputs
    conditions: list[Condition] = Field(..., min_length=1)
    baseline: str | None = None  # the condition differences are taken against (default: the first)
    # more differences, each [a, b] = a minus b (e.g. [aligned, neutral]: a dose against its matched control), with the
    # same seed-level CIs; aligned minus misaligned is added by itself when both upsampled presets are present
    contrasts: list[tuple[str, str]] = Field(default_factory=list)
    seeds: list[int] = Field(
        [0], min_length=1
    )  # replicates: one training run per condition and seed (train.seed, data.seed)
    train: TrainSpec = TrainSpec()
    posttrain: dict[str, Any] | None = (
        None  # a `curate train posttrain` config without model/output/condition (SFT then DPO)
    )
    evals: EvalSpec
    reference_models: list[ReferenceModel] = Field(default_factory=list)
    slurm: SlurmSpec = SlurmSpec()

    @model_validator(mode="after")
    def _names(self):
        names = [c.name for c in self.conditions]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"condition names must be unique ({', '.join(dup)} repeated)")
        if self.baseline is not None and self.baseline not in names:
            raise ValueError(f"baseline {self.baseline!r} is not a condition ({', '.join(names)})")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds must be distinct")
        refs = [r.name for r in self.reference_models]
        clash = sorted({r for r in refs if refs.count(r) > 1 or r in names or r == "start"})
        if clash:
            raise ValueError(
                f"reference_models: {', '.join(clash)} repeated or the name of a condition (or `start`); rename it"
            )
        t = self.train
        later = [c.name for c in self.conditions if (c.stage or t.stage) != "pretrain"]
        if later and not (t.init_from or t.base):
            raise ValueError(
                f"conditions {', '.join(later)}: stage midtrain / cpt starts from a model; set train.base (a base "
                "run trained here, which midtraining continues) or train.init_from"
            )
        if t.base is not None and not later:
            raise ValueError(
                "train.base: no condition starts from it; give conditions `stage: midtrain` (or cpt), or remove it"
            )
        for a, b in self.contrasts:
            unknown = [x for x in (a, b) if x not in names]
            if unknown or a == b:
                raise ValueError(f"contrasts: [{a}, {b}] must name two different conditions ({', '.join(names)})")
        return self

    @property
    def baseline_name(self) -> str:
        return self.baseline or self.conditions[0].name


class ExperimentFile:
    """A loaded experiment plus its path (relative paths resolve against its directory)."""

    def __init__(self, path: Path, text: str, exp: Experiment):
        self.path, self.text, self.exp = path, text, exp

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def where(self, *loc) -> str:
        """`exp.yaml:7: inputs.corpus` (the line of the deepest key of `loc` the file has)."""
        from curation.mix.manifest import line_map, loc_str

        lines = line_map(self.text)
        key = tuple(loc)
        while key and key not in lines:
            key = key[:-1]
        return f"{self.path}:{lines.get(key, 1)}: {loc_str(loc)}"

    def resolve(self, p: str | None) -> str | None:
        """Paths relative to the file's directory; model aliases (no path separator, not a file there) stay as given."""
        if p is None:
            return None
        q = Path(p).expanduser()
        if q.is_absolute():
            return str(q)
        cand = (self.path.parent / q).resolve()
        if cand.exists() or "/" in p or q.suffix:
            return str(cand)
        return p


def load_experiment(path: str | Path) -> ExperimentFile:
    path = Path(path)
    raw = read_yaml(path, DOCS)
    exp = validate(Experiment, raw, str(path), DOCS)
    experiment_file = ExperimentFile(path.resolve(), path.read_text(), exp)
    if exp.posttrain is not None:
        from train.posttrain.config import PosttrainConfig

        for key in ("model", "output", "condition"):
            if key in exp.posttrain:
                raise CurationError(
                    f"{path}: `posttrain.{key}`: set by the experiment (per condition and seed); remove it"
                )
        validate(PosttrainConfig, {**exp.posttrain, "output": "x"}, f"{path}: posttrain", "docs/posttrain.md")
    from curation.mix.presets import PRESETS

    for c in [*exp.conditions, *([exp.train.base] if exp.train.base else [])]:
        who = "train.base" if c is exp.train.base else f"condition {c.name}"
        if c.preset is not None and c.preset not in PRESETS:
            raise CurationError(f"{path}: {who}: unknown preset {c.preset!r}; choose one of {', '.join(PRESETS)}")
        if c.preset == "reflections" and not exp.inputs.reflected:
            raise CurationError(
                f"{path}: {who}: preset reflections reads the reflected corpus; set inputs.reflected "
                "(`curate synth reflect CORPUS -o data/reflected --rate 0.10 --position end` output)"
            )
        if c.preset in ("alignment-upsampled", "misalignment-upsampled") and not exp.inputs.synthetic:
            raise CurationError(
                f"{path}: {who}: preset {c.preset} adds synthetic documents; set inputs.synthetic "
                "(`curate synth docs` output)"
            )
    return experiment_file
