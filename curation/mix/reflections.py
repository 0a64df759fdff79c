"""The share of a mix's documents that carry a persona reflection (`curate synth reflect` output, Synthetic Persona
Pretraining): counted while the shards are written, recorded in the lock, recounted by `curate mix verify`.

SPP's dose is "reflections on 10% of the documents"; a mix that repeats, filters or drops documents moves that share,
so the lock states what the trainer actually reads: documents and tokens of documents with a reflection, against the
share `synth reflect` inserted (its reflect_report.json: inserted / documents)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

FLAG = "has_reflection"


def reflect_report(path: str | Path) -> dict | None:
    """The reflect_report.json of the `synth reflect` output a source path lies in (the path or up to two parents: a
    corpus root's sub-directory is one source)."""
    p = Path(path)
    for d in [p, *list(p.parents)[:2]]:
        f = d / "reflect_report.json"
        if f.is_file():
            try:
                return json.loads(f.read_text())
            except (OSError, json.JSONDecodeError):
                return None
    return None


class Counter:
    """Per source: documents written with a reflection and their tokens (exact, with the manifest's tokenizer)."""

    def __init__(self, sources: list[str], tokenizer: str):
        self.docs = dict.fromkeys(sources, 0)
        self.tokens = dict.fromkeys(sources, 0)
        self.tokenizer = tokenizer

    def add(self, t: pa.Table) -> None:
        if not self.docs or FLAG not in t.column_names:
            return
        sub = t.filter(pc.fill_null(t.column(FLAG), False))
        if not sub.num_rows:
            return
        from curation.mix.tokens import TokenCounter

        toks = TokenCounter.cached(self.tokenizer).count(sub.column("text"))
        src = np.asarray(sub.column("source").to_pylist(), dtype=object)
        for name in self.docs:
            m = src == name
            self.docs[name] += int(m.sum())
            self.tokens[name] += int(toks[m].sum())

    def record(self, plan, realised: dict, totals: dict) -> dict:
        """The lock's `reflections` entry."""
        per = {}
        expected_num = expected_den = 0
        for sp in plan.sources:
            if sp.name not in self.docs:
                continue
            rep = reflect_report(sp.rs.spec.path) or {}
            per[sp.name] = {
                "documents": realised[sp.name]["docs"],
                "with_reflection": self.docs[sp.name],
                "tokens_with_reflection": self.tokens[sp.name],
                "reflect_report": {k: rep.get(k) for k in ("documents", "inserted", "rate", "position", "seed")}
                if rep
                else None,
            }
            if rep.get("documents"):
                expected_num += rep["inserted"]
                expected_den += rep["documents"]
        k, n = sum(self.docs.values()), totals["docs"]
        return {
            "documents": n,
            "with_reflection": k,
            "share_documents": k / n if n else 0.0,
            "tokens_with_reflection": sum(self.tokens.values()),
            "share_tokens": sum(self.tokens.values()) / totals["tokens"] if totals["tokens"] else 0.0,
            "expected_share": expected_num / expected_den if expected_den else None,
            "sources": per,
        }


def check(root: Path, lock: dict) -> list[str]:
    """The reflected documents in the shards against the lock, and the lock's share against what `synth reflect`
    inserted (more than 4 binomial standard errors + 0.005 apart: the mix changed the dose)."""
    import pyarrow.parquet as pq

    rec = lock["reflections"]
    paths = [root / o["path"] for o in lock["outputs"]]
    if not all(p.exists() for p in paths):
        return []  # already reported as missing outputs
    try:
        t = pa.concat_tables([pq.read_table(p, columns=["source", FLAG]) for p in paths])
    except (pa.ArrowInvalid, OSError, KeyError) as e:
        return [f"output unreadable: {str(e).splitlines()[0]} (cannot count the documents with a reflection)"]
    flag = pc.fill_null(t.column(FLAG), False).to_numpy(zero_copy_only=False)
    src = np.asarray(t.column("source").to_pylist(), dtype=object)
    problems = []
    for name, s in rec["sources"].items():
        got = int(flag[src == name].sum())
        if got != s["with_reflection"]:
            problems.append(
                f"reflections changed: source {name} has {got} documents with a reflection in the shards, the lock "
                f"records {s['with_reflection']}"
            )
    # over the reflected sources' documents: other sources in the mix dilute the share by design, not by accident
    e, n = rec.get("expected_share"), sum(s["documents"] for s in rec["sources"].values())
    share = sum(s["with_reflection"] for s in rec["sources"].values()) / n if n else 0.0
    if e is not None and n and abs(share - e) > 4 * math.sqrt(e * (1 - e) / n) + 0.005:
        problems.append(
            f"reflection share {share:.4f} of the {n} documents of the reflected sources is far from the {e:.4f} "
            "that `curate synth reflect` inserted (its reflect_report.json): the mix's filters or budgets changed "
            "the dose"
        )
    return problems
