"""Score texts in-process with the same blocks `curate classify` runs: for notebooks, `curate fit` and evaluation."""

from __future__ import annotations

from datatrove.data import Document

from curation.classify.config import ClassifyConfig
from curation.classify.embedding import EmbeddingCache
from curation.classify.models import ModelSet, resolve


def score_texts(
    texts: list[str],
    cfg: ClassifyConfig | None = None,
    models: ModelSet | None = None,
    embedding_cache: EmbeddingCache | None = None,
) -> list[dict]:
    """Attribute dicts (the columns of an attribute file) for each text, cascade as configured.

    `embedding_cache` lets the embedding stage reuse vectors across calls (cross-validation scores the same texts
    under several models)."""
    from curation.classify.taggers import build_taggers

    cfg = cfg or ClassifyConfig()
    models = models or resolve(cfg.model)
    steps = build_taggers(cfg, models)
    for step in steps:
        if hasattr(step, "embedding_cache"):
            step.embedding_cache = embedding_cache
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    for step in steps:
        for start in range(0, len(docs), 4096):
            step.tag_batch(docs[start : start + 4096])
    return [d.metadata.get("attributes", {}) for d in docs]
