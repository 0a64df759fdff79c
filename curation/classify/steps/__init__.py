"""Datatrove pipeline blocks of `curate classify`: reader -> keyword -> fastText -> embedding -> LLM judge -> final ->
writer."""

from curation.steps.combine import FinalScores
from curation.steps.embedding import EmbeddingTagger
from curation.steps.fasttext_tagger import FastTextTagger
from curation.steps.keyword import KeywordTagger
from curation.steps.llm_judge import LLMJudgeTagger
from curation.steps.reader import ShardReader
from curation.steps.writer import AttributeWriter

__all__ = ["ShardReader", "KeywordTagger", "FastTextTagger", "EmbeddingTagger", "LLMJudgeTagger", "FinalScores", "AttributeWriter"]
