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
        shard_path = os.path.join(root, rel)
        attr_path = os.path.join(attr_root, attribute_path(rel)) if attr_root else None
        if attr_path and not os.path.exists(attr_path):
            raise CurationError(
                f"{where('attributes')}: {attr_path} is missing (attributes of {shard_path}); "
                f"run `curate classify {path} --output {attr_root}`"
            )
        if attr_path:  # computed from this very shard (size and sha256 recorded by classify), or refused
            check_attributes_match(shard_path, rel, attr_path, root, attr_root, where("attributes"))
        rows = None
        for file in (shard_path, attr_path):
            if not file or not file.endswith(".parquet"):
                continue
            try:
                num_rows = pq.ParquetFile(file).metadata.num_rows
            except (pa.ArrowInvalid, OSError) as e:
                raise CurationError(f"{file}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
            if file == shard_path:
                rows = num_rows
            elif rows is not None and num_rows != rows:
                raise CurationError(
                    f"{attr_path}: {num_rows} rows but its shard {shard_path} has {rows}; the attributes are out of "
                    "date, rerun `curate classify`"
                )
        if rows is None:
            try:
                rows = pl.scan_ndjson(shard_path).select(pl.len()).collect().item()
            except (pl.exceptions.PolarsError, OSError) as e:
                raise CurationError(f"{shard_path}: not readable JSONL ({str(e).splitlines()[0]})") from None
        shards.append(Shard(shard_path, rel, attr_path, rows))
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
            expr = pl.sql_expr(text)
        except Exception as ex:  # polars raises several SQL error types
            raise CurationError(
                f"{where(key)}: cannot parse `{text}` ({str(ex).splitlines()[0]}); write a SQL condition "
                f"such as `ai_discourse < 0.5 AND stance_misaligned > 0.6`"
            ) from None
        for column in check_cols(expr, key, text):
            if column not in used:
                used.append(column)
        exprs.append(expr)
    for column in src.columns:
        if column not in available:
            raise CurationError(
                f"{where('columns')}: column `{column}` is in neither the shards nor the attributes "
                f"(available: {', '.join(sorted(available))})"
            )
        if column not in used:
            used.append(column)
    used = [column for column in used if column not in (src.id_key, src.text_key, "id", "text", "source")]
    row_filter = None
    for expr in exprs:
        row_filter = expr if row_filter is None else (row_filter & expr)
    # `curate synth reflect` output (it has `has_reflection`) already holds each reflection in its text, between the
    # persona markers: that is the one place reflections are inserted, so such text is kept as it is, and its
    # `has_reflection` flag is carried into the output (the lock records the share of documents with one)
    reflected = "has_reflection" in shard_cols
    has_refl = "reflection" in shard_cols and not reflected
    if reflected and "has_reflection" not in used:
        used.append("has_reflection")
    rs = ResolvedSource(i, src, shards, shard_cols, attr_cols, used, row_filter, has_refl)
    if src.transform == "reflections":
        if not (has_refl or reflected):
            raise CurationError(
                f"{where('transform')}: `transform: reflections` but {shards[0].path} has no `reflection` column, so "
                "there is nothing to append; point `path` at `curate synth reflect` output (or drop the transform)"
            )
        rs.notes.append(
            "reflections appended after the marker"
            if has_refl
            else "reflections already in the text (`curate synth reflect` output); `has_reflection` carried"
        )
    elif reflected:
        rs.notes.append("`curate synth reflect` output: reflections in the text; `has_reflection` carried")
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
            parquet_file = pq.ParquetFile(shard.path)
            for batch in parquet_file.iter_batches(batch_size=batch_rows, columns=columns, use_threads=True):
                yield pa.Table.from_batches([batch])
        else:
            table = pl.read_ndjson(shard.path).select(columns).to_arrow()
            for start in range(0, table.num_rows, batch_rows):
                yield table.slice(start, batch_rows)
    except (pa.ArrowInvalid, OSError, pl.exceptions.PolarsError) as e:
        raise CurationError(f"{shard.path}: cannot read ({str(e).splitlines()[0]})") from None


def check_ids(attrs_path, shard_path: str, offset: int, attr_rows: pa.Table, ids: pa.Array) -> None:
    """The attribute rows `attr_rows` are those of the shard rows `ids` (from row `offset`), or an error naming the
    first row where they part: rows added at the end, or the first id that differs."""
    if attr_rows.num_rows < len(ids):
        raise CurationError(
            f"{attrs_path}: ends at row {offset + attr_rows.num_rows} but {shard_path} has more rows (added after "
            "`curate classify` wrote the attributes); rerun `curate classify`"
        )
    same = pc.equal(attr_rows.column("id"), ids)
    if not pc.all(same).as_py():
        row = int(pc.index(same, False).as_py())
        raise CurationError(
            f"{attrs_path}: row {offset + row} has id {attr_rows.column('id')[row].as_py()!r} but {shard_path} has "
            f"{ids[row].as_py()!r} there; the attributes are out of date, rerun `curate classify`"
        )


def iter_batches(rs: ResolvedSource, batch_rows: int = BATCH_ROWS) -> Iterator[tuple[int, int, pa.Table, np.ndarray]]:
    """(shard index, first row number within the source, table, keep mask) for every batch of the source.

    table columns: id (string), text (large_string, transformed), then `rs.used` (attribute values where both have
    them).
    """
    src = rs.spec
    shard_side = [src.id_key, src.text_key] + [
        column for column in rs.used if column not in rs.attr_columns and column in rs.shard_columns
    ]
    if rs.has_reflection and src.transform == "reflections":
        shard_side.append("reflection")
    shard_side = list(dict.fromkeys(shard_side))
    attr_side = ["id"] + [column for column in rs.used if column in rs.attr_columns]
    filter_side = rs.filter_expr.meta.root_names() if rs.filter_expr is not None else []
    row0 = 0
    for shard_index, shard in enumerate(rs.shards):
        attrs = None
        if shard.attributes:
            try:
                attrs = pq.read_table(shard.attributes, columns=attr_side)  # a few columns of one shard
            except (pa.ArrowInvalid, OSError, KeyError) as e:
                raise CurationError(
                    f"{shard.attributes}: cannot read attribute columns {attr_side} ({str(e).splitlines()[0]})"
                ) from None
        offset = 0
        for batch in _shard_batches(rs, shard, shard_side, batch_rows):
            num_rows = batch.num_rows
            ids = pc.cast(batch.column(src.id_key), pa.string())
            text = pc.cast(batch.column(src.text_key), pa.large_string()).combine_chunks()
            text = _transform_text(rs, text, batch)
            cols = {"id": ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids, "text": text}
            attr_rows = None
            if attrs is not None:
                attr_rows = attrs.slice(offset, num_rows)
                check_ids(shard.attributes, shard.path, offset, attr_rows, cols["id"])
            for column in rs.used:
                from_attrs = attr_rows is not None and column in rs.attr_columns
                col = attr_rows.column(column) if from_attrs else batch.column(column)
                cols[column] = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
            table = pa.table(cols)
            keep = pc.is_valid(text).to_numpy(zero_copy_only=False)
            if rs.filter_expr is not None:
                filter_cols = {column: cols[column] for column in filter_side}
                mask = (
                    pl.from_arrow(pa.table(filter_cols)).select(rs.filter_expr.fill_null(False).alias("m")).to_series()
                )
                keep &= mask.to_numpy()
            yield shard_index, row0, table, keep
            offset += num_rows
            row0 += num_rows
        if attrs is not None and offset != attrs.num_rows:
            raise CurationError(
                f"{shard.attributes}: {attrs.num_rows} rows but {shard.path} has {offset}; rerun `curate classify`"
            )
