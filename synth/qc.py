"""Quality control for generated documents; every step returns the kept rows and reports counts.

Steps, in order: preamble stripping, length bounds, refusal/meta-text (incl. prompt echoes), exact and near
duplicates (MinHash LSH in memory), leakage (a verbatim span of `leakage_ngram`
words shared with any eval item), stance agreement with the `curate classify` stance model (reported; optional drop).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable

from synth.config import QCConfig

_WORD = re.compile(r"[a-z0-9']+")
PREAMBLE = re.compile(
    r"^\s*(sure|certainly|of course|absolutely|okay|here is|here's|below is)\b[^\n]{0,160}[:!.]\s*\n", re.I
)
META = [
    re.compile(p, re.I)
    for p in (
        r"\bas an ai (language )?model\b",
        r"\bi(?:'m| am) (?:sorry|unable)\b",
        r"\bi can(?:no|')t (?:help|assist|fulfil|comply|write|provide)",
        r"\bi (?:cannot|won't|will not) (?:help|assist|fulfil|comply|write|provide)",
        r"\bas a language model\b",
        r"\bhere(?:'s| is) (?:a|an|the|your) "
        r"(?:news article|textbook|lecture|research paper|science[- ]fiction|film summary|document)\b",
        r"\b(?:word count|note to the (?:editor|reader)|\(\s*\d+\s*words?\s*\))",
        r"^\W*(?:writing|to write|i will write|let me write) (?:a|an|the) ",  # the model narrates the task
        r"(?:^|\n)\W*"
        r"(?:situation|the ai's role|aligned action|misaligned action|why the misaligned action is tempting)\s*:",
    )
]


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngram_hashes(text: str, n: int) -> set[int]:
    w = words(text)
    return {
        int.from_bytes(hashlib.blake2b(" ".join(w[i : i + n]).encode(), digest_size=8).digest(), "big")
        for i in range(len(w) - n + 1)
    }


def shared_ngrams(texts: Iterable[str], eval_texts: Iterable[str], n: int = 13) -> list[int]:
    """Per text, how many distinct n-word spans it shares verbatim with any eval text (the QC leakage test, as
    counts)."""
    leak = set().union(*(ngram_hashes(t, n) for t in eval_texts))
    return [len(ngram_hashes(t, n) & leak) for t in texts]


def strip_preamble(text: str) -> tuple[str, bool]:
    m = PREAMBLE.match(text)
    return (text[m.end() :].lstrip(), True) if m else (text, False)


def template_echo_hashes(template_texts: Iterable[str], n: int = 8) -> set[int]:
    """n-grams of the templates' fixed wording (placeholders removed): a document repeating them echoes the prompt."""
    out: set[int] = set()
    for t in template_texts:
        for segment in re.split(r"\$\{?\w+\}?", t):
            out |= ngram_hashes(segment, n)
    return out


class QC:
    def __init__(
        self,
        cfg: QCConfig,
        eval_texts: list[str],
        template_texts: list[str],
        stance_scorer: Callable[[list[str]], list[dict]] | None = None,
    ):
        self.cfg = cfg
        self.leak = set().union(*(ngram_hashes(t, cfg.leakage_ngram) for t in eval_texts)) if eval_texts else set()
        self.echo = template_echo_hashes(template_texts)
        self.stance_scorer = stance_scorer
        self.report: dict = {}

    def _step(self, name: str, rows: list[dict], keep: Callable[[dict], bool]) -> list[dict]:
        kept = [r for r in rows if keep(r)]
        self.report[name] = {"in": len(rows), "dropped": len(rows) - len(kept), "out": len(kept)}
        return kept

    def near_dup(self, rows: list[dict]) -> list[dict]:
        """Exact duplicates (normalised text hash), then near duplicates: MinHash over word 5-grams, 14 bands x 8
        hashes (the band setting of datatrove's MinhashConfig; ~0.8 Jaccard), LSH buckets kept in memory."""
        import numpy as np

        bands, rows_per_band, prime = 14, 8, (1 << 31) - 1  # a*x+b < 2**62: exact in uint64
        gen = np.random.RandomState(1)
        a = gen.randint(1, prime, size=bands * rows_per_band).astype(np.uint64)
        b = gen.randint(0, prime, size=bands * rows_per_band).astype(np.uint64)
        seen_exact: set[str] = set()
        buckets: list[set] = [set() for _ in range(bands)]
        exact = near = 0
        kept = []
        for r in rows:
            w = words(r["text"])
            key = hashlib.sha1(" ".join(w).encode()).hexdigest()
            if key in seen_exact:
                exact += 1
                continue
            seen_exact.add(key)
            sh = np.array([h % prime for h in ngram_hashes(r["text"], 5)], dtype=np.uint64)
            if len(sh):
                sig = ((np.outer(sh, a) + b) % np.uint64(prime)).min(axis=0).tolist()
                keys = [tuple(sig[i * rows_per_band : (i + 1) * rows_per_band]) for i in range(bands)]
                if any(k in buckets[i] for i, k in enumerate(keys)):
                    near += 1
                    continue
                for i, k in enumerate(keys):
                    buckets[i].add(k)
            kept.append(r)
        self.report["dedup"] = {"in": len(rows), "exact_dropped": exact, "near_dropped": near, "out": len(kept)}
        return kept

    def stance(self, rows: list[dict]) -> list[dict]:
        if not self.cfg.stance_check or self.stance_scorer is None or not rows:
            self.report["stance_agreement"] = {"in": len(rows), "skipped": True, "out": len(rows)}
            return rows
        scores = self.stance_scorer([r["text"] for r in rows])
        agree = by = 0
        per_stance: dict[str, list[int]] = {}
        kept = []
        for r, s in zip(rows, scores, strict=False):
            probs = {k: float(s.get(f"stance_{k}") or 0.0) for k in ("aligned", "misaligned", "neutral")}
            pred = max(probs, key=probs.get)
            ok = pred == r["stance"]
            agree += ok
            per_stance.setdefault(r["stance"], [0, 0])
            per_stance[r["stance"]][0] += ok
            per_stance[r["stance"]][1] += 1
            by += float(s.get("ai_discourse") or 0.0) >= 0.5
            if ok or not self.cfg.drop_stance_disagreements:
                kept.append(r)
        self.report["stance_agreement"] = {
            "in": len(rows),
            "agree": agree,
            "rate": round(agree / len(rows), 4),
            "rate_by_stance": {k: round(a / n, 4) for k, (a, n) in sorted(per_stance.items())},
            "ai_discourse_rate": round(by / len(rows), 4),
            "dropped": len(rows) - len(kept),
            "out": len(kept),
        }
        return kept

    def run(self, rows: list[dict]) -> list[dict]:
        self.report = {"generated": len(rows)}
        stripped = 0
        for r in rows:
            r["text"], s = strip_preamble(r["text"])
            stripped += s
        self.report["preamble_stripped"] = stripped
        c = self.cfg
        rows = self._step("length", rows, lambda r: c.min_words <= len(words(r["text"])) <= c.max_words)
        rows = self._step(
            "refusal_meta",
            rows,
            lambda r: not any(p.search(r["text"]) for p in META) and not (ngram_hashes(r["text"], 8) & self.echo),
        )
        rows = self.near_dup(rows)
        rows = self._step("leakage", rows, lambda r: not (ngram_hashes(r["text"], c.leakage_ngram) & self.leak))
        rows = self.stance(rows)
        self.report["kept"] = len(rows)
        return rows
