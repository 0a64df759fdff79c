"""Stage 1: the keyword prefilter. Cheap, high recall; decides which documents the model stages look at."""

from __future__ import annotations

import math

import pyarrow as pa

from curation.classify.lexicon import Lexicon
from curation.classify.steps.base import TaggerStep, attrs, scorable, text_series


def keyword_features(counts: dict[str, int]) -> list[float]:
    """Features of the calibrated keyword score; `curate fit` fits a logistic regression on exactly these."""
    hits = counts["strong"] + counts["cs"]
    return [
        math.log1p(counts["strong"]),
        math.log1p(counts["cs"]),
        math.log1p(counts["weak"]),
        math.log1p(1000.0 * hits / max(counts["words"], 1)),
    ]


def keyword_probability(features: list[float], calibration: dict | None) -> float:
    """P(AI discourse | keyword counts) from the fitted calibration; without one, a step at one hit."""
    if not calibration:
        return 1.0 if features[0] + features[1] > 0 else 0.0
    z = calibration["intercept"] + sum(w * x for w, x in zip(calibration["coef"], features, strict=False))
    return 1.0 / (1.0 + math.exp(-z))


class KeywordTagger(TaggerStep):
    name = "🔤 Keyword AI-term tagger"
    batch_size = 1024

    def __init__(self, lexicon_path: str | None = None, calibration: dict | None = None, min_hits: int = 1):
        super().__init__()
        self.lexicon = Lexicon.load(lexicon_path)
        self.calibration = calibration
        self.min_hits = min_hits

    def columns(self):
        return {
            "kw_strong": pa.int32(),
            "kw_case_sensitive": pa.int32(),
            "kw_weak": pa.int32(),
            "kw_ai": pa.float32(),
            "kw_candidate": pa.bool_(),
        }

    def tag_batch(self, docs):
        docs = [d for d in docs if scorable(d)]
        if not docs:
            return
        counts = self.lexicon.count_batch(text_series(docs))
        strong, cs, weak, words = (counts[k].tolist() for k in ("strong", "cs", "weak", "words"))
        zero = keyword_probability(keyword_features({"strong": 0, "cs": 0, "weak": 0, "words": 0}), self.calibration)
        n = 0
        for doc, s, c, w, nw in zip(docs, strong, cs, weak, words, strict=False):
            a = attrs(doc)
            a["kw_strong"], a["kw_case_sensitive"], a["kw_weak"], a["kw_words"] = s, c, w, nw
            # count_batch counts weak terms and words only next to a hit, so every other document has the same score
            a["kw_ai"] = (
                keyword_probability(keyword_features({"strong": s, "cs": c, "weak": w, "words": nw}), self.calibration)
                if s or c
                else zero
            )
            a["kw_candidate"] = cand = s + c >= self.min_hits
            n += cand
        self.stat_update("kw_candidate", value=n)
        self.stat_update("kw_not_candidate", value=len(docs) - n)
