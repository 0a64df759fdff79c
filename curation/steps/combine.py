"""The final columns every consumer reads: one AI-discourse probability and a stance distribution per document."""

from __future__ import annotations

import pyarrow as pa

from curation.steps.base import STANCES, TaggerStep, attrs, scorable

STAGE_PREFIX = {"embedding": "emb", "fasttext": "ft"}


class FinalScores(TaggerStep):
    """Takes each document's scores from the most refined stages that ran on it.

    `ai_discourse` is the mean of the model stages that ran (fastText and/or embedding), else the calibrated
    keyword score; the stance is taken the same way, else the stance prior of the training data.
    """

    name = "🧮 Final scores"
    batch_size = 1024

    def __init__(self, stance_prior: dict[str, float]):
        super().__init__()
        self.stance_prior = stance_prior

    def columns(self):
        return {"ai_discourse": pa.float32(), **{f"stance_{s}": pa.float32() for s in STANCES}, "ai_stage": pa.string()}

    def tag_batch(self, docs):
        for doc in docs:
            if not scorable(doc):
                continue
            a = attrs(doc)
            ran = [stage for stage, p in STAGE_PREFIX.items() if a.get(f"{p}_ai") is not None]
            if ran:
                a["ai_discourse"] = sum(a[f"{STAGE_PREFIX[s]}_ai"] for s in ran) / len(ran)
                stance = {s: sum(a[f"{STAGE_PREFIX[r]}_stance_{s}"] for r in ran) / len(ran) for s in STANCES}
            else:
                a["ai_discourse"] = a.get("kw_ai", 0.0)
                stance = dict(self.stance_prior)
            total = sum(stance.values()) or 1.0
            for s in STANCES:
                a[f"stance_{s}"] = stance[s] / total
            a["ai_stage"] = ran[0] if ran else "keyword"
