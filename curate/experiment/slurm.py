"""The Slurm executor: one sbatch job per unfinished node, chained with --dependency=afterok on the jobs of the nodes
it reads. Training nodes with `train.gpus` > 0 are launched with torchrun on every node of their allocation, as
docs/train.md describes; a post-training node with `slurm.resources.posttrain.gpus` > 1 runs DDP with torchrun on its
one node (docs/posttrain.md); the other nodes run one process. Each job runs `python -m curate.experiment.node OUT ID`,
so a job that fails or is cancelled is simply submitted again by the next `curate experiment run`.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from curate.experiment.graph import Node
from curate.experiment.plan import PACKAGE_ROOT, Plan, Submitted, log_path
from curation.core.errors import CurationError


def script(out: Path, plan: Plan, node: Node) -> str:
    spec = plan.experiment_file.exp.slurm
    python = shlex.quote(spec.python or sys.executable)
    quote = lambda p: shlex.quote(str(p))  # noqa: E731
    request = spec.for_kind(node.kind)
    gpus = node.params.get("gpus", 0) if node.kind == "train" else 0  # torchrun processes per node
    ddp = request["gpus"] if node.kind == "posttrain" and request["gpus"] > 1 else 0  # one node, one process per GPU
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={plan.experiment_file.exp.name}:{node.id}",
        f"#SBATCH --output={log_path(out, node).with_suffix('.slurm-%j.log')}",
        f"#SBATCH --time={request['time']}",
        f"#SBATCH --cpus-per-task={request['cpus_per_task']}",
    ]
    lines += [f"#SBATCH --partition={request['partition']}"] if request["partition"] else []
    lines += [f"#SBATCH --account={spec.account}"] if spec.account else []
    lines += [f"#SBATCH --mem={request['mem']}"] if request["mem"] else []
    if gpus:
        lines += [
            f"#SBATCH --nodes={node.params.get('nodes', 1)}",
            "#SBATCH --ntasks-per-node=1",
            f"#SBATCH --gpus-per-node={gpus}",
            "#SBATCH --exclusive",
        ]
    elif request["gpus"]:  # one process on a GPU node: post-training, conversion, evals
        lines += [f"#SBATCH --gpus-per-node={request['gpus']}"]
    lines += [f"#SBATCH {x}" for x in request["extra"]]
    lines += [
        "set -euo pipefail",
        f"cd {quote(out)}",
        f"export PYTHONPATH={quote(PACKAGE_ROOT)}${{PYTHONPATH:+:$PYTHONPATH}}",
    ]
    node_cmd = f"-m curate.experiment.node {quote(out)} {quote(node.id)}"
    if gpus:
        lines += [
            'export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1) MASTER_PORT=29500',
            f'srun {python} -m torch.distributed.run --nnodes "$SLURM_NNODES" --nproc-per-node {gpus} '
            f'--node-rank "$SLURM_NODEID" --rdzv-backend c10d --rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT" {node_cmd}',
        ]
    elif ddp:
        lines.append(f"{python} -m torch.distributed.run --standalone --nproc-per-node {ddp} {node_cmd}")
    else:
        lines.append(f"{python} {node_cmd}")
    return "\n".join(lines) + "\n"


def _still_queued(job: str) -> bool:
    if not shutil.which("squeue"):
        return False
    r = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True)
    return r.returncode == 0 and bool(r.stdout.strip())


def submit(out: Path, plan: Plan, log: Callable[[str], None] = print) -> dict[str, str]:
    """Submits every unfinished node in dependency order; returns {node id: job id}."""
    if not shutil.which("sbatch"):
        raise CurationError(
            "--executor slurm: `sbatch` is not on PATH; run on a Slurm login node (or use --executor local)"
        )
    scripts = out / "slurm"
    scripts.mkdir(exist_ok=True)
    book = scripts / "jobs.json"
    prev = json.loads(book.read_text()) if book.exists() else {}
    jobs: dict[str, str] = {}
    for n in plan.to_run:
        old = prev.get(n.id)
        if old and old["key"] == n.key and _still_queued(old["job"]):
            jobs[n.id] = old["job"]
            log(f"queued already {n.id} (job {old['job']})")
            continue
        path = scripts / (n.id.replace("/", "__") + ".sbatch")
        path.write_text(script(out, plan, n))
        after = [jobs[d] for d in n.deps if d in jobs]
        cmd = ["sbatch", "--parsable"] + ([f"--dependency=afterok:{':'.join(after)}"] if after else []) + [str(path)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        match = re.search(r"(\d+)(?:;\S+)?\s*$", r.stdout.strip())
        if r.returncode != 0 or not match:
            raise CurationError(
                f"sbatch {path} failed ({r.returncode}): {(r.stderr or r.stdout).strip()[:300]}; "
                f"{len(jobs)} job(s) were submitted before it (see {book})"
            )
        jobs[n.id] = match.group(1)
        prev[n.id] = {"job": match.group(1), "key": n.key, "after": after}
        book.write_text(json.dumps(prev, indent=1))
        log(f"submitted {n.id} as job {match.group(1)}" + (f" after {','.join(after)}" if after else ""))
    return jobs


class SlurmExecutor:
    """One sbatch job per unfinished node (see `submit`); the jobs run after `curate experiment run` returns."""

    name = "slurm"
    jobs = 1

    def submit(self, out: Path, plan: Plan, log: Callable[[str], None]) -> Submitted:
        return Submitted(jobs=submit(out, plan, log=log))
