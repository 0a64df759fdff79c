"""The experiment as a graph of nodes: condition x stage (mix -> tokens -> train -> convert -> [posttrain] -> eval)
plus shared nodes (classify when no attributes are given, the init checkpoint of midtraining) and one report.

A node's key is a hash of its own parameters and of the keys of the nodes it reads, and its output directory is
named after the key, so a changed condition changes the keys of exactly the nodes downstream of it: they run in new
directories while every other node is found finished (its ``node.json``, written last, records the same key).
External files (corpus, attributes, items) enter the key by path, size and content digest (cached by modification
time, see curation/core/digests.py): a fresh clone or a copied corpus finds its finished nodes again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from curate.experiment.config import ExperimentFile
from curation.core.digests import cached_sha256
from curation.core.errors import CurationError

FORMAT = "curate-experiment-graph/1"
CLASSIFY_REF = "CLASSIFY_OUTPUT"  # the classify node's attribute directory, filled in when the mix node runs
MARKER = "node.json"
START = "start"  # the eval tag and report row of the starting model (_shared/eval-start): a reference, not a condition
REFERENCE = "reference"  # the eval tag of an outside model (reference_models:): report rows named after it
BASE_RUN = "base (no intervention)"  # the report rows of train.base's full-length run (one per seed)
# nodes that resume their own work after a kill; the others start again from an empty directory
RESUMABLE = {"classify", "tokens", "train", "posttrain"}


@dataclass
class Node:
    id: str  # "unfiltered/train-s0"
    kind: str  # classify | init | mix | tokens | train | convert | posttrain | eval | report
    params: dict
    deps: list[str] = field(default_factory=list)
    condition: str | None = None
    seed: int | None = None
    key: str = ""
    dir: str = ""  # relative to the experiment's output directory

    def to_dict(self) -> dict:
        return asdict(self)


def fingerprint(paths: list[str], suffixes: tuple[str, ...] | None = None) -> list[list]:
    """[relative path, size, sha256] of every file under the paths (directories recursively; hidden and `_`-prefixed
    entries skipped, as shard listings skip them; with `suffixes`, only files ending so)."""
    out = []
    for p in paths:
        root = Path(p)
        if root.is_file():
            st = root.stat()
            out.append([str(root), st.st_size, cached_sha256(root)])
        elif root.is_dir():
            for dirpath, dirs, files in os.walk(root):
                dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
                for f in sorted(files):
                    if f.startswith((".", "_")) or (suffixes and not f.endswith(suffixes)):
                        continue
                    fp = Path(dirpath) / f
                    st = fp.stat()
                    out.append([str(fp.relative_to(root.parent)), st.st_size, cached_sha256(fp)])
        else:
            out.append([str(root), None, None])
    return out


def _set_path(raw: dict, dotted: str, value) -> None:
    """Dotted override on a manifest: `target_tokens`, `sources.wiki.filter`, `sources.*.max_epochs` (every source)."""
    parts = dotted.split(".")
    nodes = [raw]
    for _i, part in enumerate(parts[:-1]):
        nxt = []
        for n in nodes:
            if isinstance(n, list):
                hits = [s for s in n if isinstance(s, dict) and (part == "*" or s.get("name") == part)]
                if not hits and part.isdigit() and int(part) < len(n):
                    hits = [n[int(part)]]
                if not hits:
                    raise CurationError(
                        f"set {dotted}: no source named {part!r} (sources: {', '.join(str(s.get('name')) for s in n)})"
                    )
                nxt += hits
            else:
                nxt.append(n.setdefault(part, {}))
        nodes = nxt
    for n in nodes:
        if isinstance(n, list):
            raise CurationError(f"set {dotted}: name a source (sources.NAME.field or sources.*.field)")
        n[parts[-1]] = value


def condition_manifest(experiment_file: ExperimentFile, cond, attributes: str) -> dict:
    """The condition's mix manifest as a dict, paths absolute, name = the condition's name."""
    from curation.mix.presets import render_preset

    inp = experiment_file.exp.inputs
    if cond.preset is not None:
        text = render_preset(
            cond.preset,
            corpus=corpus_paths(experiment_file),
            attributes=attributes,
            synthetic=experiment_file.resolve(inp.synthetic) or "data/synthetic",
            poison=experiment_file.resolve(inp.poison) if inp.poison else None,
            reflected=experiment_file.resolve(inp.reflected) if inp.reflected else None,
        )
        raw = yaml.safe_load(text)
    else:
        mpath = Path(experiment_file.resolve(cond.manifest))
        try:
            raw = yaml.safe_load(mpath.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise CurationError(
                f"{experiment_file.path}: condition {cond.name}: cannot read manifest {mpath} ({type(e).__name__}); "
                "fix the path (relative to the experiment file)"
            ) from None
        for s in raw.get("sources") or []:
            for k in ("path", "attributes"):
                if s.get(k) and not os.path.isabs(s[k]):
                    s[k] = str((mpath.parent / s[k]).resolve())
    raw["name"] = cond.name
    for k, v in cond.set.items():
        try:
            _set_path(raw, k, v)
        except CurationError as e:
            raise CurationError(f"{experiment_file.path}: condition {cond.name}: {e}") from None
    return raw


def corpus_paths(experiment_file: ExperimentFile) -> str | list[str]:
    """inputs.corpus resolved: a root, or the list of source directories."""
    c = experiment_file.exp.inputs.corpus
    return [experiment_file.resolve(x) for x in c] if isinstance(c, list) else experiment_file.resolve(c)


def capability_params(experiment_file: ExperimentFile) -> dict | None:
    """evals.capability with the data directory and suite files resolved now (a missing suite fails before any work);
    the suite files' fingerprints enter the eval nodes' keys."""
    from curation.core.items import data_dir
    from evals.capability import DATA_ENV, DEFAULT_DATA, NAMED, SUITES, resolve_suites

    c = experiment_file.exp.evals.capability
    if c is None:
        return None
    names = [n if (n in SUITES or n in NAMED) else experiment_file.resolve(n) for n in c.suites]
    data = experiment_file.resolve(c.data) if c.data else None
    if any(n in SUITES or n in NAMED for n in names):
        data = str(data_dir(data, DATA_ENV, DEFAULT_DATA, "capability suites", "evals.capability.data").resolve())
    try:
        suites = resolve_suites(names, data)
    except CurationError as e:
        raise CurationError(f"{experiment_file.path}: evals.capability: {e}") from None
    files = [str(f) for s in suites for f in s.files + ([s.fewshot] if s.fewshot and c.shots else [])]
    return {**c.model_dump(), "suites": names, "data": data, "inputs": fingerprint(files)}


def poisoning_params(experiment_file: ExperimentFile) -> dict | None:
    """evals.poisoning with the poison set and the reference model resolved; the poison set's report enters the eval
    nodes' keys (a new poison set is a new measurement)."""
    z = experiment_file.exp.evals.poisoning
    if z is None:
        return None
    poison = z.poison or experiment_file.exp.inputs.poison
    loc = ("evals", "poisoning", "poison") if z.poison else ("inputs", "poison")
    if not poison:
        raise CurationError(
            f"{experiment_file.path}: evals.poisoning: no poison set; set inputs.poison (or evals.poisoning.poison) "
            "to a `curate synth poison` output"
        )
    path = experiment_file.resolve(poison)
    if not (Path(path) / "poison_report.json").is_file():
        raise CurationError(
            f"{experiment_file.where(*loc)}: {path} has no poison_report.json; "
            "point it at a `curate synth poison` output"
        )
    reference = z.reference or experiment_file.exp.train.init_from
    if not reference:
        raise CurationError(
            f"{experiment_file.where('evals', 'poisoning')}: set `reference:` (a clean model: DoS scoring and the "
            "belief's start); it defaults to train.init_from, which is unset"
        )
    ref = experiment_file.resolve(reference)
    ref = ref if os.path.exists(ref) else reference  # a named model (smollm2) stays a name
    return {
        **z.model_dump(),
        "poison": path,
        "reference": ref,
        "inputs": fingerprint([str(Path(path) / "poison_report.json")]),
    }


def attacks_params(experiment_file: ExperimentFile) -> dict | None:
    """evals.attacks with the requests file resolved and kept apart from post-training: a posttrain stage reading the
    requests file itself must take the other half of the same split (`split: posttrain`, same share and seed), and
    every other post-training file is passed as `exclude` (the eval refuses to run if it holds an evaluated request).
    The requests file's fingerprint enters the eval nodes' keys."""
    a = experiment_file.exp.evals.attacks
    if a is None:
        return None
    requests = experiment_file.resolve(a.requests)
    if not Path(requests).is_file():
        raise CurationError(
            f"{experiment_file.where('evals', 'attacks', 'requests')}: {requests} does not exist; point it at "
            "HH-RLHF harmless-base (test.jsonl.gz as published) or a JSONL of {request: ...}, relative to this file"
        )
    exclude = []
    for kind, stage in (experiment_file.exp.posttrain or {}).items():
        if not isinstance(stage, dict):
            continue
        for j, spec in enumerate(stage.get("data") or []):
            if spec == "demo" or not isinstance(spec, str):
                continue
            path = experiment_file.resolve(spec)
            if os.path.abspath(path) != os.path.abspath(requests):
                exclude += [path] if os.path.isfile(path) else []
                continue
            same = (stage.get("split_eval_share", 0.5), stage.get("split_seed", 0)) == (a.eval_share, a.split_seed)
            if stage.get("split") != "posttrain" or not same:
                raise CurationError(
                    f"{experiment_file.where('posttrain', kind, 'data', j)}: post-trains on the attack requests "
                    f"file {requests}; set posttrain.{kind}.split: posttrain (with the split share and seed of "
                    "evals.attacks) so the attacked requests are never trained on"
                )
    return {
        **a.model_dump(),
        "requests": requests,
        "exclude": sorted(set(exclude)),
        "inputs": fingerprint([requests]),
    }


def posttrain_params(experiment_file: ExperimentFile) -> dict:
    """The post-training config with its data files resolved against the experiment file (a missing one fails before
    any work); the files' fingerprints enter the posttrain nodes' keys, so changed data is trained on again."""
    config = copy.deepcopy(experiment_file.exp.posttrain)
    files = []
    for kind in ("sft", "dpo"):
        stage = config.get(kind)
        if not isinstance(stage, dict) or not isinstance(stage.get("data"), list):
            continue
        for j, spec in enumerate(stage["data"]):
            if spec == "demo" or not isinstance(spec, str):
                continue
            path = experiment_file.resolve(spec)
            if not any(ch in path for ch in "*?[") and not os.path.exists(path):
                raise CurationError(
                    f"{experiment_file.where('posttrain', kind, 'data', j)}: {path} does not exist; point it at "
                    "JSONL / Parquet files or a directory of them (relative to the experiment file), or `demo`"
                )
            stage["data"][j] = path
            files.append(path)
    return {"config": config, **({"inputs": fingerprint(sorted(set(files)))} if files else {})}


def train_config(experiment_file: ExperimentFile, seed: int, extra: dict | None = None, init: bool = True) -> dict:
    """The resolved trainer config of one run (validated now, so a bad override fails before any work); `extra`:
    overrides the experiment sets on top (a base run's or a continuation's), `init`: start from train.init_from."""
    from train.config import PretrainConfig, resolve_config

    t = experiment_file.exp.train
    overrides = dict(t.set)
    overrides.update(
        {"data.blend": "@tokens/blend.json", "train.save_dir": "@run", "train.seed": seed, "data.seed": seed}
    )
    if t.init_from and init:
        overrides["train.init_from"] = "@init"
    overrides.update(extra or {})
    if experiment_file.exp.evals.checkpoints != "final":
        overrides["train.keep_checkpoints"] = 0
    try:
        cand = experiment_file.resolve(t.config)
        path = resolve_config(cand if Path(cand).is_file() else t.config)
        cfg = PretrainConfig.from_yaml(path, overrides)
    except CurationError as e:
        raise CurationError(f"{experiment_file.path}: train: {e}") from None
    out = json.loads(cfg.model_dump_json())
    if out["train"]["init_loss_check"]:
        # a guard that only stops a broken run changes no finished run's result: its default stays out of the node key,
        # so runs trained before it existed are still found finished (the trainer fills the default back in)
        del out["train"]["init_loss_check"]
    for k in ("continue_from", "continue_iteration", "save_iterations"):  # likewise: unset, they stay out of the keys
        if out["train"][k] in (None, []):
            del out["train"][k]
    return out


def base_iteration(experiment_file: ExperimentFile, cfg: dict) -> int:
    """Where midtraining branches off the base run: after the first (1 - train.base.share) of train.steps."""
    steps, share = cfg["train"]["steps"], experiment_file.exp.train.base.share
    it = round(steps * (1 - share))
    if not 0 < it < steps:
        raise CurationError(
            f"{experiment_file.where('train', 'base', 'share')}: {share} of {steps} steps leaves "
            f"{'no base run' if it <= 0 else 'no midtraining'} (the base run would stop at iteration {it}); raise "
            "train.steps or choose a share between 1/steps and 1 - 1/steps"
        )
    return it


def saved_iterations(cfg: dict) -> list[int]:
    t = cfg["train"]
    first = (t.get("continue_iteration") or 0) + 1  # a continued run saves only after where it took over
    its = [i for i in range(first, t["steps"] + 1) if i % t["save_interval"] == 0 or i == t["steps"]]
    return its


def eval_iterations(experiment_file: ExperimentFile, cfg: dict) -> list[int]:
    saves = saved_iterations(cfg)
    k = experiment_file.exp.evals.checkpoints
    if k == "final":
        return [saves[-1]]
    if k == "all":
        return saves
    return sorted(set(saves[k - 1 :: k]) | {saves[-1]})


def tokens_needed(cfg: dict) -> int:
    """Tokens one run reads (steps x global batch x sequence), with 10% and one sequence of slack, so the trainer's
    dataset never wraps around a partial tokenisation."""
    t, d = cfg["train"], cfg["data"]
    steps = t["steps"] - (t.get("continue_iteration") or 0)  # a continued run reads its own data for its steps only
    return int(math.ceil(steps * t["global_batch_size"] * d["seq_length"] * 1.1)) + d["seq_length"] + 1


def slug(s: str | None) -> str:
    if s is None:
        return "none"
    out = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in s)[:24].strip("-")
    return out or "prompt"


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_inputs(experiment_file: ExperimentFile) -> None:
    """The experiment's own inputs, checked before anything is planned, each error naming its field in the file: the
    corpus (it exists and holds shards), the propensity items and the held-out text (they exist)."""
    from curation.core.items import item_files
    from curation.core.shards import list_shards

    c = experiment_file.exp.inputs.corpus
    entries = c if isinstance(c, list) else [c]
    fix = (
        "set it to a corpus root (one source per sub-directory holding shards) or a list of source directories, "
        "relative to the experiment file"
    )
    for i, x in enumerate(entries):
        loc = ("inputs", "corpus") + ((i,) if isinstance(c, list) else ())
        if not str(x).strip():
            raise CurationError(f"{experiment_file.where(*loc)}: is empty; {fix}")
        p = experiment_file.resolve(x)
        if not any(ch in p for ch in "*?[") and not os.path.exists(p):
            raise CurationError(f"{experiment_file.where(*loc)}: {p} does not exist; {fix}")
        try:
            rels = list_shards(p)[1]
        except OSError as e:
            raise CurationError(f"{experiment_file.where(*loc)}: cannot list {p} ({e.strerror})") from None
        if not rels:
            raise CurationError(
                f"{experiment_file.where(*loc)}: {p} holds no Parquet/JSONL shards "
                f"(*.parquet, *.jsonl, *.jsonl.gz); {fix}"
            )
    if experiment_file.exp.inputs.reflected:
        check_reflected(experiment_file)
    for i, s in enumerate(experiment_file.exp.evals.propensity):
        for j, item in enumerate(s.items):
            p = experiment_file.resolve(item)
            if p == "alignment" and not os.path.exists(p):  # the named set: resolved by the eval's data directory
                continue
            try:
                found = item_files([p])
            except CurationError:
                found = None
            if not found:
                raise CurationError(
                    f"{experiment_file.where('evals', 'propensity', i, 'items', j)}: {p} "
                    f"{'does not exist' if found is None else 'holds no item files (*.jsonl, *.json, *.parquet)'}; "
                    "point it at item files or a directory of them (relative to the experiment file)"
                )
    for i, s in enumerate(experiment_file.exp.evals.perplexity):
        for j, d in enumerate(s.data):
            p = experiment_file.resolve(d)
            if not os.path.exists(p):
                raise CurationError(
                    f"{experiment_file.where('evals', 'perplexity', i, 'data', j)}: {p} does not exist; point it at "
                    "held-out JSONL/Parquet files or a directory of them"
                )


def check_reflected(experiment_file: ExperimentFile) -> None:
    """inputs.reflected is `curate synth reflect` output of the corpus: its report is there and its shards carry the
    `has_reflection` flag. Anything else would train on text without reflections while the plan calls it SPP."""
    import pyarrow.parquet as pq

    from curation.core.shards import list_shards

    loc = experiment_file.where("inputs", "reflected")
    p = experiment_file.resolve(experiment_file.exp.inputs.reflected)
    fix = "set it to `curate synth reflect CORPUS -o DIR --rate 0.10 --position end` output (relative to this file)"
    if not (Path(p) / "reflect_report.json").is_file():
        raise CurationError(f"{loc}: {p} has no reflect_report.json, so it is not `curate synth reflect` output; {fix}")
    root, rels = list_shards(p)
    bad = [r for r in rels if not r.endswith(".parquet") or "has_reflection" not in pq.read_schema(Path(root, r)).names]
    if not rels or bad:
        raise CurationError(
            f"{loc}: {Path(root, bad[0]) if bad else p} has no `has_reflection` column (no reflections to train on); "
            f"{fix}"
        )


def build_graph(experiment_file: ExperimentFile) -> list[Node]:
    """Every node in a topological order (dependencies first), keys and directories filled in."""
    check_inputs(experiment_file)
    exp = experiment_file.exp
    nodes: list[Node] = []
    by_id: dict[str, Node] = {}

    def add(n: Node) -> Node:
        n.key = _hash({"format": FORMAT, "kind": n.kind, "params": n.params, "deps": [by_id[d].key for d in n.deps]})
        group = n.condition or "_shared"
        n.dir = f"nodes/{group}/{n.id.split('/')[-1]}-{n.key[:10]}"
        nodes.append(n)
        by_id[n.id] = n
        return n

    corpus = corpus_paths(experiment_file)
    shared_deps: list[str] = []
    if exp.inputs.attributes:
        attributes = experiment_file.resolve(exp.inputs.attributes)
        attr_fp = fingerprint([attributes], suffixes=(".parquet",))  # the attribute files, not summary.json or logs
    else:
        add(
            Node(
                "_shared/classify",
                "classify",
                {"corpus": corpus, "inputs": fingerprint(corpus if isinstance(corpus, list) else [corpus])},
            )
        )
        attributes, attr_fp = CLASSIFY_REF, None
        shared_deps = ["_shared/classify"]
    if exp.train.init_from:
        src = experiment_file.resolve(exp.train.init_from)
        add(Node("_shared/init", "init", {"source": src, "inputs": fingerprint([src]) if os.path.exists(src) else src}))
    base = exp.train.base
    if base is not None:  # the shared base run: its own mix and tokens, one run per seed (built when first read)
        base_manifest = condition_manifest(experiment_file, base, attributes)
        add(
            Node(
                "_shared/base-mix",
                "mix",
                {
                    "manifest": base_manifest,
                    "inputs": fingerprint([s["path"] for s in base_manifest.get("sources", []) if s.get("path")]),
                    "attributes": attr_fp,
                },
                deps=list(shared_deps),
            )
        )

    def base_run(seed: int) -> tuple[str, int]:
        """The id of the seed's base run and the iteration midtraining branches off at. The base run trains all of
        train.steps on the base mix (cpt conditions start from its end; its model is evaluated as the `base (no
        intervention)` rows) and saves the branch iteration besides, kept for the midtraining runs to continue."""
        full = train_config(experiment_file, seed)
        stop = base_iteration(experiment_file, full)
        nid = f"_shared/base-train-s{seed}"
        if nid in by_id:
            return nid, stop
        cfg = train_config(experiment_file, seed, {"train.save_iterations": [stop]})
        if "_shared/base-tokens" not in by_id:
            add(
                Node(
                    "_shared/base-tokens",
                    "tokens",
                    {
                        "tokenizer": base_manifest.get("tokenizer", {}).get("name", "smollm2"),
                        "max_tokens": tokens_needed(cfg),
                    },
                    deps=["_shared/base-mix"],
                )
            )
        params = {"config": cfg, "stage": "pretrain", "seed": seed, "gpus": exp.train.gpus, "nodes": exp.train.nodes}
        add(Node(nid, "train", params, deps=["_shared/base-tokens"], seed=seed))
        it = cfg["train"]["steps"]  # the full-length base model, evaluated like the conditions' (no posttraining)
        cv = add(Node(f"_shared/base-convert-s{seed}-i{it}", "convert", {"iteration": it}, deps=[nid], seed=seed))
        params = {**eval_params, "tag": "base", "iteration": it, "row": BASE_RUN}
        base_evals.append(add(Node(f"_shared/base-eval-s{seed}-i{it}", "eval", params, deps=[cv.id], seed=seed)).id)
        return nid, stop

    evals = exp.evals
    # `subset`: limit_per_file became a seeded random subset (it was the head of each file), so such nodes are redone
    prop = [
        {
            **s.model_dump(),
            "items": [experiment_file.resolve(i) for i in s.items],
            "inputs": fingerprint([experiment_file.resolve(i) for i in s.items]),
            **({"subset": "seeded"} if s.limit_per_file else {}),
        }
        for s in evals.propensity
    ]
    ppl = [
        {
            **s.model_dump(),
            "data": [experiment_file.resolve(i) for i in s.data],
            "inputs": fingerprint([experiment_file.resolve(i) for i in s.data]),
        }
        for s in evals.perplexity
    ]
    eval_params = {"propensity": prop, "perplexity": ppl, "n_boot": evals.n_boot, "seed": evals.seed}
    cap = capability_params(experiment_file)
    if cap is not None:  # absent from the params when unused: older experiments keep their keys
        eval_params["capability"] = cap
    poisoning = poisoning_params(experiment_file)
    if poisoning is not None:  # likewise
        eval_params["poisoning"] = poisoning
    attacks = attacks_params(experiment_file)
    if attacks is not None:  # likewise
        eval_params["attacks"] = attacks
    posttrain = posttrain_params(experiment_file) if exp.posttrain is not None else None
    eval_ids, base_evals = [], []
    for cond in exp.conditions:
        c = cond.name
        manifest = condition_manifest(experiment_file, cond, attributes)
        srcs = [s.get("path") for s in manifest.get("sources", []) if s.get("path")]
        mix = add(
            Node(
                f"{c}/mix",
                "mix",
                {"manifest": manifest, "inputs": fingerprint(srcs), "attributes": attr_fp},
                deps=list(shared_deps),
                condition=c,
            )
        )
        stage = cond.stage or exp.train.stage
        for seed in exp.seeds:
            # where the run starts: a base run's continuation (midtrain) or its end with a fresh optimizer (cpt), the
            # outside model of train.init_from, or random weights; `offset` is the base run's steps before a cpt run,
            # so its evaluated checkpoints are reported at the steps trained in all, like the other conditions'
            deps, offset = [], 0
            if base is not None and stage != "pretrain":
                base_id, stop = base_run(seed)
                deps = [base_id]
                if stage == "midtrain":
                    extra = {"train.continue_from": "@base", "train.continue_iteration": stop}
                else:  # the base run's full-length end (its latest save), a fresh warm-up and schedule, for as many
                    # steps as midtraining reads its mix; reported so that its final sits beside the other arms'
                    steps = train_config(experiment_file, seed)["train"]["steps"]
                    extra, offset = {"train.init_from": "@base", "train.steps": steps - stop}, stop
                cfg = train_config(experiment_file, seed, extra)
            else:
                use_init = bool(exp.train.init_from) and cond.stage != "pretrain"  # an explicit pretrain: from scratch
                cfg = train_config(experiment_file, seed, init=use_init)
                deps = ["_shared/init"] if use_init else []
            tok_id = f"{c}/tokens"
            if tok_id not in by_id:  # every seed reads the same tokens (the data order comes from data.seed)
                add(
                    Node(
                        tok_id,
                        "tokens",
                        {
                            "tokenizer": manifest.get("tokenizer", {}).get("name", "smollm2"),
                            "max_tokens": tokens_needed(cfg),
                        },
                        deps=[mix.id],
                        condition=c,
                    )
                )
            deps = [tok_id] + deps
            tr = add(
                Node(
                    f"{c}/train-s{seed}",
                    "train",
                    {
                        "config": cfg,
                        "stage": stage,
                        "seed": seed,
                        "gpus": exp.train.gpus,
                        "nodes": exp.train.nodes,
                    },
                    deps=deps,
                    condition=c,
                    seed=seed,
                )
            )
            its = eval_iterations(experiment_file, cfg)
            for it in its:
                cv = add(
                    Node(
                        f"{c}/convert-s{seed}-i{it}", "convert", {"iteration": it}, deps=[tr.id], condition=c, seed=seed
                    )
                )
                ev = add(
                    Node(
                        f"{c}/eval-s{seed}-i{offset + it}",
                        "eval",
                        {**eval_params, "tag": "base", "iteration": offset + it},
                        deps=[cv.id],
                        condition=c,
                        seed=seed,
                    )
                )
                eval_ids.append(ev.id)
            if exp.posttrain is not None:
                final = f"{c}/convert-s{seed}-i{its[-1]}"
                pt = add(
                    Node(
                        f"{c}/posttrain-s{seed}",
                        "posttrain",
                        posttrain,
                        deps=[final],
                        condition=c,
                        seed=seed,
                    )
                )
                ev = add(
                    Node(
                        f"{c}/eval-s{seed}-posttrained",
                        "eval",
                        {**eval_params, "tag": "posttrained", "iteration": offset + its[-1]},
                        deps=[pt.id],
                        condition=c,
                        seed=seed,
                    )
                )
                eval_ids.append(ev.id)
    eval_ids += base_evals  # the base run's own model, per seed, beside the conditions
    if exp.train.init_from and evals.start:  # the starting model, once: what every condition moved from
        eval_ids.insert(
            0,
            add(
                Node("_shared/eval-start", "eval", {**eval_params, "tag": START, "iteration": 0}, deps=["_shared/init"])
            ).id,
        )
    for ref in exp.reference_models:  # outside models, once each, beside the conditions
        model = experiment_file.resolve(ref.model)
        model = model if os.path.exists(model) else ref.model  # a named model (smollm2) stays a name
        params = {**eval_params, "tag": REFERENCE, "iteration": 0, "reference": ref.name, "model": model}
        if os.path.exists(model):
            params["model_inputs"] = fingerprint([model])
        eval_ids.append(add(Node(f"_shared/eval-ref-{ref.name}", "eval", params)).id)
    add(
        Node(
            "_report",
            "report",
            {
                "experiment": exp.name,
                "baseline": exp.baseline_name,
                "conditions": [c.name for c in exp.conditions],
                "seeds": exp.seeds,
                "n_boot": evals.n_boot,
                "seed": evals.seed,
                "contrasts": stance_contrasts(exp),
                # absent when there are none: older experiments keep their report node's key
                **({"references": [r.name for r in exp.reference_models]} if exp.reference_models else {}),
                **({"base_run": BASE_RUN} if base_evals else {}),
            },
            deps=eval_ids,
        )
    )
    return nodes


def row_name(node: Node) -> str:
    """The report row an eval node's results go under: its condition, `start`, the reference model's name, or the
    base run's (`row`)."""
    if node.params.get("row"):
        return node.params["row"]
    return node.condition or (node.params["reference"] if node.params.get("tag") == REFERENCE else START)


def stance_contrasts(exp) -> list[list[str]]:
    """The contrasts beside the baseline differences: [aligned, misaligned] when the experiment has both upsampled
    conditions (the stance contrast itself, which no comparison against the baseline gives), then the file's own
    `contrasts:` (each a minus b), each once."""
    by_preset = {c.preset: c.name for c in exp.conditions if c.preset}
    pair = [by_preset.get("alignment-upsampled"), by_preset.get("misalignment-upsampled")]
    out = [pair] if all(pair) else []
    for a, b in exp.contrasts:
        if [a, b] not in out:
            out.append([a, b])
    return out


def node_files(d: Path) -> dict[str, int]:
    """What a finished node leaves in its directory, recorded in its marker: relative path -> size of every file but
    the marker itself and bookkeeping (names starting with `.`: ownership records, locks)."""
    files = {}
    for dirpath, dirs, names in os.walk(d):
        dirs[:] = sorted(x for x in dirs if not x.startswith("."))
        for f in sorted(names):
            p = Path(dirpath) / f
            rel = p.relative_to(d).as_posix()
            if f.startswith(".") or rel in (MARKER, MARKER + ".tmp"):
                continue
            files[rel] = p.lstat().st_size
    return files


def node_state(out: Path, node: Node) -> tuple[bool, str | None]:
    """(finished, why not, where the marker holds the node's key): a node is finished when its `node.json` holds its
    key and every file the marker recorded is still there with its size (a deleted output runs the node again)."""
    d = out / node.dir
    try:
        marker = json.loads((d / MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return False, None
    if marker.get("key") != node.key:
        return False, None
    for rel, size in (marker.get("files") or {}).items():
        p = d / rel
        if not p.is_file():
            return False, f"{rel} is missing"
        if p.stat().st_size != size:
            return False, f"{rel} changed size ({size:,} -> {p.stat().st_size:,} bytes)"
    return True, None


def is_done(out: Path, node: Node) -> bool:
    return node_state(out, node)[0]


def write_graph(out: Path, experiment_file: ExperimentFile, nodes: list[Node]) -> Path:
    g = {
        "format": FORMAT,
        "experiment": str(experiment_file.path),
        "experiment_sha256": experiment_file.sha256,
        "name": experiment_file.exp.name,
        # read where only the graph travels (run-pack): whether finished runs' checkpoints are pruned
        "keep_checkpoints": experiment_file.exp.train.keep_checkpoints,
        "nodes": [n.to_dict() for n in nodes],
    }
    p = out / "graph.json"
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(g, indent=1))
    os.replace(tmp, p)
    return p


# An experiment directory exported to another machine (curate/experiment/export.py) holds the inputs its graph names
# (eval items, capability suites, a checkpoint) under inputs/, and paths.json: {path in graph.json: path relative to
# the experiment directory}. The graph itself is copied unchanged (its keys stay the keys of the nodes back home);
# read_graph and read_marker move the paths when they load, wherever the directory lies then.
PATHS = "paths.json"
PATHS_FORMAT = "curate-experiment-paths/1"
# files a finished node keeps that no other node reads: left behind when it travels (the tokens node's per-shard
# parts, which its merged token files were built from)
SCRATCH = {"tokens": ("tokens/parts/",)}
# files worth bringing back from a node that ran elsewhere when no node back home reads its outputs (a training run's
# metrics: loss, tokens/s, MFU), beside its marker
RECORDS = {"train": ("run/metrics.jsonl",)}


def relocate(obj, table: dict[str, str]):
    """`obj` with every string that is a path of `table` (or lies under one) moved where the table says; `table` is
    ordered longest path first, so a file's own entry wins over the directory holding it."""
    if not table:
        return obj
    if isinstance(obj, dict):
        return {key: relocate(value, table) for key, value in obj.items()}
    if isinstance(obj, list):
        return [relocate(value, table) for value in obj]
    if isinstance(obj, str):
        for old, new in table.items():
            if obj == old or obj.startswith(old + "/"):
                return new + obj[len(old) :]
    return obj


def read_paths(out: Path) -> dict[str, str]:
    """The directory's paths table (empty for an experiment run where it was planned), resolved against `out`."""
    path = out / PATHS
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        if data.get("format") != PATHS_FORMAT:
            raise ValueError(data.get("format"))
        paths = data["paths"]
    except (OSError, ValueError, KeyError, AttributeError) as e:
        raise CurationError(
            f"{path}: unreadable paths table ({type(e).__name__}); export the experiment again"
        ) from None
    base = Path(out).resolve()
    return {old: str(base / rel) for old, rel in sorted(paths.items(), key=lambda item: -len(item[0]))}


def read_graph(out: Path) -> tuple[dict, dict[str, Node]]:
    graph = json.loads((out / "graph.json").read_text())
    nodes = {d["id"]: Node(**d) for d in graph["nodes"]}
    table = read_paths(out)
    for node in nodes.values():
        node.params = relocate(node.params, table)
    return graph, nodes


def read_marker(out: Path, node: Node) -> dict:
    """A finished node's marker, its paths moved as the directory's paths table says (see read_graph)."""
    return relocate(json.loads((out / node.dir / MARKER).read_text()), read_paths(out))


def graph_digest(nodes) -> str:
    """What identifies a graph's nodes: their ids and keys (the same experiment planned anywhere gives the same)."""
    pairs = sorted([node.id, node.key] for node in nodes)
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()
