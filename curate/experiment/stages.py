"""What each node does: a call into the stage's Python API (classify, mix, tokenize, pretrain, convert, posttrain,
evals), with the node's inputs taken from the directories of the nodes it depends on. Lineage (condition, mix lock
hash, token blend, seed, checkpoint iteration, post-training stage) is passed down from node to node and written
into every output that can hold it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import yaml

from curate.experiment.graph import CLASSIFY_REF, MARKER, REFERENCE, START, Node, read_marker, row_name
from curation.core.errors import CurationError


class Ctx:
    def __init__(self, out: Path, node: Node, nodes: dict[str, Node]):
        self.out, self.node, self.nodes = out, node, nodes
        self.dir = out / node.dir

    def dep(self, kind: str) -> tuple[Node, Path, dict]:
        """(node, directory, marker) of the dependency of that kind."""
        for d in self.node.deps:
            n = self.nodes[d]
            if n.kind == kind:
                return n, self.out / n.dir, read_marker(self.out, n)
        raise CurationError(
            f"{self.node.id}: no {kind} dependency (graph.json is damaged; rerun `curate experiment run`)"
        )

    def lineage(self, kind: str) -> dict:
        return dict(self.dep(kind)[2].get("lineage") or {})


def lock_digest(path: Path, root: Path | None = None) -> str:
    """sha256 of a mix lock without the path of its manifest (which lies in the node's directory) and with the paths of
    its inputs inside the experiment's output directory `root` (the classify node's attributes) taken relative to it:
    the same mix gives the same digest wherever the experiment's output directory is. `root` defaults to the
    experiment directory a node's lock lies in (DIR/nodes/<condition>/<node>/mix/mix.lock.json)."""
    path = Path(path).resolve()
    if root is None and len(path.parents) > 4 and path.parents[3].name == "nodes":
        root = path.parents[4]
    lock = json.loads(path.read_text())
    lock["manifest"].pop("path", None)
    if root is not None:
        for i in lock.get("inputs", []):
            p = Path(i["path"])
            if p.is_absolute() and Path(root).resolve() in p.parents:
                i["path"] = "$EXPERIMENT/" + os.path.relpath(p, Path(root).resolve())
    return hashlib.sha256(json.dumps(lock, sort_keys=True).encode()).hexdigest()


def classify(ctx: Ctx) -> dict:
    from curation.classify.pipeline import classify as run

    corpus = ctx.node.params["corpus"]
    jobs = (
        [(c, ctx.dir / "attrs" / Path(c.rstrip("/")).name) for c in corpus]
        if isinstance(corpus, list)
        else [(corpus, ctx.dir / "attrs")]
    )
    for src, dst in jobs:  # a list of sources: ATTRS/<source>, the layout a corpus root's sub-directories get
        res = run(src, dst, overwrite=True, progress=False)
        if not res.ok:
            raise CurationError(f"{ctx.node.id}: {len(res.errors)} shard(s) of {src} failed: {res.errors[:1]}")
    return {"outputs": {"attributes": "attrs"}, "lineage": {}}


def init(ctx: Ctx) -> dict:
    from train import checkpoint
    from train.convert import hf_to_megatron

    src = ctx.node.params["source"]
    try:
        checkpoint.resolve(src)
        return {"outputs": {"checkpoint": src}, "lineage": {"init_from": src}}
    except CurationError:
        pass
    hf_to_megatron(src, ctx.dir / "ckpt")
    return {"outputs": {"checkpoint": "ckpt"}, "lineage": {"init_from": src}}


def mix(ctx: Ctx) -> dict:
    from curation.mix.build import build

    manifest = json.loads(json.dumps(ctx.node.params["manifest"]))
    if any(d.startswith("_shared/classify") for d in ctx.node.deps):
        # relative to the manifest written below (in this node's directory): the manifest, so the mix's shards and
        # lock, then read the same wherever the experiment's output directory is
        attrs = os.path.relpath(ctx.dep("classify")[1] / "attrs", ctx.dir)
        for s in manifest.get("sources", []):
            if isinstance(s.get("attributes"), str) and s["attributes"].startswith(CLASSIFY_REF):
                s["attributes"] = attrs + s["attributes"][len(CLASSIFY_REF) :]
    path = ctx.dir / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    res = build(path, ctx.dir / "mix", overwrite=True, progress=False)
    lin = {
        "condition": ctx.node.condition,
        "mix": {
            "name": manifest["name"],
            "lock_sha256": lock_digest(ctx.dir / "mix" / "mix.lock.json", ctx.out),
            "tokens": res.lock["totals"]["tokens"],
            "documents": res.lock["totals"]["docs"],
            "sources": {s["name"]: round(s["share"], 6) for s in res.lock["sources"]},
        },
    }
    return {"outputs": {"mix": "mix"}, "lineage": lin}


def tokens(ctx: Ctx) -> dict:
    from curate.experiment.read import read_summary
    from train.tokenize import tokenize_mix

    _, mix_dir, _ = ctx.dep("mix")
    p = ctx.node.params
    res = tokenize_mix(
        mix_dir / "mix", p["tokenizer"], ctx.dir / "tokens", workers=1, max_tokens=p["max_tokens"], overwrite=True
    )
    b = res.blend
    lin = ctx.lineage("mix")
    lin["blend"] = {
        "prefixes": b["prefixes"],
        "weights": b["weights"],
        "tokens": res.tokens,
        "documents": res.documents,
        "max_tokens": p["max_tokens"],
    }
    read = read_summary(mix_dir, ctx.dir / "tokens")
    if read is not None:
        lin["blend"]["read"] = read  # what the run read: tokens per source, AI-discourse tokens
    return {"outputs": {"blend": "tokens/blend.json"}, "lineage": lin}


def _fill(obj, refs: dict):
    if isinstance(obj, dict):
        return {k: _fill(v, refs) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_fill(v, refs) for v in obj]
    if isinstance(obj, str):
        for k, v in refs.items():
            if obj == k or obj.startswith(k + "/"):
                return v + obj[len(k) :]
    return obj


# what a train node's marker records of its run: where it ended, and where it started (a resume, the base run's
# checkpoint it continued, or the weights it was initialised from, with a fresh optimizer counting from 0)
RESULT = ("iteration", "loss", "start_iteration", "initialised_from", "continued_from")


def train(ctx: Ctx) -> dict:
    import os

    from train.config import PretrainConfig
    from train.pretrain import pretrain

    _, tok_dir, _ = ctx.dep("tokens")
    refs = {"@tokens": str(tok_dir / "tokens"), "@run": str(ctx.dir / "run")}
    if any(d == "_shared/init" for d in ctx.node.deps):
        n, d, m = ctx.dep("init")
        ck = m["outputs"]["checkpoint"]
        refs["@init"] = ck if os.path.isabs(ck) or not (d / ck).exists() else str(d / ck)
    base = next((ctx.nodes[d] for d in ctx.node.deps if ctx.nodes[d].kind == "train"), None)
    if base is not None:  # train.base's run: midtraining continues it (@base), cpt starts from its end
        _, d, m = ctx.dep("train")
        refs["@base"] = str(d / m["outputs"]["run"])
    cfg = PretrainConfig.validated(_fill(ctx.node.params["config"], refs), f"{ctx.node.id} (graph.json)")
    lin = ctx.lineage("tokens")
    lin.update({"seed": ctx.node.seed, "stage": ctx.node.params["stage"]})
    if base is not None:
        t = ctx.node.params["config"]["train"]
        lin["base_run"] = {
            "node": base.id,
            "key": base.key,
            # midtraining branches off at continue_iteration; cpt starts from the full-length end
            "iteration": t.get("continue_iteration") or base.params["config"]["train"]["steps"],
            "optimizer": "continued" if t.get("continue_from") else "fresh",
            "mix": (m.get("lineage") or {}).get("mix", {}).get("lock_sha256"),
        }
    res = pretrain(cfg, ctx.node.id, progress=False, lineage=lin)
    if int(os.environ.get("RANK", "0")) != 0:
        return {}
    return {"outputs": {"run": "run"}, "lineage": lin, "result": {k: res.get(k) for k in RESULT}}


def convert(ctx: Ctx) -> dict:
    from train.convert import megatron_to_hf

    _, tr_dir, _ = ctx.dep("train")
    it = ctx.node.params["iteration"]
    ck = tr_dir / "run" / "checkpoints" / f"iter_{it:07d}"
    if not ck.is_dir():
        raise CurationError(f"{ck}: checkpoint missing (train.keep_checkpoints dropped it?); delete {tr_dir} and rerun")
    megatron_to_hf(ck, ctx.dir / "hf")
    lin = ctx.lineage("train")
    lin.update({"iteration": it, "posttrain": None})
    src = ctx.dir / "hf" / "SOURCE"
    s = json.loads(src.read_text())
    s["lineage"] = lin
    src.write_text(json.dumps(s) + "\n")
    return {"outputs": {"model": "hf"}, "lineage": lin}


def posttrain(ctx: Ctx) -> dict:
    from train.posttrain.config import PosttrainConfig
    from train.posttrain.run import posttrain as run

    _, cv_dir, _ = ctx.dep("convert")
    raw = {
        **ctx.node.params["config"],
        "model": str(cv_dir / "hf"),
        "output": str(ctx.dir / "run"),
        "condition": ctx.node.condition,
    }
    cfg = PosttrainConfig.validated(raw, f"{ctx.node.id} (posttrain)")
    res = run(cfg, progress=False)
    lin = ctx.lineage("convert")
    lin["posttrain"] = "sft+dpo"
    return {"outputs": {"model": str(Path(res["model"]).relative_to(ctx.dir))}, "lineage": lin}


def _prop_dir(suite: str, mode: str, prompt: str | None) -> str:
    from curate.experiment.graph import slug

    return f"propensity/{suite}/{mode}/{slug(prompt)}"


def _start_model(ctx: Ctx) -> str:
    """The model midtraining started from, as a Hugging Face model: the init source itself when it is one, else the
    Megatron checkpoint it names, converted here."""
    from train.convert import megatron_to_hf

    n, d, m = ctx.dep("init")
    ck = m["outputs"]["checkpoint"]
    if ck == "ckpt":  # the init node converted an HF model: evaluate that model
        return n.params["source"]
    if not (ctx.dir / "hf" / "config.json").exists():
        megatron_to_hf(ck, ctx.dir / "hf")
    return str(ctx.dir / "hf")


def evaluate(ctx: Ctx) -> dict:
    from curation.lm.session import LanguageModel
    from evals.perplexity import run_perplexity
    from evals.propensity import PropensityConfig, run_propensity

    p = ctx.node.params
    if p["tag"] == START:
        model, lin = _start_model(ctx), ctx.lineage("init")
    elif p["tag"] == REFERENCE:
        model, lin = p["model"], {"reference_model": p["model"]}
    else:
        kind = "posttrain" if p["tag"] == "posttrained" else "convert"
        _, d, m = ctx.dep(kind)
        model = str(d / m["outputs"]["model"])
        lin = ctx.lineage(kind)
    lm = LanguageModel.open(model)  # one load for every propensity, capability and perplexity run below
    runs = []
    for s in p["propensity"]:
        for mode in s["modes"]:
            for prompt in s["system_prompts"] if mode in ("chat", "generate") else [None]:
                rel = _prop_dir(s["name"], mode, prompt)
                cfg = PropensityConfig(
                    model=model,
                    items=s["items"],
                    mode=mode,
                    system_prompt=prompt,
                    batch_size=s["batch_size"],
                    variants=s.get("variants", False),
                    seed=p["seed"],
                    n_boot=p["n_boot"],
                    limit_per_file=s["limit_per_file"],
                    tag=p["tag"],
                    condition=row_name(ctx.node),
                    lineage=lin,
                )
                run_propensity(cfg, ctx.dir / rel, progress=False, lm=lm)
                runs.append(
                    {"kind": "propensity", "suite": s["name"], "mode": mode, "system_prompt": prompt, "dir": rel}
                )
    c = p.get("capability")
    if c is not None:
        from evals.capability import CapabilityConfig, run_capability

        cfg = CapabilityConfig(
            model=model,
            suites=c["suites"],
            data_dir=c["data"],
            limit=c["limit"],
            seed=p["seed"],
            shots=c["shots"],
            batch_size=c["batch_size"],
            n_boot=p["n_boot"],
            tag=p["tag"],
            condition=row_name(ctx.node),
        )
        summary = run_capability(cfg, ctx.dir / "capability", progress=False, lm=lm)
        for name, r in summary["suites"].items():
            runs.append({"kind": "capability", "suite": name, "suite_kind": r["kind"], "dir": "capability"})
    for s in p["perplexity"]:
        rel = f"perplexity/{s['name']}"
        run_perplexity(
            model,
            s["data"],
            ctx.dir / rel,
            max_docs=s["max_docs"],
            seq_length=s["seq_length"],
            batch_size=s["batch_size"],
            seed=p["seed"],
            n_boot=p["n_boot"],
            lineage=lin,
            lm=lm,
        )
        runs.append({"kind": "perplexity", "suite": s["name"], "dir": rel})
    z = p.get("poisoning")
    if z is not None:
        from evals.poisoning import PoisoningConfig, run_poisoning

        cfg = PoisoningConfig(
            model=model,
            reference=z["reference"],
            poison=z["poison"],
            attacks=z["attacks"],
            limit=z["limit"],
            max_new_tokens=z["max_new_tokens"],
            gibberish_ppl=z["gibberish_ppl"],
            batch_size=z["batch_size"],
            seed=p["seed"],
            n_boot=p["n_boot"],
            tag=p["tag"],
            condition=row_name(ctx.node),
            lineage=lin,
        )
        run_poisoning(cfg, ctx.dir / "poisoning", progress=False, lm=lm)
        runs += [{"kind": "poisoning", "suite": attack, "dir": "poisoning"} for attack in z["attacks"]]
    a = p.get("attacks")
    if a is not None:
        from evals.attacks import AttackConfig, run_attacks

        cfg = AttackConfig(
            model=model,
            requests=a["requests"],
            split="eval",
            eval_share=a["eval_share"],
            split_seed=a["split_seed"],
            exclude=a["exclude"],
            wrappers=a["wrappers"],
            limit=a["limit"],
            chat=a["chat"],
            max_new_tokens=a["max_new_tokens"],
            batch_size=a["batch_size"],
            seed=p["seed"],
            n_boot=p["n_boot"],
            tag=p["tag"],
            condition=row_name(ctx.node),
            lineage=lin,
        )
        run_attacks(cfg, ctx.dir / "attacks", lm=lm, progress=False, overwrite=True)
        runs += [{"kind": "attacks", "suite": w, "dir": "attacks"} for w in a["wrappers"]]
    return {"outputs": {"runs": runs}, "lineage": lin}


def report(ctx: Ctx) -> dict:
    from curate.experiment.report import publish, write_report

    write_report(ctx.out, ctx.node, ctx.nodes, ctx.dir)
    publish(ctx.out, ctx.dir)
    return {"outputs": {"results": "results.json", "report": "report/report.md"}, "lineage": {}}


RUNNERS = {
    "classify": classify,
    "init": init,
    "mix": mix,
    "tokens": tokens,
    "train": train,
    "convert": convert,
    "posttrain": posttrain,
    "eval": evaluate,
    "report": report,
}


def prepare(ctx: Ctx, resumable: bool) -> None:
    """A node that cannot resume its own work starts from an empty directory (only ever its own node directory); the
    marker of a finished node whose outputs were deleted since goes first, so a node killed now is not finished. A
    pruned node (its checkpoints removed, curate/experiment/prune.py) has nothing to resume: it starts empty too."""
    from curate.experiment.prune import is_pruned

    pruned = is_pruned(ctx.out, ctx.node)
    (ctx.dir / MARKER).unlink(missing_ok=True)
    if ctx.dir.exists() and (pruned or not resumable):
        shutil.rmtree(ctx.dir)
    ctx.dir.mkdir(parents=True, exist_ok=True)
