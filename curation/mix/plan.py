"""Planning: one streaming pass over every source (documents, bytes, tokens before and after the filter), then the
budget of each source, its repetition factor and its share of the mix.

Budgets (docs/mix.md has the full rules):
  * `tokens: N` is an absolute budget; `weight: w` is a share of the whole mix; a source with neither is *natural*:
    with `target_tokens` the naturals split what is left in proportion to their size, without it each gives its
    size once.
  * budgets are stated for the source before filtering; `replace_removed: true` refills what the filter removed
    by resampling kept documents, `false` shrinks the budget by the removed share.
  * realising a budget B from selected documents worth S tokens: every document floor(B/S) times, plus the
    documents whose seeded hash falls under a threshold chosen (from a 65,536-bin token histogram, so memory does not
    grow with the corpus) to cover the remaining B - floor(B/S)*S tokens.
  * an injected source (`inject`: poison documents) is planned after the others, on top of them: exactly N
    documents, or as many as make its share of all tokens `token_rate`; the documents are taken in the order of
    their seeded hash (exact, from per-document hashes kept in memory: injected sets are small), and the shuffle
    puts them at seeded random positions like every other copy.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.core.errors import CurationError
from curation.mix.hashing import BINS, hash_bins, row_hash, stream_key
from curation.mix.manifest import ManifestFile
from curation.mix.overlap import prefetch
from curation.mix.sources import ResolvedSource, iter_batches, resolve_source
from curation.mix.tokens import TokenCounter

GUESS_BYTES_PER_TOKEN = 4.0  # only sizes the shuffle buckets before any text is read


@dataclass
class SourcePlan:
    rs: ResolvedSource
    docs_available: int = 0
    bytes_available: int = 0
    tokens_available: float = 0.0
    docs_selected: int = 0
    bytes_selected: int = 0
    tokens_selected: float = 0.0
    bytes_per_token: float | None = None  # estimate mode: measured on the sample
    sample_docs: int = 0
    budget: float = 0.0  # tokens to realise
    budget_kind: str = "natural"
    full_epochs: int = 0
    threshold_bin: int = -1  # documents with hash bin <= this get one more copy
    expected_docs: int = 0
    expected_tokens: float = 0.0
    unique_docs: int = 0  # selected documents with at least one copy
    share: float = 0.0
    threshold_hash: int | None = None  # injected sources: rows whose selection hash is <= this get one more copy
    inject_rows: dict = field(default_factory=dict, repr=False)  # injected sources: hash, tokens, id of every kept row
    hist_docs: np.ndarray = field(default=None, repr=False)
    hist_tokens: np.ndarray = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.rs.name

    @property
    def max_copies(self) -> int:
        """The most copies any selected row gets: full epochs, plus one where the hash threshold applies."""
        return self.full_epochs + (self.threshold_bin >= 0 or self.threshold_hash is not None)

    @property
    def epochs(self) -> float:
        return self.budget / self.tokens_selected if self.tokens_selected else 0.0

    def to_dict(self) -> dict:
        d = {
            "name": self.name,
            "kind": self.rs.spec.kind,
            "shards": len(self.rs.shards),
            "docs_available": self.docs_available,
            "tokens_available": round(self.tokens_available),
            "bytes_available": self.bytes_available,
            "docs_selected": self.docs_selected,
            "tokens_selected": round(self.tokens_selected),
            "bytes_selected": self.bytes_selected,
            "budget_kind": self.budget_kind,
            "budget_tokens": round(self.budget),
            "repetition": round(self.epochs, 4),
            "max_epochs": self.rs.spec.max_epochs,
            "expected_docs": self.expected_docs,
            "expected_tokens": round(self.expected_tokens),
            "share": round(self.share, 6),
            "filter": self.rs.spec.filter,
            "transform": self.rs.spec.transform,
            "columns": self.rs.used,
            "notes": self.rs.notes,
        }
        if self.rs.spec.inject is not None:  # only then: plans and locks of other manifests stay as they were
            d["inject"] = self.rs.spec.inject.model_dump(exclude_none=True)
        if self.bytes_per_token is not None:
            d["bytes_per_token"] = round(self.bytes_per_token, 4)
            d["sample_docs"] = self.sample_docs
        return d


@dataclass
class Plan:
    mf: ManifestFile
    sources: list[SourcePlan]
    tokenizer: dict
    count: str
    total_tokens: float
    buckets: int
    schema: pa.Schema
    single_read: bool = False  # the planning scan spills first copies (see _bucket_plan)

    def to_dict(self) -> dict:
        m = self.mf.manifest
        return {
            "name": m.name,
            "stage": m.stage,
            "seed": m.seed,
            "manifest": str(self.mf.path),
            "tokenizer": {**self.tokenizer, "count": self.count},
            "target_tokens": m.target_tokens,
            "total_tokens": round(self.total_tokens),
            "total_docs": sum(s.expected_docs for s in self.sources),
            "buckets": self.buckets,
            "single_read": self.single_read,
            "layout": m.output.layout,
            "columns": [f.name for f in self.schema],
            "sources": [s.to_dict() for s in self.sources],
        }


def _scan(sp: SourcePlan, counter: TokenCounter, mf: ManifestFile, progress, on_batch=None) -> list[pa.Array]:
    rs = sp.rs
    m = mf.manifest
    exact = m.tokenizer.count == "exact"
    sel_key = stream_key(m.seed, rs.name, "select")
    smp_key = stream_key(m.seed, rs.name, "sample")
    total_rows = sum(s.rows or 0 for s in rs.shards) or 1
    p_sample = min(1.0, m.tokenizer.sample_docs / total_rows)
    sample: list[pa.Array] = []
    sp.hist_docs = np.zeros(BINS, np.float64)
    sp.hist_tokens = np.zeros(BINS, np.float64)
    for _si, row0, t, keep in prefetch(iter_batches(rs)):
        n = t.num_rows
        text = t.column("text").combine_chunks()
        valid = pc.is_valid(text).to_numpy(zero_copy_only=False)
        nbytes = pc.fill_null(pc.binary_length(text), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        rows = np.arange(row0, row0 + n, dtype=np.uint64)
        if exact:
            toks = counter.count(text)
        else:
            toks = nbytes
            u = row_hash(smp_key, rows)
            pick = valid & ((u >> np.uint64(11)) < np.uint64(int(p_sample * 2**53)))
            if pick.any():  # whole documents: cutting them to their beginnings biases the ratio (~2% on Wikipedia)
                sample.append(pc.filter(text, pa.array(pick)))
        sp.docs_available += int(valid.sum())
        sp.bytes_available += int(nbytes.sum())
        sp.tokens_available += float(toks.sum())
        sp.docs_selected += int(keep.sum())
        sp.bytes_selected += int(nbytes[keep].sum())
        sp.tokens_selected += float(toks[keep].sum())
        bins = hash_bins(row_hash(sel_key, rows))[keep]
        sp.hist_docs += np.bincount(bins, minlength=BINS)
        sp.hist_tokens += np.bincount(bins, weights=toks[keep].astype(np.float64), minlength=BINS)
        if rs.spec.inject is not None:
            for k, v in (
                ("hash", row_hash(sel_key, rows)[keep]),
                ("tokens", toks[keep].astype(np.float64)),
                ("id", np.array(pc.filter(t.column("id"), pa.array(keep)).to_pylist(), dtype=object)),
            ):
                sp.inject_rows[k] = np.concatenate([sp.inject_rows[k], v]) if k in sp.inject_rows else v
        if on_batch is not None:
            on_batch(sp, t, rows, keep)
        if progress:
            progress(n)
    return sample


def _stored_text_bytes(rs: ResolvedSource) -> float:
    """The source's text size from file metadata alone (Parquet: the text column's uncompressed size; JSONL: the
    file size, x4 when gzipped): an estimate, available before any document is read."""
    total = 0.0
    for s in rs.shards:
        if s.path.endswith(".parquet"):
            md = pq.ParquetFile(s.path).metadata
            col = md.schema.names.index(rs.spec.text_key)
            total += sum(md.row_group(g).column(col).total_uncompressed_size for g in range(md.num_row_groups))
        else:
            total += os.path.getsize(s.path) * (4 if s.path.endswith(".gz") else 1)
    return total


def _bucket_plan(mf: ManifestFile, resolved: list[ResolvedSource]) -> tuple[int, bool]:
    """(number of shuffle buckets, whether the planning scan spills every kept row's first copy).

    Both come from the manifest and file metadata, before the scan, so the scan can spill and the order (a
    function of the bucket count) is the same whichever way a build runs. The scan spills unless the mix is
    expected to be under half of what the sources hold: then most first copies would be spilled only to be
    dropped, and a separate pass reads the sources again instead."""
    m = mf.manifest
    # injected sources are left out, so the same manifest without them shuffles its rows into the same order
    stored = [0.0 if rs.spec.inject is not None else _stored_text_bytes(rs) for rs in resolved]
    avail = sum(stored) or 1.0
    if m.target_tokens:
        expected = m.target_tokens * GUESS_BYTES_PER_TOKEN
    else:
        w = sum(s.weight or 0.0 for s in m.sources)
        fixed = sum(
            (s.tokens or 0) * GUESS_BYTES_PER_TOKEN if (s.tokens or s.weight) else b
            for s, b in zip(m.sources, stored, strict=False)
        )
        expected = fixed / max(1 - w, 1e-3)
    buckets = max(1, math.ceil(expected / (m.output.bucket_mb * 1e6)))
    fuse = expected >= 0.5 * avail if m.output.single_read == "auto" else bool(m.output.single_read)
    return buckets, fuse


def _budgets(mf: ManifestFile, sps: list[SourcePlan]) -> float:
    m = mf.manifest
    specs = [sp.rs.spec for sp in sps]
    weights = [s.weight or 0.0 for s in specs]
    W = sum(weights)
    absolute = sum(s.tokens or 0 for s in specs)
    naturals = [
        sp for sp in sps if sp.rs.spec.weight is None and sp.rs.spec.tokens is None and sp.rs.spec.inject is None
    ]
    first_w = next((i for i, s in enumerate(specs) if s.weight is not None), 0)
    for sp in sps:
        if sp.docs_available == 0:
            raise CurationError(f"{mf.source_where(sp.rs.index, 'path')}: the shards hold no documents with text")
    if m.target_tokens:
        T = float(m.target_tokens)
        rest = T - absolute - W * T
        if naturals:
            if rest <= 0:
                raise CurationError(
                    f"{mf.where('target_tokens')}: weights ({W:g} of the mix) and token budgets ({absolute:,}) "
                    f"leave nothing of target_tokens {T:,.0f} for {', '.join(sp.name for sp in naturals)}; "
                    f"lower them or give those sources a budget"
                )
            size = sum(sp.tokens_available for sp in naturals)
            for sp in naturals:
                sp.budget, sp.budget_kind = rest * sp.tokens_available / size, "remainder"
        elif abs(rest) > 1e-6 * T:
            raise CurationError(
                f"{mf.where('sources', first_w, 'weight')}: weights sum to {W:g} and token budgets to "
                f"{absolute:,}, which assign {W * T + absolute:,.0f} of target_tokens {T:,.0f}; make them add "
                f"up, or leave one source without weight or tokens to take the remainder"
            )
    else:
        if W >= 1 - 1e-9:
            raise CurationError(
                f"{mf.where('sources', first_w, 'weight')}: weights are shares of the whole mix and sum to "
                f"{W:g}; without target_tokens they must sum to less than 1, with sources without weight "
                f"giving the rest (or set target_tokens)"
            )
        fixed = absolute + sum(sp.tokens_available for sp in naturals)
        T = fixed / (1 - W)
        for sp in naturals:
            sp.budget, sp.budget_kind = sp.tokens_available, "natural"
    for sp in sps:
        s = sp.rs.spec
        if s.inject is not None:
            continue  # planned on top of the rest (_realise_inject)
        if s.weight is not None:
            sp.budget, sp.budget_kind = s.weight * T, "weight"
        elif s.tokens is not None:
            sp.budget, sp.budget_kind = float(s.tokens), "tokens"
        if not s.replace_removed and sp.tokens_available:
            sp.budget *= sp.tokens_selected / sp.tokens_available
    return T


def _realise(mf: ManifestFile, sp: SourcePlan) -> None:
    i, s = sp.rs.index, sp.rs.spec
    if sp.budget <= 0:
        return
    if sp.docs_selected == 0 or sp.tokens_selected <= 0:
        what = f"filter `{s.filter}`" if s.filter else ("select" if s.select else "the source")
        raise CurationError(
            f"{mf.source_where(i, 'filter' if s.filter else ('select' if s.select else 'path'))}: {what} keeps "
            f"no documents of {sp.docs_available:,}; loosen it or drop the source"
        )
    e = sp.budget / sp.tokens_selected
    if e > s.max_epochs * (1 + 1e-9):
        missing = sp.budget / s.max_epochs - sp.tokens_selected
        raise CurationError(
            f"{mf.source_where(i, 'max_epochs') if ('sources', i, 'max_epochs') in mf.lines else mf.source_where(i)}: "
            f"the budget of {sp.budget:,.0f} tokens needs {e:.2f} epochs of the {sp.tokens_selected:,.0f} "
            f"selected tokens, over max_epochs {s.max_epochs:g}: {missing:,.0f} tokens (about "
            f"{math.ceil(missing / (sp.tokens_selected / sp.docs_selected)):,} more documents like these) are "
            f"missing; lower the budget or weight, loosen the filter, add data (for a synthetic source: "
            f"`curate synth docs --target-tokens {math.ceil(sp.budget / s.max_epochs)}`), or raise max_epochs"
        )
    full = int(math.floor(e + 1e-12))
    rest = sp.budget - full * sp.tokens_selected
    cum = np.cumsum(sp.hist_tokens)
    k = -1
    if rest > 0:
        j = int(np.searchsorted(cum, rest))  # first bin where the cumulative mass reaches rest
        j = min(j, BINS - 1)
        below = cum[j - 1] if j > 0 else 0.0
        k = j if abs(cum[j] - rest) <= abs(rest - below) else j - 1
    sp.full_epochs, sp.threshold_bin = full, k
    part_docs = int(np.cumsum(sp.hist_docs)[k]) if k >= 0 else 0
    sp.unique_docs = sp.docs_selected if full >= 1 else part_docs
    part_tokens = float(cum[k]) if k >= 0 else 0.0
    sp.expected_docs = full * sp.docs_selected + part_docs
    sp.expected_tokens = full * sp.tokens_selected + part_tokens


def _realise_inject(mf: ManifestFile, sp: SourcePlan, rest_tokens: float) -> None:
    """Exactly `documents` copies, or the count whose tokens come closest to `token_rate` of the whole mix (the rest's
    tokens plus the injected ones), taken in seeded-hash order; more than the source holds repeats all of it."""
    i, s = sp.rs.index, sp.rs.spec
    inj = s.inject
    if sp.docs_selected == 0 or sp.tokens_selected <= 0:
        key = "filter" if s.filter else ("select" if s.select else "path")
        raise CurationError(
            f"{mf.source_where(i, key)}: no documents to inject (of {sp.docs_available:,}); check the path or filter"
        )
    order = np.argsort(sp.inject_rows["hash"], kind="stable")
    cum = np.cumsum(sp.inject_rows["tokens"][order])
    n_src, tok_src = len(order), float(cum[-1])
    if inj.documents is not None:
        n = inj.documents
    else:
        want = inj.token_rate / (1 - inj.token_rate) * rest_tokens
        full, rem = divmod(want, tok_src)
        j = int(np.searchsorted(cum, rem))  # cum[j - 1] < rem <= cum[j]
        below = cum[j - 1] if j > 0 else 0.0
        k = j + 1 if j < n_src and abs(cum[j] - rem) < abs(rem - below) else j
        n = int(full) * n_src + k
        if n == 0:
            raise CurationError(
                f"{mf.source_where(i, 'inject')}: token_rate {inj.token_rate:g} of this mix is {want:,.0f} "
                f"tokens, closer to none than to one of these documents ({cum[0]:,.0f} tokens); raise the rate, "
                "grow the mix, or give `inject: {documents: N}`"
            )
    full, k = divmod(n, n_src)
    if n / n_src > s.max_epochs * (1 + 1e-9):
        raise CurationError(
            f"{mf.source_where(i, 'inject')}: injecting {n:,} documents needs {n / n_src:.2f} copies of each "
            f"of the {n_src:,} documents, over max_epochs {s.max_epochs:g}; write more documents (`curate "
            f"synth poison --n-docs {math.ceil(n / s.max_epochs)}`) or raise max_epochs"
        )
    sp.full_epochs = full
    sp.threshold_hash = int(sp.inject_rows["hash"][order[k - 1]]) if k else None
    sp.expected_docs = n
    sp.expected_tokens = full * tok_src + (float(cum[k - 1]) if k else 0.0)
    sp.budget, sp.budget_kind = sp.expected_tokens, "inject"
    sp.unique_docs = n_src if full else k
    copies = np.full(n_src, full, np.int64)
    copies[order[:k]] += 1
    sp.inject_rows["copies"] = copies


def _schema(mf: ManifestFile, sps: list[SourcePlan]) -> pa.Schema:
    fields = [pa.field("id", pa.string()), pa.field("text", pa.large_string()), pa.field("source", pa.string())]
    types: dict[str, list] = {}
    for sp in sps:
        for c in sp.rs.used:
            types.setdefault(c, []).append((sp.rs.index, sp.rs.column_type(c)))
    for c, ts in types.items():
        kinds = {t for _, t in ts}
        if len(kinds) == 1:
            t = ts[0][1]
        elif all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in kinds):
            t = pa.float64()
        elif all(pa.types.is_string(t) or pa.types.is_large_string(t) for t in kinds):
            t = pa.string()
        else:
            raise CurationError(
                f"{mf.source_where(ts[1][0])}: column `{c}` is {ts[1][1]} here but {ts[0][1]} in "
                f"source {mf.manifest.sources[ts[0][0]].name}; output shards need one type per column"
            )
        fields.append(pa.field(c, t))
    return pa.schema(fields)


def make_plan(
    mf: ManifestFile,
    count: str | None = None,
    progress: bool = False,
    counter: TokenCounter | None = None,
    on_plan_start=None,
) -> Plan:
    """The plan for a manifest: one streaming scan of every source.

    on_plan_start(plan skeleton) -> on_batch(source plan, table, global rows, keep mask) or None: lets the build
    see every batch while the scan holds it (the single-read build spills first copies there)."""
    m = mf.manifest
    if count:
        m.tokenizer.count = count
    resolved = [resolve_source(mf, i) for i in range(len(m.sources))]
    schema = _schema(mf, [SourcePlan(rs) for rs in resolved])  # type clashes fail before the long pass
    try:
        counter = counter or TokenCounter.cached(m.tokenizer.name)
    except CurationError as e:
        raise CurationError(f"{mf.where('tokenizer', 'name')}: {e}") from None
    sps = [SourcePlan(rs) for rs in resolved]
    buckets, single_read = _bucket_plan(mf, resolved)
    plan = Plan(
        mf, sps, {**counter.describe(), "name": m.tokenizer.name}, m.tokenizer.count, 0.0, buckets, schema, single_read
    )
    on_batch = on_plan_start(plan) if on_plan_start else None
    total_rows = sum(s.rows or 0 for rs in resolved for s in rs.shards)
    from curation.mix.progress import bar

    with bar(progress, f"planning ({m.tokenizer.count} token counts)", total_rows, unit="docs") as adv:
        for sp in sps:
            sample = _scan(sp, counter, mf, adv, on_batch)
            if m.tokenizer.count == "estimate":
                arr = pa.concat_arrays(sample) if sample else pa.array([], pa.large_string())
                toks = int(counter.count(arr).sum()) if len(arr) else 0
                sb = int(pc.sum(pc.binary_length(arr)).as_py() or 0) if len(arr) else 0
                sp.sample_docs = len(arr)
                sp.bytes_per_token = sb / toks if toks else 4.0
                sp.tokens_available /= sp.bytes_per_token
                sp.tokens_selected /= sp.bytes_per_token
                sp.hist_tokens = sp.hist_tokens / sp.bytes_per_token
                if "tokens" in sp.inject_rows:
                    sp.inject_rows["tokens"] = sp.inject_rows["tokens"] / sp.bytes_per_token
    _budgets(mf, sps)
    for sp in sps:
        if sp.rs.spec.inject is None:
            _realise(mf, sp)
    rest = sum(sp.expected_tokens for sp in sps if sp.rs.spec.inject is None)
    for sp in sps:
        if sp.rs.spec.inject is not None:
            _realise_inject(mf, sp, rest)
    realised = sum(sp.expected_tokens for sp in sps) or 1.0
    for sp in sps:
        sp.share = sp.expected_tokens / realised
        if sp.rs.spec.inject is not None:
            sp.rs.notes.append(
                f"injected: {sp.expected_docs:,} documents ({sp.unique_docs:,} distinct), token rate "
                f"{sp.share:.3g}, at seeded random positions of the shuffled mix"
            )
    plan.total_tokens = sum(sp.expected_tokens for sp in sps)
    plan.schema = _schema(mf, sps)
    return plan
