"""`curate mix build`: plan, then the two-pass shuffle into fixed-size Parquet shards, then lock and hand-off."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.core.digests import cached_sha256
from curation.core.errors import CurationError
from curation.core.outputs import Output, claim
from curation.core.provenance import package_versions
from curation.mix.handoff import BLEND_NAME, write_blend
from curation.mix.hashing import hash_bins, row_hash, stream_key
from curation.mix.lock import LOCK_NAME, describe_outputs, hash_inputs, write_lock
from curation.mix.manifest import ManifestFile, load_manifest
from curation.mix.overlap import Behind, prefetch
from curation.mix.plan import Plan, SourcePlan, make_plan
from curation.mix.progress import bar
from curation.mix.reflections import FLAG, Counter
from curation.mix.scatter import scatter
from curation.mix.shuffle import BucketSpill
from curation.mix.sources import iter_batches
from curation.mix.writer import ShardWriter


@dataclass
class BuildResult:
    plan: Plan
    output: Path | None
    lock: dict | None
    restarted: bool = False  # an unfinished build (killed) was found in the output and cleared first


def _inputs(mf: ManifestFile) -> list[str]:
    """Every path the manifest reads: the output may be none of them, contain none, lie in none."""
    out = [str(mf.path)]
    for src in mf.manifest.sources:
        out.append(mf.resolve(src.path))
        if src.attributes:
            out.append(mf.resolve(src.attributes))
    return out


def _legacy_mix(out: Path) -> dict | None:
    """A mix built before ownership records: its lock lists the shards it wrote."""
    try:
        lock = json.loads((out / LOCK_NAME).read_text())
        return {
            "files": [LOCK_NAME, BLEND_NAME, "plan.json", *[o["path"] for o in lock["outputs"]]],
            "trees": ["_work"],
        }
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _prepare_output(out: Path, mf: ManifestFile, overwrite: bool) -> tuple[Output, bool]:
    """Claims the output (curation/core/outputs.py). A finished mix there needs --overwrite; one killed before it
    finished (no lock) is restarted by the plain rerun. Either way only what `curate mix build` wrote is removed.
    Returns (output, whether an unfinished build was cleared)."""
    o = claim(out, "mix build", inputs=_inputs(mf), overwrite=overwrite, legacy=_legacy_mix, lock=True)  # one writer
    unfinished = o.previous and not (out / LOCK_NAME).exists()
    if o.previous and not unfinished and not overwrite:
        o.release()
        raise CurationError(
            f"{out}: holds a built mix; pass --overwrite to replace it (only what `curate mix build` wrote "
            "there is removed) or pick a new directory"
        )
    if o.previous:
        o.clear()
    o.own("plan.json", BLEND_NAME, LOCK_NAME, Path(LOCK_NAME).with_suffix(".tmp"))
    return o, unfinished


def _shuffle_key(plan: Plan, sp: SourcePlan) -> np.uint64:
    return stream_key(plan.mf.manifest.seed, sp.name, "shuffle")


def _copies(plan: Plan, sp: SourcePlan, rows: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Copies of each row the plan selected: full epochs, plus one where the row's hash falls under the threshold
    (its 16-bit histogram bin, or for an injected source the exact 64-bit hash)."""
    copies = np.where(keep, sp.full_epochs, 0).astype(np.int64)
    if sp.threshold_bin >= 0:
        sel_key = stream_key(plan.mf.manifest.seed, sp.name, "select")
        copies += (keep & (hash_bins(row_hash(sel_key, rows)) <= sp.threshold_bin)).astype(np.int64)
    if sp.threshold_hash is not None:
        sel_key = stream_key(plan.mf.manifest.seed, sp.name, "select")
        copies += (keep & (row_hash(sel_key, rows) <= np.uint64(sp.threshold_hash))).astype(np.int64)
    return copies


def _injections(plan: Plan, placed: dict[str, tuple[list, list]], total_tokens: int) -> list[dict]:
    """The lock's record of each injected source: what was asked, which documents (with copies), how many and how
    many tokens went in, the realised token rate, the seed, and the positions (row numbers of the whole shuffled
    stream, shards in order) where each copy landed, with the id found there."""
    out = []
    for sp in plan.sources:
        inj = sp.rs.spec.inject
        if inj is None:
            continue
        rows = sp.inject_rows
        chosen = sorted((str(i), int(c)) for i, c in zip(rows["id"], rows["copies"], strict=False) if c > 0)
        positions, ids = placed[sp.name]
        out.append(
            {
                "source": sp.name,
                "mode": "documents" if inj.documents is not None else "token_rate",
                "requested": inj.documents if inj.documents is not None else inj.token_rate,
                "seed": plan.mf.manifest.seed,
                "documents": sp.expected_docs,
                "unique_documents": sp.unique_docs,
                "tokens": round(sp.expected_tokens),
                "rate": round(sp.expected_tokens) / total_tokens if total_tokens else 0.0,
                "ids": [list(x) for x in chosen],
                "positions": positions,
                "position_ids": ids,
            }
        )
    return out


def _spill_rest(plan: Plan, sp: SourcePlan, spill: BucketSpill, adv) -> None:
    """Pass 1: read the source and spill the copies the planning scan did not (all of them, or copies 1..)."""
    first_done = 1 if plan.single_read else 0
    key = _shuffle_key(plan, sp)
    for _, row0, t, keep in prefetch(iter_batches(sp.rs)):
        adv(t.num_rows)
        rows = np.arange(row0, row0 + t.num_rows, dtype=np.uint64)
        copies = _copies(plan, sp, rows, keep)
        scatter(
            spill, plan.schema, sp.name, sp.rs.index, key, t, rows, np.full(len(rows), first_done, np.int64), copies
        )


def _drop_unselected(plan: Plan):
    """Pass 2 filter of a single-read build: the scan spilled every kept row once, before the plan knew that a
    downsampled source (under one epoch) keeps only rows whose hash falls under its threshold."""
    if not plan.single_read:
        return None
    down = [sp for sp in plan.sources if sp.full_epochs == 0]
    if not down:
        return None

    def keep(src: np.ndarray, rows: np.ndarray) -> np.ndarray:
        mask = np.ones(len(src), bool)
        for sp in down:
            m = src == sp.rs.index
            if m.any():
                mask[m] = _copies(plan, sp, rows[m], np.ones(int(m.sum()), bool)) > 0
        return mask

    return keep


def build(
    manifest: str | Path | ManifestFile,
    output: str | Path,
    *,
    dry_run: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    count: str | None = None,
) -> BuildResult:
    mf = manifest if isinstance(manifest, ManifestFile) else load_manifest(manifest)
    m = mf.manifest
    out = Path(output).resolve()
    if dry_run:
        return BuildResult(make_plan(mf, count, progress), None, None)
    owned, restarted = _prepare_output(out, mf, overwrite)
    spill: BucketSpill | None = None
    work = out / "_work"
    try:
        work = owned.tree("_work")

        def start(skeleton: Plan):
            nonlocal spill
            spill = BucketSpill(
                work / "buckets",
                skeleton.buckets,
                skeleton.schema,
                chunk_bytes=min(64 * 2**20, int(m.output.bucket_mb * 1e6)),
            )
            if not skeleton.single_read:
                return None
            return lambda sp, t, rows, keep: scatter(
                spill,
                skeleton.schema,
                sp.name,
                sp.rs.index,
                _shuffle_key(skeleton, sp),
                t,
                rows,
                np.zeros(len(rows), np.int64),
                keep.astype(np.int64),
            )

        plan = make_plan(mf, count, progress, on_plan_start=start)
        pd = plan.to_dict()
        (out / "plan.json").write_text(json.dumps(pd, indent=1) + "\n")
        files = [(sp.name, role, path) for sp in plan.sources for role, path in sp.rs.inputs()]
        with bar(progress, "hashing inputs", len(files), unit="files") as adv:
            inputs = hash_inputs(files, adv)
        # a single-read scan spilled every first copy: only upsampled sources are read again
        rest = [sp for sp in plan.sources if not plan.single_read or sp.max_copies > 1]
        with bar(
            progress,
            f"pass 1: select and scatter to {plan.buckets} buckets",
            sum(s.rows or 0 for sp in rest for s in sp.rs.shards),
            unit="docs",
        ) as adv:
            for sp in rest:
                _spill_rest(plan, sp, spill, adv)
        meta = {"curation.mix": json.dumps({"name": m.name, "seed": m.seed, "manifest_sha256": mf.sha256})}
        o = m.output
        writers: dict[str, ShardWriter] = {}
        if o.layout == "mixed":
            writers["mix"] = ShardWriter(
                out / "shards", plan.schema, o.shard_docs, o.row_group_docs, o.compression, meta, own=owned.own
            )
        else:
            for sp in plan.sources:
                writers[sp.name] = ShardWriter(
                    out / "shards" / sp.name,
                    plan.schema,
                    o.shard_docs,
                    o.row_group_docs,
                    o.compression,
                    meta,
                    own=owned.own,
                )
        docs: dict[str, int] = dict.fromkeys((sp.name for sp in plan.sources), 0)
        placed: dict[str, tuple[list, list]] = {
            sp.name: ([], []) for sp in plan.sources if sp.rs.spec.inject is not None
        }
        reflected = Counter([sp.name for sp in plan.sources if FLAG in sp.rs.shard_columns], m.tokenizer.name)
        offset = 0  # row number in the whole output stream (mixed layout: shards in order)
        behind = Behind()  # bucket k is encoded and written while bucket k+1 is read and sorted
        try:
            with bar(progress, "pass 2: shuffle buckets, write shards", plan.buckets, unit="buckets") as adv:
                for t in spill.drain(keep=_drop_unselected(plan)):
                    src = t.column("source")
                    for v in pc.value_counts(src).to_pylist():
                        docs[v["values"]] += v["counts"]
                    for name, (positions, ids) in placed.items():
                        at = np.flatnonzero(pc.equal(src, name).to_numpy(zero_copy_only=False))
                        positions += (offset + at).tolist()
                        ids += t.column("id").take(pa.array(at)).to_pylist()
                    reflected.add(t)
                    offset += t.num_rows
                    if o.layout == "mixed":
                        behind.submit(writers["mix"].append, t)
                    else:
                        behind.submit(
                            lambda t, src: [w.append(t.filter(pc.equal(src, name))) for name, w in writers.items()],
                            t,
                            src,
                        )
                    adv(1)
        finally:
            behind.close()
        written = [f for w in writers.values() for f in w.close()]
        outputs = describe_outputs(out, written)
        changed = [f"{i['path']}" for i in inputs if cached_sha256(i["path"], full=True) != i["sha256"]]
        if changed:
            raise CurationError(f"{changed[0]}: changed while the mix was being built; rerun the build")
        realised = {}
        for sp in plan.sources:
            if docs[sp.name] != sp.expected_docs:  # the copies are a function of the plan: a mismatch is a bug
                raise CurationError(
                    f"{sp.name}: wrote {docs[sp.name]} documents but the plan expected {sp.expected_docs}; "
                    f"please report this with the manifest"
                )
            realised[sp.name] = {
                "docs": docs[sp.name],
                "unique_docs": sp.unique_docs,
                "tokens": round(sp.expected_tokens),
            }
            d = pd["sources"][sp.rs.index]
            d.update(
                {
                    "realised_docs": realised[sp.name]["docs"],
                    "realised_unique_docs": sp.unique_docs,
                    "realised_tokens": realised[sp.name]["tokens"],
                }
            )
        resolved = m.model_dump(mode="json")
        for src in resolved["sources"]:  # a manifest without injection locks exactly as it did before
            if src.get("inject") is None:
                src.pop("inject", None)
        lock = {
            "name": m.name,
            "stage": m.stage,
            "seed": m.seed,
            "manifest": {"path": str(mf.path), "sha256": mf.sha256, "resolved": resolved},
            "tokenizer": pd["tokenizer"],
            "layout": o.layout,
            "buckets": plan.buckets,
            "columns": pd["columns"],
            "sources": pd["sources"],
            "inputs": inputs,
            "outputs": outputs,
            "totals": {
                "docs": sum(r["docs"] for r in realised.values()),
                "tokens": sum(r["tokens"] for r in realised.values()),
            },
            "versions": package_versions(),
        }
        if reflected.docs:  # `curate synth reflect` output: the share of documents with a reflection (SPP's dose)
            lock["reflections"] = reflected.record(plan, realised, lock["totals"])
        if placed:
            lock["injections"] = _injections(plan, placed, lock["totals"]["tokens"])
        (out / "plan.json").write_text(json.dumps(pd, indent=1) + "\n")
        write_blend(out, pd, o.layout, realised, outputs)
        write_lock(out, lock)
    finally:
        if spill is not None:
            spill.close()
        shutil.rmtree(work, ignore_errors=True)
        owned.release()
    return BuildResult(plan, out, lock, restarted)
