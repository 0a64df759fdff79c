"""The tagging stages of `curate classify`, looked up by name (as Dolma's tagger registry does).

Each entry builds its datatrove step from the classify config and the model set. `build_taggers` is the one place
the cascade is assembled: the pipeline (`curation.classify.pipeline.build_pipeline`) wraps it with a reader and a writer, and
`curation.classify.predict.score_texts` runs it in-process on a list of texts.
"""

from __future__ import annotations

from collections.abc import Callable

from curation.classify.config import ClassifyConfig
from curation.classify.models import ModelSet
from curation.core.errors import CurationError

TaggerFactory = Callable[[ClassifyConfig, ModelSet], object]
TAGGERS: dict[str, TaggerFactory] = {}  # in cascade order: each stage reads the scores of the ones before it


def register(name: str):
    def wrap(factory: TaggerFactory) -> TaggerFactory:
        TAGGERS[name] = factory
        return factory

    return wrap


def tagger(name: str) -> TaggerFactory:
    """The factory of a stage; building it checks the step's `_requires_dependencies` (datatrove does, in `__new__`)."""
    try:
        factory = TAGGERS[name]
    except KeyError:
        raise CurationError(f"unknown tagging stage {name!r}; known stages: {', '.join(TAGGERS)}") from None

    def build(cfg: ClassifyConfig, models: ModelSet):
        try:
            return factory(cfg, models)
        except ImportError as e:  # datatrove's message names the package and its pip install line
            raise CurationError(f"classify stage {name!r}: {e} Or disable it: `{name}.enabled: false`") from None

    return build


@register("keyword")
def _keyword(cfg: ClassifyConfig, models: ModelSet):
    from curation.classify.steps.keyword import KeywordTagger

    return KeywordTagger(cfg.keyword.lexicon, models.keyword_calibration, cfg.keyword.min_hits)


@register("fasttext")
def _fasttext(cfg: ClassifyConfig, models: ModelSet):
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


@register("embedding")
def _embedding(cfg: ClassifyConfig, models: ModelSet):
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


@register("llm_judge")
def _llm_judge(cfg: ClassifyConfig, models: ModelSet):
    from curation.classify.steps.llm_judge import LLMJudgeTagger

    j = cfg.llm_judge
    return LLMJudgeTagger(j.model, j.min_prior_score, j.max_chars, j.device)


def build_taggers(cfg: ClassifyConfig, models: ModelSet) -> list:
    """The enabled stages in cascade order, then FinalScores (the combined `ai_discourse` and stance columns)."""
    from curation.classify.steps.combine import FinalScores

    steps = [tagger(name)(cfg, models) for name in TAGGERS if getattr(cfg, name).enabled]
    if not steps:
        raise CurationError(f"every tagging stage is disabled; enable at least one of {', '.join(TAGGERS)}")
    return [*steps, FinalScores(models.stance_prior, models.stance_class_weights, models.ai_combiner)]
