"""`curate mix build`: plan, then the two-pass shuffle into fixed-size Parquet shards, then lock and hand-off."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.errors import CurationError
from curation.mix.handoff import BLEND_NAME, write_blend
from curation.mix.hashing import hash_bins, row_hash, splitmix64, stream_key
from curation.mix.lock import LOCK_NAME, describe_outputs, hash_inputs, tool_versions, write_lock
from curation.mix.manifest import ManifestFile, load_manifest
from curation.mix.plan import Plan, SourcePlan, make_plan, tokens_path
from curation.mix.progress import bar
from curation.mix.shuffle import BucketSpill
from curation.mix.sources import iter_batches
from curation.mix.writer import ShardWriter

OURS = ("shards", LOCK_NAME, BLEND_NAME, "plan.json", "_work")


@dataclass
class BuildResult:
    plan: Plan
    output: Path | None
    lock: dict | None


def _prepare_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise CurationError(f"{out}: exists and is not a directory; pass a directory for --output")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise CurationError(f"{out}: not empty; pass --overwrite to replace a previous mix there (or pick a new directory)")
        if not (out / LOCK_NAME).exists() and not (out / "shards").exists():
            raise CurationError(f"{out}: holds files that are not a mix; refusing to overwrite it, pick another directory")
        for name in OURS:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _conform(t: pa.Table, schema: pa.Schema, source: str) -> pa.Table:
    n = t.num_rows
    cols = []
    for f in schema:
        if f.name == "source":
            col = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([source])).dictionary_decode()
        elif f.name in t.column_names:
            col = t.column(f.name)
            if col.type != f.type:
                col = pc.cast(col, f.type)
        else:
            col = pa.nulls(n, f.type)
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=schema)


def _spill_source(sp: SourcePlan, plan: Plan, spill: BucketSpill, adv) -> dict:
    m = plan.mf.manifest
    rs = sp.rs
    sel_key = stream_key(m.seed, rs.name, "select")
    shuf_key = stream_key(m.seed, rs.name, "shuffle")
    exact = plan.count == "exact"
    docs = tokens = 0
    unique = 0
    cur, shard_tokens, shard_row0 = -1, None, 0
    for si, row0, t, keep in iter_batches(rs):
        n = t.num_rows
        adv(n)
        if exact:
            if si != cur:
                cur, shard_tokens, shard_row0 = si, np.load(tokens_path(plan.work, rs.index, si)), row0
            toks = shard_tokens[row0 - shard_row0: row0 - shard_row0 + n].astype(np.float64)
        else:
            nbytes = pc.fill_null(pc.binary_length(t.column("text")), 0).to_numpy(zero_copy_only=False)
            toks = nbytes / sp.bytes_per_token
        rows = np.arange(row0, row0 + n, dtype=np.uint64)
        copies = np.where(keep, sp.full_epochs, 0).astype(np.int64)
        if sp.threshold_bin >= 0:
            copies += (keep & (hash_bins(row_hash(sel_key, rows)) <= sp.threshold_bin)).astype(np.int64)
        total = int(copies.sum())
        if total == 0:
            continue
        docs += total
        unique += int((copies > 0).sum())
        tokens += float((copies * toks).sum())
        if total == n and (copies == 1).all():
            idx = np.arange(n)          # every row once, in order: no copy of the text needed
        else:
            idx = np.repeat(np.arange(n), copies)
        starts = np.repeat(np.cumsum(copies) - copies, copies)
        copy_no = (np.arange(total) - starts).astype(np.uint64)
        keys = splitmix64(row_hash(shuf_key, rows[idx]) ^ splitmix64(copy_no + np.uint64(0x51ED)))
        spill.add(_conform(t if len(idx) == n and total == n and (copies == 1).all() else t.take(pa.array(idx)),
                           plan.schema, rs.name), keys)
    return {"docs": docs, "unique_docs": unique, "tokens": round(tokens)}


def build(manifest: str | Path | ManifestFile, output: str | Path, *, dry_run: bool = False, overwrite: bool = False,
          progress: bool = False, count: str | None = None) -> BuildResult:
    mf = manifest if isinstance(manifest, ManifestFile) else load_manifest(manifest)
    m = mf.manifest
    out = Path(output).resolve()
    if dry_run:
        return BuildResult(make_plan(mf, None, count, progress), None, None)
    _prepare_output(out, overwrite)
    work = out / "_work"
    work.mkdir()
    try:
        plan = make_plan(mf, work, count, progress)
        pd = plan.to_dict()
        (out / "plan.json").write_text(json.dumps(pd, indent=1) + "\n")
        files = [(sp.name, role, path) for sp in plan.sources for role, path in sp.rs.inputs()]
        with bar(progress, "hashing inputs", len(files), unit="files") as adv:
            inputs = hash_inputs(files, adv)
        bucket_bytes = int(m.output.bucket_mb * 1e6)
        spill = BucketSpill(work / "buckets", plan.buckets, plan.schema, chunk_bytes=min(64 * 2**20, bucket_bytes))
        realised = {}
        total_rows = sum(s.rows or 0 for sp in plan.sources for s in sp.rs.shards)
        with bar(progress, f"pass 1: select and scatter to {plan.buckets} buckets", total_rows, unit="docs") as adv:
            for sp in plan.sources:
                realised[sp.name] = _spill_source(sp, plan, spill, adv)
        meta = {"curation.mix": json.dumps({"name": m.name, "seed": m.seed, "manifest_sha256": mf.sha256})}
        o = m.output
        writers: dict[str, ShardWriter] = {}
        if o.layout == "mixed":
            writers["mix"] = ShardWriter(out / "shards", plan.schema, o.shard_docs, o.row_group_docs, o.compression, meta)
        else:
            for sp in plan.sources:
                writers[sp.name] = ShardWriter(out / "shards" / sp.name, plan.schema, o.shard_docs, o.row_group_docs,
                                               o.compression, meta)
        with bar(progress, "pass 2: shuffle buckets, write shards", plan.buckets, unit="buckets") as adv:
            for t in spill.drain():
                if o.layout == "mixed":
                    writers["mix"].append(t)
                else:
                    src = t.column("source")
                    for name, w in writers.items():
                        w.append(t.filter(pc.equal(src, name)))
                adv(1)
        written = [f for w in writers.values() for f in w.close()]
        outputs = describe_outputs(out, written)
        changed = [f"{i['path']}" for i in inputs if Path(i["path"]).stat().st_size != i["size"]]
        if changed:
            raise CurationError(f"{changed[0]}: changed while the mix was being built; rerun the build")
        for sp in plan.sources:
            d = pd["sources"][sp.rs.index]
            d.update({"realised_docs": realised[sp.name]["docs"], "realised_unique_docs": realised[sp.name]["unique_docs"],
                      "realised_tokens": realised[sp.name]["tokens"]})
        lock = {"name": m.name, "stage": m.stage, "seed": m.seed,
                "manifest": {"path": str(mf.path), "sha256": mf.sha256, "resolved": m.model_dump(mode="json")},
                "tokenizer": pd["tokenizer"], "layout": o.layout, "buckets": plan.buckets,
                "columns": pd["columns"], "sources": pd["sources"], "inputs": inputs, "outputs": outputs,
                "totals": {"docs": sum(r["docs"] for r in realised.values()), "tokens": sum(r["tokens"] for r in realised.values())},
                "versions": tool_versions()}
        (out / "plan.json").write_text(json.dumps(pd, indent=1) + "\n")
        write_blend(out, pd, o.layout, realised, outputs)
        write_lock(out, lock)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BuildResult(plan, out, lock)
