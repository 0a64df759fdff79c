"""Peak RSS of building a post-training dataset, as in docs/posttrain.md ("Memory: streamed data"):

    .venv/bin/python scripts/posttrain_data_memory.py list|stream dpo|sft DATA [--cache DIR]

`list` is the old in-memory path (`load_examples` + `Dataset.from_list`); `stream` is what training does
(`build_dataset`: Arrow written under the cache directory). Run each in its own process: ru_maxrss is a high-water mark.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["list", "stream"])
    ap.add_argument("kind", choices=["sft", "dpo"])
    ap.add_argument("data", nargs="+")
    ap.add_argument("--cache", default=None, help="stream: cache directory (default: a temporary one, removed after)")
    a = ap.parse_args()
    import datasets

    from train.posttrain import data

    datasets.disable_progress_bars()
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    if a.mode == "list":
        ds = datasets.Dataset.from_list(data.load_examples(a.data, a.kind))
    else:
        tmp = tempfile.TemporaryDirectory(prefix="posttrain-cache-")
        ds = data.build_dataset(a.data, a.kind, a.cache or tmp.name, progress=False)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{a.mode} {a.kind} rows={len(ds)} floor_mib={floor:.0f} peak_mib={peak:.0f} "
        f"above_floor_mib={peak - floor:.0f} seconds={seconds:.1f} rows_per_s={len(ds) / seconds:.0f}"
    )


if __name__ == "__main__":
    main()
