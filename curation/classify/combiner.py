"""A learned combination of the stage probabilities into `ai_discourse` (stacking), carried by a model card.

Why: the plain mean of the stage probabilities lets one over-confident stage decide (fastText gives 1e-5 to real
encyclopedic AI articles), and it is not calibrated to the share of AI discourse in real text. A logistic regression
on the stages' clipped log-odds, fitted on out-of-fold scores of real documents
(scripts/classifier/crossval_real.py), raised real-text CV AI F1 from 0.856 to 0.878 (precision 0.86 -> 0.94).
Stages that run only on some documents (the embedding head) get a presence term; a document missing a stage the
combiner always saw falls back to the mean.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from curation.core.errors import CurationError

FEATURES = ("kw_ai", "ft_ai", "emb_ai")


def _logit(p: float, clip: float) -> float:
    p = min(max(p, clip), 1.0 - clip)
    return math.log(p / (1.0 - p))


@dataclass
class AICombiner:
    features: list[str]
    coef: list[float]
    presence: list[float | None]  # None: the feature was always there in fitting (required)
    intercept: float
    clip: float = 1e-4
    fitted_on: str = ""

    def score(self, a: dict) -> float | None:
        """P(AI discourse), or None when a required stage did not run (or a stage it does not know did)."""
        if a.get("llm_ai") is not None and "llm_ai" not in self.features:
            return None
        z = self.intercept
        for name, c, pres in zip(self.features, self.coef, self.presence, strict=False):
            v = a.get(name)
            if v is None:
                if pres is None:
                    return None
                continue
            z += c * _logit(float(v), self.clip) + (pres or 0.0)
        return 1.0 / (1.0 + math.exp(-z))

    def score_without(self, a: dict, stage: str) -> float | None:
        """P(AI discourse) from the stages before `stage`, as if it did not run (its presence term left out too):
        what the embedding stage's gate reads to skip documents the cheaper stages already decide."""
        return self.score({k: v for k, v in a.items() if k != stage})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, origin: str = "ai_combiner") -> AICombiner:
        try:
            c = cls(**d)
        except TypeError as e:
            raise CurationError(
                f"{origin}: not an AI combiner ({e}); "
                "write one with scripts/classifier/crossval_real.py --write-combiner"
            ) from None
        if not (len(c.features) == len(c.coef) == len(c.presence)):
            raise CurationError(
                f"{origin}: features, coef and presence differ in length; "
                "rewrite it with scripts/classifier/crossval_real.py"
            )
        return c

    @classmethod
    def load(cls, path: str | Path) -> AICombiner:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()), str(path))
        except (OSError, json.JSONDecodeError) as e:
            raise CurationError(
                f"{path}: cannot read the AI combiner ({type(e).__name__}); give a JSON file written by "
                "scripts/classifier/crossval_real.py --write-combiner"
            ) from None


def fit_combiner(
    scores: list[dict], labels, features=FEATURES, C: float = 0.1, clip: float = 1e-4, fitted_on: str = ""
) -> AICombiner:
    """Logistic regression on out-of-fold stage scores (never on scores of documents the stages were trained on)."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(labels, dtype=int)
    present = np.array([[s.get(f) is not None for f in features] for s in scores])
    used = [j for j in range(len(features)) if present[:, j].any()]
    gated = [j for j in used if not present[:, j].all()]
    cols = [[_logit(float(s[features[j]]), clip) if present[i, j] else 0.0 for j in used] for i, s in enumerate(scores)]
    x = np.c_[np.array(cols), present[:, gated].astype(float)]
    m = LogisticRegression(C=C, max_iter=2000).fit(x, y)
    w = m.coef_[0]
    coef = [round(float(w[k]), 6) for k in range(len(used))]
    presence = [round(float(w[len(used) + gated.index(j)]), 6) if j in gated else None for j in used]
    return AICombiner([features[j] for j in used], coef, presence, round(float(m.intercept_[0]), 6), clip, fitted_on)
