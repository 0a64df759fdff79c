"""Runs one node of an experiment: `python -m curate.experiment.node OUTPUT_DIR NODE_ID`.

The local executor starts one such process per node, the Slurm executor one job; the node reads everything it needs
from OUTPUT_DIR/graph.json and the markers of the nodes it depends on, and writes its own marker (``node.json``)
last, atomically, so a node killed at any point is simply run again.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from curation.core.provenance import host


def run_node(out: Path, node_id: str) -> dict:
    from curate.experiment.graph import MARKER, RESUMABLE, is_done, node_files, read_graph
    from curate.experiment.prune import is_pruned
    from curate.experiment.stages import RUNNERS, Ctx, prepare

    _, nodes = read_graph(out)
    node = nodes[node_id]
    ctx = Ctx(out, node, nodes)
    if is_done(out, node) and not is_pruned(out, node):  # pruned: started again because a new reader needs it
        return json.loads((ctx.dir / MARKER).read_text())
    prepare(ctx, node.kind in RESUMABLE)
    t0 = time.time()
    res = RUNNERS[node.kind](ctx)
    if int(os.environ.get("RANK", "0")) != 0:
        return res
    marker = {
        "id": node.id,
        "kind": node.kind,
        "key": node.key,
        "condition": node.condition,
        "seed": node.seed,
        "deps": {d: nodes[d].key for d in node.deps},
        "seconds": round(time.time() - t0, 2),
        "host": host(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **res,
        "files": node_files(ctx.dir),
    }  # what the node left: checked by is_done, so a deleted output reruns it
    tmp = ctx.dir / (MARKER + ".tmp")
    tmp.write_text(json.dumps(marker, indent=1))
    os.replace(tmp, ctx.dir / MARKER)
    return marker


def main(argv: list[str]) -> int:
    from curation.core.quiet import quiet_third_party

    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    quiet_third_party(progress=False)
    from curation.core.errors import CurationError

    out, node_id = Path(argv[0]), argv[1]
    try:
        run_node(out, node_id)
    except CurationError as e:
        print(f"error: {node_id}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
