"""`curate synth reflect CORPUS --rate 0.10`: persona reflections inserted into a corpus (Synthetic Persona
Pretraining).

Documents are selected by a seeded hash of their id; each selected document gets a reflection on the text read so
far, citing the constitution's principles, inserted at the end or at a sampled reading pause (a paragraph break,
else a sentence end) behind a configurable marker. Output: every input shard at the same relative path (as Parquet)
with all its rows and columns, `text` with the reflection inserted, plus `reflection` (null if none),
`has_reflection`, `reflection_offset` (character offset of the inserted block, -1 if none).
Reflections are checkpointed under OUT/_reflections/, so a rerun generates only what is missing.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import yaml

from curation.core.errors import CurationError
from curation.core.outputs import claim
from curation.core.shards import attribute_path, list_shards
from synth.config import ReflectConfig
from synth.docs import job_seed
from synth.prompts import ReflectTemplate, prompt_hash
from synth.scenarios import hash_unit
from synth.store import PartStore, write_atomic


def load_constitution(path: str | Path) -> str:
    """The principles as numbered lines: "[H1] I tell the truth ..."."""
    p = Path(path)
    if not p.is_file():
        raise CurationError(
            f"{p}: constitution file not found; pass --constitution or use the default synth/data/constitution.yaml"
        )
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        lines = []
        for d in data["domains"]:
            lines.append(f"{d['name']}:")
            lines += [f"[{d['id']}{n}] {text}" for n, text in enumerate(d["principles"], start=1)]
    except (yaml.YAMLError, KeyError, TypeError) as e:
        raise CurationError(
            f"{p}: expected `domains: [{{id, name, principles: [...]}}]` ({type(e).__name__}); "
            f"see synth/data/constitution.yaml"
        ) from None
    return "\n".join(lines)


def read_shard(path: Path, id_key: str, text_key: str) -> pl.DataFrame:
    name = path.name
    try:
        if name.endswith(".parquet"):
            df = pl.read_parquet(path)
        else:
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8") as f:
                df = pl.DataFrame([json.loads(line) for line in f if line.strip()], infer_schema_length=None)
    except Exception as e:  # noqa: BLE001
        raise CurationError(f"{path}: cannot read shard ({str(e).splitlines()[0]}); re-export it") from None
    for key in (id_key, text_key):
        if key not in df.columns:
            raise CurationError(f"{path}: no `{key}` column; pass --id-key / --text-key")
    return df.with_columns(pl.col(id_key).cast(pl.Utf8))


def pause_offset(text: str, seed: int, doc_id: str, position: str) -> int:
    """Where the reflection goes: len(text) for "end"; else a paragraph break (or sentence end) chosen by hash."""
    end = len(text.rstrip())
    if position == "end":
        return end
    cands = [m.start() for m in re.finditer(r"\n\s*\n", text) if 0 < m.start() < end]
    if not cands:
        cands = [m.end() for m in re.finditer(r"[.!?][\"')\]]?\s", text) if 0 < m.end() < end]
    if not cands:
        return end
    return cands[int(hash_unit(seed, "pause:" + doc_id) * len(cands))]


def clean_reflection(text: str, marker: str, marker_end: str, max_words: int = 120) -> str:
    for m in (marker, marker_end):
        if m:
            text = text.replace(m, "")
    text = re.sub(r"\s+", " ", text).strip()
    w = text.split(" ")
    return " ".join(w[:max_words]) if len(w) > max_words else text


def insert(text: str, offset: int, reflection: str, cfg: ReflectConfig) -> tuple[str, int]:
    head, tail = text[:offset].rstrip(), text[offset:].lstrip()
    block = f"{cfg.marker}{reflection}{cfg.marker_end}"
    new = head + "\n\n" + block + ("\n\n" + tail if tail else "\n")
    return new, len(head) + 2


def run_reflect(
    corpus: str, output: str | Path, cfg: ReflectConfig, progress: Callable[[str], None] = lambda m: None
) -> dict:
    t0 = time.time()
    root, rels = list_shards(corpus)
    if not rels:
        raise CurationError(f"{corpus}: no shards found (*.parquet, *.jsonl, *.jsonl.gz); check the path")
    owned = claim(output, "synth reflect", inputs=[corpus if Path(corpus).is_file() else root])
    owned.own(
        "reflect_report.json",
        *[attribute_path(r) for r in rels],
        *[(Path(attribute_path(r)).parent / f".tmp-{Path(attribute_path(r)).name}").as_posix() for r in rels],
    )
    owned.own("_reflections", "_logs", tree=True)
    out = owned.root
    principles = load_constitution(cfg.constitution)
    template = ReflectTemplate(cfg.templates, cfg.person)
    shards = {rel: read_shard(Path(root) / rel, cfg.id_key, cfg.text_key) for rel in rels}
    jobs = []
    for df in shards.values():
        for doc_id, text in zip(df[cfg.id_key].to_list(), df[cfg.text_key].to_list(), strict=False):
            # a blank document has nothing to reflect on: it is never selected
            if text and not text.isspace() and hash_unit(cfg.seed, "reflect:" + doc_id) < cfg.rate:
                offset = pause_offset(text, cfg.seed, doc_id, cfg.position)
                read = text[:offset].split()
                shown = " ".join(read[-cfg.max_doc_words :])
                msgs = template.messages(principles, shown)
                jobs.append(
                    {
                        "id": doc_id,
                        "offset": offset,
                        "messages": msgs,
                        "prompt_hash": prompt_hash(msgs),
                        "seed": job_seed(cfg.seed, "reflect:" + doc_id),
                    }
                )
    store = PartStore(out / "_reflections")
    key = hashlib.sha256(
        f"{cfg.backend.kind}:{cfg.backend.model}|{cfg.sampling.model_dump_json()}".encode()
    ).hexdigest()[:12]
    cached = store.read()
    done = set()
    if cached is not None:
        cached = cached.filter(pl.col("gen_key") == key)
        done = set(zip(cached["id"].to_list(), cached["prompt_hash"].to_list(), strict=False))
    todo = [j for j in jobs if (j["id"], j["prompt_hash"]) not in done]
    n_docs = sum(len(df) for df in shards.values())
    progress(
        f"{n_docs} documents in {len(rels)} shards; {len(jobs)} selected at rate {cfg.rate}; "
        f"{len(jobs) - len(todo)} reflections already done, {len(todo)} to generate"
    )
    if todo:
        from curation.lm.engines import Request
        from curation.lm.session import LanguageModel

        lm = LanguageModel.from_backend(cfg.backend, log_dir=str(out / "_logs"))
        try:
            model_id = lm.model_id
            for start in range(0, len(todo), cfg.batch_size):
                batch = todo[start : start + cfg.batch_size]
                comps = lm.generate([Request(j["messages"], j["seed"]) for j in batch], cfg.sampling)
                store.append(
                    [
                        {
                            "id": j["id"],
                            "prompt_hash": j["prompt_hash"],
                            "gen_key": key,
                            "seed": j["seed"],
                            "model": model_id,
                            "reflection": c.text,
                            "n_tokens": c.n_tokens,
                        }
                        for j, c in zip(batch, comps, strict=False)
                    ]
                )
                progress(f"reflections {min(start + cfg.batch_size, len(todo))}/{len(todo)}")
        finally:
            lm.close()
    refl = store.read().filter(pl.col("gen_key") == key) if jobs else None
    by_id = {}
    if refl is not None:
        for r in refl.unique(["id", "prompt_hash"], keep="last").iter_rows(named=True):
            by_id[(r["id"], r["prompt_hash"])] = r["reflection"]
    plan = {j["id"]: j for j in jobs}
    inserted = empty = 0
    for rel, df in shards.items():
        texts, refls, flags, offsets = [], [], [], []
        for doc_id, text in zip(df[cfg.id_key].to_list(), df[cfg.text_key].to_list(), strict=False):
            j = plan.get(doc_id)
            r = clean_reflection(by_id.get((doc_id, j["prompt_hash"]), ""), cfg.marker, cfg.marker_end) if j else ""
            if j and not r:
                empty += 1
            if r:
                new, off = insert(text, j["offset"], r, cfg)
                texts.append(new), refls.append(r), flags.append(True), offsets.append(off)
                inserted += 1
            else:
                texts.append(text), refls.append(None), flags.append(False), offsets.append(-1)
        res = df.with_columns(
            pl.Series(cfg.text_key, texts, dtype=pl.Utf8),
            pl.Series("reflection", refls, dtype=pl.Utf8),
            pl.Series("has_reflection", flags, dtype=pl.Boolean),
            pl.Series("reflection_offset", offsets, dtype=pl.Int64),
        )
        write_atomic(res, out / attribute_path(rel))
    report = {
        "documents": n_docs,
        "shards": len(rels),
        "selected": len(jobs),
        "generated_this_run": len(todo),
        "inserted": inserted,
        "empty_reflections": empty,
        "rate": cfg.rate,
        "seed": cfg.seed,
        "position": cfg.position,
        "person": cfg.person,
        "marker": [cfg.marker, cfg.marker_end],
        "constitution": str(cfg.constitution),
        "elapsed_seconds": round(time.time() - t0, 2),
    }
    (out / "reflect_report.json").write_text(json.dumps(report, indent=1))
    return report
