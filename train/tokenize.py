"""`curate train tokenize`: Parquet mix shards -> one Megatron indexed dataset (.bin/.idx) per source + blend.json.

Sources: the datasets of the mix's hand-off file (``MIX_DIR/blend.json`` from `curate mix build`: names, weights,
shard lists; a "mixed" layout is one dataset); without one, the values of the shards' ``source`` column, weighted
by token count (i.e. as mixed); ``--weights`` overrides either.

Each input shard is tokenised by one worker process into per-source part datasets under ``OUT/parts/`` and marked
done (``OUT/parts/<shard>.done.json``) only after its parts are complete, so a killed run resumes shard by shard.
When every shard is done the parts are concatenated per source with Megatron's ``IndexedDatasetBuilder.add_index``
into ``OUT/<source>.bin/.idx`` and ``OUT/blend.json`` records the prefixes and weights the trainer reads.
The format is Megatron-core's own (``megatron.core.datasets.indexed_dataset``); an EOD token ends every document.

``max_tokens``: only what a run will read is tokenised. Each dataset gets ``ceil(max_tokens x weight)`` tokens (EOD
included): its shards are read in order and the last one stops after the document that reaches the budget. A mix's
shards are globally shuffled, so this is a uniform sample of the mix; shards are then done one at a time, in order.

What was tokenised is recorded, so a result can say what its run read: ``OUT/read.parquet`` has a row per document
(``id``, ``source``: the mix's own source column, ``tokens``, EOD included) in stream order, and ``blend.json``'s
``read`` the documents and tokens per mix source.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from curation.core.errors import CurationError
from curation.core.outputs import claim, file_identity

MANIFEST = "tokenize.json"
BLEND = "blend.json"
READ = "read.parquet"


@dataclass
class TokenizeResult:
    output: Path
    blend: dict
    documents: int = 0
    tokens: int = 0
    shards_done: int = 0
    shards_skipped: int = 0
    seconds: float = 0.0
    per_source: dict = field(default_factory=dict)
    changed: list = field(default_factory=list)  # shards redone because they changed since they were tokenised
    regenerated: list = field(default_factory=list)  # shards redone because their part files were gone

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("_") or "mix"


def find_shards(mix_dir: Path) -> list[Path]:
    if not mix_dir.is_dir():
        raise CurationError(
            f"{mix_dir}: not a directory; pass the output directory of `curate mix build` "
            "(or any directory of Parquet shards)"
        )
    shards = sorted(
        p for p in mix_dir.rglob("*.parquet") if not any(part.startswith(".") for part in p.relative_to(mix_dir).parts)
    )
    if not shards:
        raise CurationError(f"{mix_dir}: no *.parquet shards found; pass the output directory of `curate mix build`")
    return shards


def mix_datasets(mix_dir: Path) -> tuple[list[dict] | None, str | None]:
    """The datasets of the mix's trainer hand-off (``blend.json`` from `curate mix build`, docs/mix.md "Hand-off"):
    [{"name", "weight", "shards": [paths relative to the mix]}]; (None, None) when the directory has none."""
    path = mix_dir / "blend.json"
    if not path.exists():
        return None, None
    try:
        raw = json.loads(path.read_text())
        datasets = [
            {"name": str(d["name"]), "weight": float(d["weight"]), "shards": [str(x) for x in d.get("shards", [])]}
            for d in raw["datasets"]
        ]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise CurationError(
            f"{path}: not a mix hand-off file ({type(e).__name__}: {e}); rebuild the mix with `curate mix build`"
        ) from None
    return datasets, str(path)


def _shard_key(mix_dir: Path, shard: Path) -> str:
    return _safe(str(shard.relative_to(mix_dir).with_suffix("")).replace(os.sep, "__"))


def _default_source(mix_dir: Path, shard: Path) -> str:
    rel = shard.relative_to(mix_dir)
    return _safe(rel.parts[0]) if len(rel.parts) > 1 else "mix"


def token_dtype(vocab_size: int):
    return np.uint16 if vocab_size < 65500 else np.int32


# ---- worker ---------------------------------------------------------------------------------------------------

_TOK = None


def _worker_init(tokenizer_dir: str, rust_threads: bool = False):
    """Loads the tokenizer once per worker: the Rust `tokenizers` object straight from tokenizer.json when there is
    one (what transformers' fast tokenizers wrap; loads in milliseconds), else transformers' AutoTokenizer."""
    global _TOK
    if not rust_threads:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    path = Path(tokenizer_dir) / "tokenizer.json"
    if path.exists():
        from tokenizers import Tokenizer

        rust = Tokenizer.from_file(str(path))
        _TOK = lambda texts: [e.ids for e in rust.encode_batch_fast(texts, add_special_tokens=False)]  # noqa: E731
    else:
        from curation.lm.loading import load_tokenizer

        hf = load_tokenizer(tokenizer_dir)
        _TOK = lambda texts: hf(texts, add_special_tokens=False)["input_ids"]  # noqa: E731


def _tokenize_shard(job: dict) -> dict:
    """Tokenises one shard into parts/<key>.<source>.{bin,idx}; writes the done marker last."""
    import pyarrow.parquet as pq
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    shard, parts, key = Path(job["shard"]), Path(job["parts"]), job["key"]
    text_key, batch = job["text_key"], job["batch_size"]
    try:
        pf = pq.ParquetFile(shard)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise CurationError(
            f"{shard}: not a readable Parquet file ({type(e).__name__}); regenerate the mix shard"
        ) from None
    names = pf.schema_arrow.names
    if text_key not in names:
        raise CurationError(f"{shard}: no `{text_key}` column (has {names}); pass --text-key or rebuild the mix")
    has_source = "source" in names and job.get("by_column", True)
    origin_col, id_col = "source" in names, "id" in names  # what was read: the mix's own source column and ids
    eod, dtype = job["eod"], np.dtype(job["dtype"]).type
    builders: dict[str, IndexedDatasetBuilder] = {}
    counts: dict[str, dict] = {}
    read: dict[str, list] = {"id": [], "source": [], "tokens": []}
    cap = job.get("max_tokens")
    total = 0
    cols = [text_key] + (["source"] if origin_col else []) + (["id"] if id_col and text_key != "id" else [])
    for rb in pf.iter_batches(batch_size=batch, columns=cols):
        if cap is not None and total >= cap:
            break
        texts = rb.column(text_key).to_pylist()
        origins = rb.column("source").to_pylist() if origin_col else [None] * len(texts)
        sources = origins if has_source else [job["default_source"]] * len(texts)
        doc_ids = rb.column("id").to_pylist() if id_col else [None] * len(texts)
        keep = [i for i, t in enumerate(texts) if t]
        if not keep:
            continue
        ids = _TOK([texts[i] for i in keep])
        for i, doc in zip(keep, ids, strict=False):
            src = _safe(sources[i] if sources[i] is not None else job["default_source"])
            b = builders.get(src)
            if b is None:
                b = builders[src] = IndexedDatasetBuilder(str(parts / f"{key}.{src}.bin.tmp"), dtype=dtype)
                counts[src] = {"documents": 0, "tokens": 0}
            doc.append(eod)
            b.add_document(doc, [len(doc)])
            counts[src]["documents"] += 1
            counts[src]["tokens"] += len(doc)
            read["id"].append(None if doc_ids[i] is None else str(doc_ids[i]))
            read["source"].append(origins[i] if origins[i] is not None else job["default_source"])
            read["tokens"].append(len(doc))
            total += len(doc)
            if cap is not None and total >= cap:
                break
    for src, b in builders.items():
        tmp = parts / f"{key}.{src}"
        b.finalize(str(tmp) + ".idx.tmp")
        os.replace(str(tmp) + ".bin.tmp", str(tmp) + ".bin")
        os.replace(str(tmp) + ".idx.tmp", str(tmp) + ".idx")
    _write_read(read, parts / f"{key}.{READ}")
    marker = parts / f"{key}.done.json"
    marker.with_suffix(".tmp").write_text(json.dumps({"shard": str(shard), "input": job["input"], "sources": counts}))
    os.replace(marker.with_suffix(".tmp"), marker)
    return {"key": key, "sources": counts}


# ---- driver ---------------------------------------------------------------------------------------------------


def _write_read(read: dict, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "id": pa.array(read["id"], pa.string()),
            "source": pa.array(read["source"], pa.string()),
            "tokens": pa.array(read["tokens"], pa.int64()),
        }
    )
    pq.write_table(table, str(path) + ".tmp")
    os.replace(str(path) + ".tmp", path)


def _merge_read(output: Path, parts: Path, shards: list[Path], mix_dir: Path, own) -> dict | None:
    """OUT/read.parquet (the parts' read records in stream order) and the documents and tokens per mix source; None
    when a part was tokenised before read records existed (its shard is not redone for this)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [parts / f"{_shard_key(mix_dir, sh)}.{READ}" for sh in shards]
    if not all(f.is_file() for f in files):
        return None
    table = pa.concat_tables([pq.read_table(f) for f in files]) if files else None
    if table is None:
        return None
    own(READ, READ + ".tmp")
    pq.write_table(table, str(output / READ) + ".tmp")
    os.replace(str(output / READ) + ".tmp", output / READ)
    per: dict[str, dict] = {}
    for src, n in zip(table.column("source").to_pylist(), table.column("tokens").to_pylist(), strict=True):
        d = per.setdefault(str(src), {"documents": 0, "tokens": 0})
        d["documents"] += 1
        d["tokens"] += int(n)
    return {"file": READ, "sources": dict(sorted(per.items()))}


def _legacy_tokens(output: Path) -> dict | None:
    """A tokenize output written before ownership records (it has tokenize.json): adopted, so it resumes."""
    if not (output / MANIFEST).is_file():
        return None
    blend = output / BLEND
    names = json.loads(blend.read_text()).get("prefixes", []) if blend.is_file() else []
    return {"files": [MANIFEST, BLEND, *[f"{n}{e}" for n in names for e in (".bin", ".idx")]], "trees": ["parts"]}


def _part_state(marker: dict, ident: dict, parts: Path, key: str) -> str:
    """done: the marker was written from this very shard and its part files are there; changed: the shard is not
    the one tokenised; missing: a part file is gone."""
    if marker.get("input") != ident:
        return "changed"
    for src in marker.get("sources", {}):
        if not all((parts / f"{key}.{src}{e}").is_file() for e in (".bin", ".idx")):
            return "missing"
    return "done"


def _fingerprint(tokenizer_dir: Path, text_key: str) -> dict:
    h = hashlib.sha256()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        p = tokenizer_dir / name
        if p.exists():
            h.update(p.read_bytes())
    return {"tokenizer": str(tokenizer_dir), "tokenizer_sha256": h.hexdigest()[:16], "text_key": text_key}


def resolve_tokenizer(spec: str):
    """(tokenizer directory, tokenizer) for a model spec; GGUF aliases are converted to a cached HF dir once."""
    from curation.lm.loading import hf_directory, load_tokenizer

    tdir = hf_directory(spec)
    tok = load_tokenizer(tdir)
    if tok.eos_token_id is None:
        raise CurationError(
            f"{tdir}: tokenizer has no EOS token to use as end-of-document; pass a tokenizer that defines eos_token"
        )
    return tdir, tok


def tokenize_mix(
    mix_dir: str | Path,
    tokenizer: str,
    output: str | Path,
    *,
    workers: int = 2,
    text_key: str = "text",
    weights: dict[str, float] | None = None,
    batch_size: int = 512,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    max_tokens: int | None = None,
) -> TokenizeResult:
    mix_dir, output = Path(mix_dir), Path(output)
    t0 = time.perf_counter()
    if max_tokens is not None and max_tokens <= 0:
        raise CurationError(f"max_tokens {max_tokens}: pass a positive number of tokens (or none for the whole mix)")
    shards = find_shards(mix_dir)
    tdir, tok = resolve_tokenizer(tokenizer)
    fp = {**_fingerprint(Path(tdir), text_key), "max_tokens": max_tokens}
    owned = claim(
        output, "train tokenize", inputs=[mix_dir], overwrite=overwrite, legacy=_legacy_tokens, lock=True
    )  # one writer at a time
    try:
        output = owned.root
        parts = output / "parts"
        manifest = output / MANIFEST
        if owned.previous and manifest.exists():
            old = json.loads(manifest.read_text())
            if old.get("fingerprint") != fp or old.get("mix_dir") != str(mix_dir.resolve()):
                if not overwrite:
                    raise CurationError(
                        f"{output}: holds tokens from another mix or tokenizer ({manifest}); pass --overwrite "
                        "(removes only what `curate train tokenize` wrote) or a new --output"
                    )
                owned.clear()
        owned.own(MANIFEST, BLEND, BLEND + ".tmp")
        owned.tree("parts")
        manifest.write_text(json.dumps({"fingerprint": fp, "mix_dir": str(mix_dir.resolve())}, indent=1))
        vocab = len(tok)
        dtype = np.dtype(token_dtype(vocab)).name
        datasets, handoff = mix_datasets(mix_dir)
        weights_from = "--weights" if weights else (handoff if datasets else "token counts")
        shard_dataset: dict[str, str] = {}
        if datasets:
            for d in datasets:
                for rel in d["shards"]:
                    shard_dataset[str((mix_dir / rel).resolve())] = _safe(d["name"])
            listed = [sh for sh in shards if str(sh.resolve()) in shard_dataset]
            if not listed:
                raise CurationError(f"{handoff}: lists none of the Parquet shards under {mix_dir}; rebuild the mix")
            shards = listed
            if weights is None:
                weights = {d["name"]: d["weight"] for d in datasets if d["weight"] > 0 and d["shards"]}
        jobs, done, changed, regenerated = [], {}, [], []
        for shard in shards:
            key = _shard_key(mix_dir, shard)
            marker = parts / f"{key}.done.json"
            ident = file_identity(shard)
            if marker.exists():
                prev = json.loads(marker.read_text())
                state = _part_state(prev, ident, parts, key)
                if state == "done":
                    done[key] = prev
                    continue
                (changed if state == "changed" else regenerated).append(str(shard.relative_to(mix_dir)))
                marker.unlink()
            jobs.append(
                {
                    "shard": str(shard),
                    "input": ident,
                    "parts": str(parts),
                    "key": key,
                    "text_key": text_key,
                    "batch_size": batch_size,
                    "eod": tok.eos_token_id,
                    "dtype": dtype,
                    "default_source": shard_dataset.get(str(shard.resolve()), _default_source(mix_dir, shard)),
                    "by_column": not datasets,
                }
            )
        skipped = len(done)
        if progress:
            progress(len(done), len(shards))
        if max_tokens is not None:
            shards = _tokenize_limited(shards, jobs, done, mix_dir, shard_dataset, weights, max_tokens, tdir, progress)
            jobs = []
        if jobs:
            workers = max(1, min(workers, len(jobs)))
            if workers == 1:
                _worker_init(str(tdir), rust_threads=True)
                results = map(_tokenize_shard, jobs)
                for r in results:
                    done[r["key"]] = r
                    if progress:
                        progress(len(done), len(shards))
            else:
                with mp.get_context("spawn").Pool(workers, initializer=_worker_init, initargs=(str(tdir),)) as pool:
                    for r in pool.imap_unordered(_tokenize_shard, jobs):
                        done[r["key"]] = r
                        if progress:
                            progress(len(done), len(shards))
        blend = _merge(
            output, parts, shards, mix_dir, done, dtype, weights, tok, tdir, weights_from=weights_from, own=owned.own
        )
        # the spec as given beside the directory it resolved to here: tokens trained on another machine resolve it there
        blend["tokenizer_spec"] = str(tokenizer)
        if max_tokens is not None:
            blend["max_tokens"] = max_tokens
        (output / (BLEND + ".tmp")).write_text(json.dumps(blend, indent=1))
        os.replace(output / (BLEND + ".tmp"), output / BLEND)
        res = TokenizeResult(
            output,
            blend,
            shards_done=len(shards) - skipped,
            shards_skipped=skipped,
            seconds=time.perf_counter() - t0,
            changed=changed,
            regenerated=regenerated,
        )
        for s in blend["sources"]:
            res.documents += s["documents"]
            res.tokens += s["tokens"]
            res.per_source[s["name"]] = s
        return res
    finally:
        owned.release()


def _tokenize_limited(
    shards: list[Path],
    jobs: list[dict],
    done: dict,
    mix_dir: Path,
    shard_dataset: dict,
    weights: dict[str, float] | None,
    max_tokens: int,
    tdir,
    progress,
) -> list[Path]:
    """Shards in order, per dataset, until its share of max_tokens is reached; returns the shards that were used
    (the rest are never read). Sequential, so the cut is the same whatever the workers and after any kill."""
    import math

    pending = {j["key"]: j for j in jobs}
    name = lambda sh: shard_dataset.get(str(sh.resolve()), _default_source(mix_dir, sh))  # noqa: E731
    names = sorted({name(sh) for sh in shards})
    w = {_safe(k): float(v) for k, v in (weights or {}).items()}
    total_w = sum(w.get(n, 0.0) for n in names)
    budget = {n: math.ceil(max_tokens * (w.get(n, 0.0) / total_w if total_w else 1.0 / len(names))) for n in names}
    used: list[Path] = []
    loaded = False
    for sh in shards:
        n, key = name(sh), _shard_key(mix_dir, sh)
        if budget[n] <= 0:
            continue
        if key in pending:
            if not loaded:
                _worker_init(str(tdir), rust_threads=True)
                loaded = True
            done[key] = _tokenize_shard({**pending[key], "max_tokens": budget[n]})
            if progress:
                progress(len(done), len(shards))
        used.append(sh)
        budget[n] -= sum(c["tokens"] for c in done[key]["sources"].values())
    return used


def _merge(
    output: Path,
    parts: Path,
    shards: list[Path],
    mix_dir: Path,
    done: dict,
    dtype: str,
    weights: dict[str, float] | None,
    tok,
    tdir,
    weights_from: str,
    own=lambda *a: None,
) -> dict:
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    per_source: dict[str, dict] = {}
    for shard in shards:
        key = _shard_key(mix_dir, shard)
        for src, c in done[key]["sources"].items():
            s = per_source.setdefault(src, {"documents": 0, "tokens": 0, "parts": []})
            s["documents"] += c["documents"]
            s["tokens"] += c["tokens"]
            s["parts"].append(str(parts / f"{key}.{src}"))
    if not per_source:
        raise CurationError(f"{mix_dir}: every shard is empty (no non-empty `text`); rebuild the mix")
    if weights:
        missing = sorted(set(per_source) - {_safe(k) for k in weights})
        if missing:
            raise CurationError(
                f"{weights_from}: no weight for source(s) {missing}; give every source in the mix a weight"
            )
        w = {_safe(k): float(v) for k, v in weights.items() if _safe(k) in per_source}
    else:
        w = {k: float(v["tokens"]) for k, v in per_source.items()}
    total = sum(w.values())
    if total <= 0:
        raise CurationError(f"{weights_from}: weights sum to {total}; give positive weights")
    sources = []
    for src in sorted(per_source):
        prefix = output / src
        own(*(f"{src}{ext}" for ext in (".bin", ".idx", ".bin.tmp", ".idx.tmp")))
        b = IndexedDatasetBuilder(str(prefix) + ".bin.tmp", dtype=np.dtype(dtype).type)
        for part in per_source[src]["parts"]:
            b.add_index(part)
        b.finalize(str(prefix) + ".idx.tmp")
        os.replace(str(prefix) + ".bin.tmp", str(prefix) + ".bin")
        os.replace(str(prefix) + ".idx.tmp", str(prefix) + ".idx")
        sources.append(
            {
                "name": src,
                "prefix": src,
                "weight": w[src] / total,
                "documents": per_source[src]["documents"],
                "tokens": per_source[src]["tokens"],
            }
        )
    blend = {
        "format": "megatron-indexed-dataset",
        "dtype": dtype,
        "eod": tok.eos_token_id,
        "vocab_size": len(tok),
        "tokenizer": str(tdir),
        "weights_from": weights_from,
        "mix_dir": str(mix_dir.resolve()),
        "prefixes": [s["prefix"] for s in sources],
        "weights": [s["weight"] for s in sources],
        "sources": sources,
    }
    read = _merge_read(output, parts, shards, mix_dir, own)
    if read is not None:
        blend["read"] = read
    (output / (BLEND + ".tmp")).write_text(json.dumps(blend, indent=1))
    os.replace(output / (BLEND + ".tmp"), output / BLEND)
    return blend


def read_blend(path: str | Path) -> tuple[list[str], list[float], dict]:
    """(absolute prefixes, weights, raw) from a blend.json written by tokenize_mix (prefixes are relative to it)."""
    path = Path(path)
    if path.is_dir():
        path = path / BLEND
    try:
        raw = json.loads(path.read_text())
        prefixes = [str((path.parent / p).resolve()) if not os.path.isabs(p) else p for p in raw["prefixes"]]
        weights = [float(w) for w in raw["weights"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise CurationError(
            f"{path}: not a blend written by `curate train tokenize` ({type(e).__name__}: {e}); run it first"
        ) from None
    for p in prefixes:
        if not (Path(p + ".bin").exists() and Path(p + ".idx").exists()):
            raise CurationError(f"{path}: dataset {p}.bin/.idx is missing; re-run `curate train tokenize`")
    return prefixes, weights, raw
