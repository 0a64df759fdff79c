"""Tokens/s of `curate train tokenize` vs a plain HF-tokenizers batch-encode loop writing the same Megatron dataset,
in the same run (target ratio >= 1x), plus the tiny CPU model's training steps/s.

    .venv/bin/python benchmarks/tokenize_throughput.py [--corpus ../shared/data/corpus] [--workers 2] [--steps 10]

Both sides include loading the tokenizer and writing the .bin/.idx files; the baseline is one process calling
`tokenizer(batch, add_special_tokens=False)` (Rust batch encoding, all cores) and Megatron's IndexedDatasetBuilder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def baseline(shards: list[Path], tokenizer_dir: str, out: Path, batch: int = 512) -> int:
    import numpy as np
    import pyarrow.parquet as pq
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    builders, n = {}, 0
    for shard in shards:
        for rb in pq.ParquetFile(shard).iter_batches(batch_size=batch, columns=["text", "source"]):
            texts, sources = rb.column("text").to_pylist(), rb.column("source").to_pylist()
            keep = [i for i, t in enumerate(texts) if t]
            for i, ids in zip(keep, tok([texts[i] for i in keep], add_special_tokens=False)["input_ids"], strict=False):
                b = builders.get(sources[i]) or builders.setdefault(
                    sources[i], IndexedDatasetBuilder(str(out / f"{sources[i]}.bin"), dtype=np.uint16)
                )
                ids.append(tok.eos_token_id)
                b.add_document(ids, [len(ids)])
                n += len(ids)
    for src, b in builders.items():
        b.finalize(str(out / f"{src}.idx"))
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "data" / "corpus"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--shard-docs", type=int, default=2000)
    a = ap.parse_args()

    import polars as pl

    from train.tokenize import resolve_tokenizer, tokenize_mix

    tmp = Path(tempfile.mkdtemp(prefix="tokbench-"))
    try:
        frames = [
            pl.read_parquet(str(d / "*.parquet")).select("id", "text").with_columns(source=pl.lit(d.name))
            for d in sorted(Path(a.corpus).iterdir())
            if d.is_dir() and list(d.glob("*.parquet"))
        ]
        df = pl.concat(frames).sample(fraction=1.0, shuffle=True, seed=0)
        mix = tmp / "mix"
        mix.mkdir()
        for i in range(0, len(df), a.shard_docs):
            df[i : i + a.shard_docs].write_parquet(mix / f"shard-{i // a.shard_docs:05d}.parquet")
        shards = sorted(mix.glob("*.parquet"))
        tdir, _ = resolve_tokenizer("smollm2")  # GGUF -> cached HF dir once, outside both timings
        print(f"corpus: {len(df):,} documents, {df['text'].str.len_bytes().sum() / 1e6:.1f} MB, {len(shards)} shards")

        t0 = time.perf_counter()
        (tmp / "base").mkdir()
        n_base = baseline(shards, str(tdir), tmp / "base")
        t_base = time.perf_counter() - t0

        t0 = time.perf_counter()
        res = tokenize_mix(mix, "smollm2", tmp / "ours", workers=a.workers)
        t_ours = time.perf_counter() - t0
        assert res.tokens == n_base, (res.tokens, n_base)
        for src in res.blend[
            "prefixes"
        ]:  # the same documents (shard order differs: workers finish out of order only per shard)
            assert (tmp / "ours" / f"{src}.bin").stat().st_size == (tmp / "base" / f"{src}.bin").stat().st_size

        out = {
            "tokens": n_base,
            "baseline_tokens_per_s": n_base / t_base,
            "tokenize_tokens_per_s": res.tokens / t_ours,
            "ratio": t_base / t_ours,
            "workers": a.workers,
        }
        print(f"HF batch-encode loop : {n_base / t_base:12,.0f} tokens/s ({t_base:.1f}s)")
        print(f"curate train tokenize: {res.tokens / t_ours:12,.0f} tokens/s ({t_ours:.1f}s, {a.workers} workers)")
        print(f"ratio: {t_base / t_ours:.2f}x")

        # tiny CPU model steps/s (the shipped CI config)
        run = tmp / "run"
        cmd = [
            sys.executable,
            "-m",
            "curate",
            "train",
            "pretrain",
            str(ROOT / "train/configs/tiny_cpu.yaml"),
            "--no-progress",
            "--save-dir",
            str(run),
            "--steps",
            str(a.steps),
            "--set",
            f"data.blend={res.output / 'blend.json'}",
            "--set",
            f"train.save_interval={a.steps}",
        ]
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        steady = recs[2:] or recs
        step_s = sum(r["step_s"] for r in steady) / len(steady)
        out.update(tiny_steps_per_s=1 / step_s, tiny_tokens_per_s=sum(r["tokens_per_s"] for r in steady) / len(steady))
        print(f"tiny CPU model: {1 / step_s:.2f} steps/s ({out['tiny_tokens_per_s']:,.0f} tokens/s, steps 3-{a.steps})")
        print(json.dumps(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
