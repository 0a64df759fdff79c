"""Throughput and memory of `curate mix build` against a plain pyarrow read-and-write of the same bytes.

Real documents (../shared/data/corpus), copied into a 1x corpus and a 4x corpus (the same shards four times, one
source). Every configuration runs in its own process so its peak RSS (sampled process tree) is its own. Prints MB/s of
text, peak RSS, and the ratios the mix issue sets targets for:
  build MB/s / pyarrow read+write MB/s >= 0.5      peak RSS at 4x / peak RSS at 1x ~ 1 (flat)

    python benchmarks/mix_throughput.py [--sources wikipedia-recent,arbital,turntrout,wikipedia-2015:1] [--bucket-mb 32]
                                        [--scales 1,4,16]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import run_measured  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "corpus"


def make_corpus(root: Path, spec: str) -> list[Path]:
    """spec: comma-separated sources, `name:N` takes the first N shards."""
    files = []
    for item in spec.split(","):
        name, _, first_n = item.partition(":")
        shards = sorted((SHARED / name).glob("*.parquet"))
        for shard in shards[: int(first_n) if first_n else None]:
            dst = root / name / shard.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(shard, dst)
            files.append(dst)
    return files


def write_manifest(path: Path, roots: list[Path], bucket_mb: float, count: str) -> None:
    lines = [
        "name: bench",
        "seed: 0",
        "tokenizer:",
        "  name: smollm2",
        f"  count: {count}",
        "output:",
        f"  bucket_mb: {bucket_mb}",
        "  shard_docs: 5000",
        "sources:",
    ]
    for i, root in enumerate(roots):
        lines += [f"  - name: copy{i}", f"    path: {root}"]
    path.write_text("\n".join(lines) + "\n")


def one(kind: str, arg: str, out: str) -> dict:
    import pyarrow.parquet as pq

    from curation.mix import build  # imports first: the clock measures the work, not Python start-up

    t0 = time.perf_counter()
    if kind == "pyarrow":
        # the floor: read id+text of every shard and write it back as zstd Parquet, nothing else
        files = json.loads(arg)
        for i, file in enumerate(files):
            pq.write_table(
                pq.read_table(file, columns=["id", "text"]), f"{out}/plain-{i:05d}.parquet", compression="zstd"
            )
    else:
        build(arg, out, overwrite=True)  # includes loading the tokenizer, hashing inputs, plan, both passes, lock
    return {"seconds": time.perf_counter() - t0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", default="wikipedia-recent,arbital,turntrout,wikipedia-2015:1")
    ap.add_argument("--bucket-mb", type=float, default=32)
    ap.add_argument("--count", default="estimate", choices=["estimate", "exact"])
    ap.add_argument("--scales", default="1,4", help="corpus sizes to run, as copies of the 1x corpus (first must be 1)")
    ap.add_argument("--one", nargs=3, metavar=("KIND", "ARG", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(*args.one)))
        return
    import polars as pl

    tmp = Path(tempfile.mkdtemp(prefix="mix-bench-"))
    try:
        base = tmp / "corpus-0"
        files = make_corpus(base, args.sources)
        scales = [int(x) for x in args.scales.split(",")]
        runs = []
        for k in scales:  # one source with every shard k times: per-source fixed costs stay fixed
            root = base if k == 1 else tmp / f"corpus-{k}x"
            for i in range(k if k > 1 else 0):
                shutil.copytree(base, root / f"copy{i}")
            runs.append((f"{k}x", root, k))
        mb1 = (
            pl.scan_parquet([str(f) for f in files]).select(pl.col("text").str.len_bytes().sum()).collect().item() / 1e6
        )
        docs1 = pl.scan_parquet([str(f) for f in files]).select(pl.len()).collect().item()
        print(
            f"corpus 1x: {docs1} real documents, {mb1:.1f} MB of text in {len(files)} shards ({args.sources}); "
            f"Nx: the same shards N times in one source; tokens: {args.count}; bucket_mb {args.bucket_mb}"
        )
        res = {}
        for scale, root, copies in runs:
            roots = [root]
            all_files = [str(f) for f in files] if copies == 1 else sorted(str(f) for f in root.rglob("*.parquet"))
            mb = mb1 * copies
            out = tmp / f"plain-{scale}"
            out.mkdir()
            stdout, peak = run_measured([sys.executable, __file__, "--one", "pyarrow", json.dumps(all_files), str(out)])
            res[("pyarrow", scale)] = (json.loads(stdout.strip().splitlines()[-1])["seconds"], peak, mb)
            shutil.rmtree(out)
            manifest = tmp / f"bench-{scale}.yaml"
            write_manifest(manifest, roots, args.bucket_mb, args.count)
            stdout, peak = run_measured(
                [sys.executable, __file__, "--one", "build", str(manifest), str(tmp / f"mix-{scale}")]
            )
            res[("build", scale)] = (json.loads(stdout.strip().splitlines()[-1])["seconds"], peak, mb)
            shutil.rmtree(tmp / f"mix-{scale}")
            for kind in ("pyarrow", "build"):
                seconds, peak, mb = res[(kind, scale)]
                print(
                    f"{kind:8s} {scale}  {mb:7.1f} MB  {seconds:7.2f} s  {mb / seconds:7.1f} MB/s  "
                    f"peak RSS {peak:7.0f} MB"
                )
        print("\nratios (targets in brackets)")
        for scale, _, _ in runs:
            built, plain = res[("build", scale)], res[("pyarrow", scale)]
            ratio = (built[2] / built[0]) / (plain[2] / plain[0])
            print(f"  build / pyarrow read+write MB/s at {scale:4s} {ratio:.2f}x  [>= 0.5]")
        for scale, _, _ in runs[1:]:
            build_ratio = res[("build", scale)][1] / res[("build", "1x")][1]
            print(f"  build peak RSS {scale} / 1x          {build_ratio:.2f}x  [flat, ~1]")
            pyarrow_ratio = res[("pyarrow", scale)][1] / res[("pyarrow", "1x")][1]
            print(f"  pyarrow peak RSS {scale} / 1x        {pyarrow_ratio:.2f}x  (reference)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
