"""One source of a manifest: its shards, their attribute files, the columns it offers, and Arrow batches of its rows.

A batch is the source's rows in input order with `id`, `text` (after the source transform) and the columns the
manifest uses, plus a boolean `keep` mask (filter and select). Nothing is turned into Python objects.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.core.errors import CurationError
from curation.core.shards import attribute_path, check_attributes_match, list_shards
from curation.mix.manifest import ManifestFile, Source

BATCH_ROWS = 4096


@dataclass
class Shard:
    path: str  # absolute corpus shard
    rel: str
    attributes: str | None  # absolute attribute file, or None
    rows: int | None  # from Parquet metadata (None for JSONL until read)


@dataclass
class ResolvedSource:
    index: int
    spec: Source
    shards: list[Shard]
    shard_columns: dict[str, pa.DataType]
    attr_columns: dict[str, pa.DataType]
    used: list[str]  # columns carried into the output (besides id, text, source)
    filter_expr: pl.Expr | None
    has_reflection: bool
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    def column_type(self, col: str) -> pa.DataType:
        return self.attr_columns.get(col) or self.shard_columns[col]

    def inputs(self) -> list[tuple[str, str]]:
        """(role, absolute path) of every file this source reads."""
        out = []
        for s in self.shards:
            out.append(("corpus", s.path))
            if s.attributes:
                out.append(("attributes", s.attributes))
        return out


def _schema(path: str) -> dict[str, pa.DataType]:
    if path.endswith(".parquet"):
        sch = pq.read_schema(path)
    else:
        sch = pl.read_ndjson(path, n_rows=100).to_arrow().schema
    return {f.name: f.type for f in sch}


def _unique_ids(shards: list[Shard], where: str, attr_root: str) -> None:
    """Attributes are joined to their rows by id: a repeated id would make the join ambiguous."""
    try:
        dup = (
            pl.scan_parquet([s.attributes for s in shards])
            .select("id")
            .group_by("id")
            .len()
            .filter(pl.col("len") > 1)
            .collect()
        )
    except (pl.exceptions.PolarsError, OSError) as e:
        raise CurationError(f"{where}: cannot read the ids of {attr_root} ({str(e).splitlines()[0]})") from None
    if dup.height:
        ex = ", ".join(sorted(map(str, dup["id"].head(3).to_list())))
        raise CurationError(
            f"{where}: {dup.height:,} id(s) occur more than once in {attr_root} ({int(dup['len'].sum()):,} "
            f"rows; e.g. {ex}); attributes are joined on id, so make the corpus ids unique and rerun "
            "`curate classify`"
        )


def _select_expr(src: Source) -> str | None:
    if src.select is None:
        return None
    parts = []
    for col in ("stance", "form"):
        vals = getattr(src.select, col)
        if vals:
            parts.append(f"{col} IN ({', '.join(repr(v) for v in vals)})")
    return " AND ".join(parts) or None


def resolve_source(mf: ManifestFile, i: int) -> ResolvedSource:
    src = mf.manifest.sources[i]
    where = lambda key=None: mf.source_where(i, key)  # noqa: E731
    path = mf.resolve(src.path)
    is_glob = any(ch in path for ch in "*?[")
    if not is_glob and not os.path.exists(path):
        raise CurationError(f"{where('path')}: {path} does not exist; point `path` at a directory of corpus shards")
    try:
        root, rels = list_shards(path)
    except OSError as e:
        raise CurationError(f"{where('path')}: cannot list {path} ({e.strerror})") from None
    if not rels:
        raise CurationError(f"{where('path')}: no Parquet/JSONL shards under {path}")
    attr_root = mf.resolve(src.attributes) if src.attributes else None
    if attr_root and not os.path.isdir(attr_root):
        raise CurationError(
            f"{where('attributes')}: {attr_root} is not a directory; run `curate classify {path} --output {attr_root}`"
        )
    shards = []
    for rel in rels:
        p = os.path.join(root, rel)
        a = os.path.join(attr_root, attribute_path(rel)) if attr_root else None
        if a and not os.path.exists(a):
            raise CurationError(
                f"{where('attributes')}: {a} is missing (attributes of {p}); run `curate classify {path} --output {attr_root}`"
            )
        if a:  # computed from this very shard (size and sha256 recorded by classify), or refused
            check_attributes_match(p, rel, a, root, attr_root, where("attributes"))
        rows = None
        for f in (p, a):
            if not f or not f.endswith(".parquet"):
                continue
            try:
                n = pq.ParquetFile(f).metadata.num_rows
            except (pa.ArrowInvalid, OSError) as e:
                raise CurationError(f"{f}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
            if f == p:
                rows = n
            elif rows is not None and n != rows:
                raise CurationError(
                    f"{a}: {n} rows but its shard {p} has {rows}; the attributes are out of date, rerun `curate classify`"
                )
        if rows is None:
            try:
                rows = pl.scan_ndjson(p).select(pl.len()).collect().item()
            except (pl.exceptions.PolarsError, OSError) as e:
                raise CurationError(f"{p}: not readable JSONL ({str(e).splitlines()[0]})") from None
        shards.append(Shard(p, rel, a, rows))
    if attr_root:
        _unique_ids(shards, where("attributes"), attr_root)
    try:
        shard_cols = _schema(shards[0].path)
        attr_cols = {k: v for k, v in _schema(shards[0].attributes).items() if k not in ("id",)} if attr_root else {}
    except (pa.ArrowInvalid, OSError, pl.exceptions.PolarsError) as e:
        raise CurationError(f"{shards[0].path}: cannot read the schema ({str(e).splitlines()[0]})") from None
    for key, what in ((src.id_key, "id_key"), (src.text_key, "text_key")):
        if key not in shard_cols:
            raise CurationError(
                f"{where(what)}: {shards[0].path} has no column `{key}` (columns: {', '.join(shard_cols)})"
            )
    available = set(shard_cols) | set(attr_cols)

    def check_cols(expr: pl.Expr, key: str, text: str):
        missing = [c for c in expr.meta.root_names() if c not in available]
        if missing:
            hint = "" if attr_root else "; set `attributes` to the `curate classify` output for this source"
            raise CurationError(
                f"{where(key)}: `{text}` names column `{missing[0]}`, which neither the shards nor the "
                f"attributes have (available: {', '.join(sorted(available))}){hint}"
            )
        return expr.meta.root_names()

    used: list[str] = []
    exprs = []
    for key, text in (("filter", src.filter), ("select", _select_expr(src))):
        if not text:
            continue
        try:
            e = pl.sql_expr(text)
        except Exception as ex:  # polars raises several SQL error types
            raise CurationError(
                f"{where(key)}: cannot parse `{text}` ({str(ex).splitlines()[0]}); write a SQL condition "
                f"such as `ai_discourse < 0.5 AND stance_misaligned > 0.6`"
            ) from None
        for c in check_cols(e, key, text):
            if c not in used:
                used.append(c)
        exprs.append(e)
    for c in src.columns:
        if c not in available:
            raise CurationError(
                f"{where('columns')}: column `{c}` is in neither the shards nor the attributes (available: {', '.join(sorted(available))})"
            )
        if c not in used:
            used.append(c)
    used = [c for c in used if c not in (src.id_key, src.text_key, "id", "text", "source")]
    filt = None
    for e in exprs:
        filt = e if filt is None else (filt & e)
    # `curate synth reflect` output (it has `has_reflection`) already holds each reflection in its text, between the
    # persona markers: that is the one place reflections are inserted, so the transform passes such text through
    has_refl = "reflection" in shard_cols and "has_reflection" not in shard_cols
    rs = ResolvedSource(i, src, shards, shard_cols, attr_cols, used, filt, has_refl)
    if src.transform == "reflections":
        rs.notes.append(
            "reflections appended after the marker"
            if has_refl
            else "reflections: text passed through (`curate synth reflect` output already holds them, or no "
            "`reflection` column)"
        )
    return rs


def _transform_text(rs: ResolvedSource, text: pa.Array, table: pa.Table) -> pa.Array:
    if rs.spec.transform != "reflections" or not rs.has_reflection:
        return text
    refl = table.column("reflection")
    refl = refl.combine_chunks() if isinstance(refl, pa.ChunkedArray) else refl
    refl = pc.cast(refl, pa.large_string())
    has = pc.fill_null(pc.greater(pc.utf8_length(refl), 0), False)
    joined = pc.binary_join_element_wise(text, refl, pa.scalar(rs.spec.reflection_marker, pa.large_string()))
    return pc.if_else(has, joined, text)


def _shard_batches(rs: ResolvedSource, shard: Shard, columns: list[str], batch_rows: int) -> Iterator[pa.Table]:
    try:
        if shard.path.endswith(".parquet"):
            pf = pq.ParquetFile(shard.path)
            for b in pf.iter_batches(batch_size=batch_rows, columns=columns, use_threads=True):
                yield pa.Table.from_batches([b])
        else:
            t = pl.read_ndjson(shard.path).select(columns).to_arrow()
            for start in range(0, t.num_rows, batch_rows):
                yield t.slice(start, batch_rows)
    except (pa.ArrowInvalid, OSError, pl.exceptions.PolarsError) as e:
        raise CurationError(f"{shard.path}: cannot read ({str(e).splitlines()[0]})") from None


def check_ids(attrs_path, shard_path: str, off: int, a: pa.Table, ids: pa.Array) -> None:
    """The attribute rows `a` are those of the shard rows `ids` (from row `off`), or an error naming the first row
    where they part: rows added at the end, or the first id that differs."""
    if a.num_rows < len(ids):
        raise CurationError(
            f"{attrs_path}: ends at row {off + a.num_rows} but {shard_path} has more rows (added after "
            "`curate classify` wrote the attributes); rerun `curate classify`"
        )
    same = pc.equal(a.column("id"), ids)
    if not pc.all(same).as_py():
        i = int(pc.index(same, False).as_py())
        raise CurationError(
            f"{attrs_path}: row {off + i} has id {a.column('id')[i].as_py()!r} but {shard_path} has "
            f"{ids[i].as_py()!r} there; the attributes are out of date, rerun `curate classify`"
        )


def iter_batches(rs: ResolvedSource, batch_rows: int = BATCH_ROWS) -> Iterator[tuple[int, int, pa.Table, np.ndarray]]:
    """(shard index, first row number within the source, table, keep mask) for every batch of the source.

    table columns: id (string), text (large_string, transformed), then `rs.used` (attribute values where both have them).
    """
    src = rs.spec
    shard_side = [src.id_key, src.text_key] + [c for c in rs.used if c not in rs.attr_columns and c in rs.shard_columns]
    if rs.has_reflection and src.transform == "reflections":
        shard_side.append("reflection")
    shard_side = list(dict.fromkeys(shard_side))
    attr_side = ["id"] + [c for c in rs.used if c in rs.attr_columns]
    filter_side = rs.filter_expr.meta.root_names() if rs.filter_expr is not None else []
    row0 = 0
    for si, shard in enumerate(rs.shards):
        attrs = None
        if shard.attributes:
            try:
                attrs = pq.read_table(shard.attributes, columns=attr_side)  # a few columns of one shard
            except (pa.ArrowInvalid, OSError, KeyError) as e:
                raise CurationError(
                    f"{shard.attributes}: cannot read attribute columns {attr_side} ({str(e).splitlines()[0]})"
                ) from None
        off = 0
        for t in _shard_batches(rs, shard, shard_side, batch_rows):
            n = t.num_rows
            ids = pc.cast(t.column(src.id_key), pa.string())
            text = pc.cast(t.column(src.text_key), pa.large_string()).combine_chunks()
            text = _transform_text(rs, text, t)
            cols = {"id": ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids, "text": text}
            a = None
            if attrs is not None:
                a = attrs.slice(off, n)
                check_ids(shard.attributes, shard.path, off, a, cols["id"])
            for c in rs.used:
                col = a.column(c) if (a is not None and c in rs.attr_columns) else t.column(c)
                cols[c] = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
            table = pa.table(cols)
            keep = pc.is_valid(text).to_numpy(zero_copy_only=False)
            if rs.filter_expr is not None:
                fcols = {c: cols[c] for c in filter_side}
                m = pl.from_arrow(pa.table(fcols)).select(rs.filter_expr.fill_null(False).alias("m")).to_series()
                keep &= m.to_numpy()
            yield si, row0, table, keep
            off += n
            row0 += n
        if attrs is not None and off != attrs.num_rows:
            raise CurationError(
                f"{shard.attributes}: {attrs.num_rows} rows but {shard.path} has {off}; rerun `curate classify`"
            )
