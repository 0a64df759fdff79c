"""Datatrove pipeline blocks of `curate classify`: reader -> keyword -> fastText -> embedding -> LLM judge -> final ->
writer."""

from curation.classify.steps.combine import FinalScores
from curation.classify.steps.embedding import EmbeddingTagger
from curation.classify.steps.fasttext_tagger import FastTextTagger
from curation.classify.steps.keyword import KeywordTagger
from curation.classify.steps.llm_judge import LLMJudgeTagger
from curation.classify.steps.reader import ShardReader
from curation.classify.steps.writer import AttributeWriter

__all__ = [
    "ShardReader",
    "KeywordTagger",
    "FastTextTagger",
    "EmbeddingTagger",
    "LLMJudgeTagger",
    "FinalScores",
    "AttributeWriter",
]
