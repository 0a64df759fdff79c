"""The final columns every consumer reads: one AI-discourse probability and a stance distribution per document."""

from __future__ import annotations

import pyarrow as pa

from curation.classify.combiner import AICombiner
from curation.classify.steps.base import STANCES, TaggerStep, attrs, scorable

STAGE_PREFIX = {"llm_judge": "llm", "embedding": "emb", "fasttext": "ft"}  # most refined first
STAGE_NAME = {p: stage for stage, p in STAGE_PREFIX.items()}


class FinalScores(TaggerStep):
    """Takes each document's scores from the most refined stages that ran on it.

    `ai_discourse` is the card's learned combination of the stage probabilities (`ai_combiner`,
    curation/classify/combiner.py) where the card has one and the stages it needs ran; otherwise the mean of the
    probabilities of every stage that ran on the document (calibrated keyword score, fastText, embedding head, LLM
    judge when enabled). The stance is the mean of the stance models that ran, else the stance prior of the training
    data. A model card may carry `stance_class_weights`: multipliers applied to the
    model stances before renormalising (a prior shift: written training documents make the models read real-text
    style as "neutral"; the default's weights were chosen by cross-validation on real corpus text, see
    scripts/classifier/crossval_real.py).
    """

    name = "🧮 Final scores"
    batch_size = 1024

    def __init__(
        self,
        stance_prior: dict[str, float],
        stance_class_weights: dict[str, float] | None = None,
        ai_combiner: dict | None = None,
    ):
        super().__init__()
        self.stance_prior = stance_prior
        self.stance_class_weights = stance_class_weights or {}
        self.ai_combiner = ai_combiner

    def columns(self):
        return {"ai_discourse": pa.float32(), **{f"stance_{s}": pa.float32() for s in STANCES}, "ai_stage": pa.string()}

    def tag_batch(self, docs):
        stages = [
            (p, f"{p}_ai", f"{p}_stance_aligned", tuple(f"{p}_stance_{s}" for s in STANCES))
            for p in STAGE_PREFIX.values()
        ]
        finals = tuple(f"stance_{s}" for s in STANCES)
        prior = tuple(self.stance_prior[s] for s in STANCES)
        weights = tuple(float(self.stance_class_weights.get(s, 1.0)) for s in STANCES)
        combiner = AICombiner.from_dict(self.ai_combiner) if self.ai_combiner else None
        for doc in docs:
            if not scorable(doc):
                continue
            a = attrs(doc)
            ran = [st for st in stages if a.get(st[1]) is not None]
            probs = [a[st[1]] for st in ran]
            if a.get("kw_ai") is not None:
                probs.append(a["kw_ai"])
            learned = combiner.score(a) if combiner else None
            a["ai_discourse"] = learned if learned is not None else sum(probs) / len(probs) if probs else 0.0
            told = [st[3] for st in ran if a.get(st[2]) is not None]
            stance = [w * sum(a[keys[i]] for keys in told) for i, w in enumerate(weights)] if told else prior
            total = sum(stance) or 1.0
            for key, v in zip(finals, stance, strict=False):
                a[key] = v / total
            a["ai_stage"] = STAGE_NAME[ran[0][0]] if ran else "keyword"
