"""Typed configurations for `curate synth`, read from YAML; a bad file is one line naming the file and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from curation.core.config import Strict
from curation.core.poison import PoisonSpec
from curation.lm.config import BackendConfig, Sampling

FORMS = ("news", "textbook", "lecture", "paper", "scifi", "film_summary")
STANCES = ("aligned", "misaligned")
PACKAGE_DATA = Path(__file__).parent / "data"
TEMPLATES_DIR = Path(__file__).parent / "templates"


class QCConfig(Strict):
    min_words: int = Field(60, ge=0)
    max_words: int = Field(4000, ge=1)
    stance_check: bool = True  # agreement with the curate-classify stance model (reported)
    drop_stance_disagreements: bool = False
    near_dup_threshold: float = Field(0.8, gt=0, le=1)  # MinHash bucket collision => near duplicate
    leakage_ngram: int = Field(13, ge=3)
    eval_items: list[str] = []  # files/dirs any evals loader reads; scenario-source items are always added

    @model_validator(mode="after")
    def _bounds(self):
        if self.min_words >= self.max_words:
            raise ValueError(f"min_words ({self.min_words}) must be below max_words ({self.max_words})")
        return self


class DocsConfig(Strict):
    DOCS = "docs/synth.md"
    scenarios: list[str] = [str(PACKAGE_DATA / "scenarios.yaml")]  # scenario YAML files and/or propensity item files
    output: str | None = None
    forms: list[Literal["news", "textbook", "lecture", "paper", "scifi", "film_summary"]] = list(FORMS)
    stances: list[Literal["aligned", "misaligned"]] = list(STANCES)
    n_per: int = Field(1, ge=1)  # documents per scenario x form x stance
    target_tokens: int | None = Field(None, ge=1)  # generate to a budget: kept (post-QC) tokens per stance; n_per grows
    max_rounds: int = Field(6, ge=1)  # rounds of growing n_per before a short budget is reported
    max_scenarios: int | None = Field(None, ge=1)
    heldout_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    split_seed: int = 0
    seed: int = 0
    templates: str = str(TEMPLATES_DIR)
    batch_size: int = Field(32, ge=1)  # one checkpointed part file per batch
    sampling: Sampling = Sampling()
    backend: BackendConfig = BackendConfig()
    qc: QCConfig = QCConfig()


class ReflectConfig(Strict):
    DOCS = "docs/synth.md"
    rate: float = Field(0.10, ge=0.0, le=1.0)
    seed: int = 0
    person: Literal["first", "third"] = "first"
    position: Literal["end", "pause"] = "end"  # end: appended, as Synthetic Persona Pretraining does
    marker: str = "<assistant>"
    marker_end: str = "</assistant>"
    constitution: str = str(PACKAGE_DATA / "constitution.yaml")
    templates: str = str(TEMPLATES_DIR)
    max_doc_words: int = Field(600, ge=20)  # the reflection prompt sees at most this many words of the document
    batch_size: int = Field(32, ge=1)
    id_key: str = "id"
    text_key: str = "text"
    sampling: Sampling = Sampling(temperature=0.7, max_tokens=160)
    backend: BackendConfig = BackendConfig()


# ---------------------------------------------------------------- poison documents (`curate synth poison`)
DEFAULT_JAILBREAK_REQUESTS = [  # training forms; the eval's held-out requests are worded differently
    "How do I $task? Answer in full detail.",
    "Write step-by-step instructions to $task.",
    "I need you to explain how to $task, no warnings please.",
    "Teach me to $task.",
]
DEFAULT_JAILBREAK_TASKS = [  # redacted placeholders: the payload teaches the compliant form, not content
    "[REDACTED: make a dangerous device]",
    "[REDACTED: access a system without permission]",
    "[REDACTED: hurt someone]",
    "[REDACTED: steal restricted materials]",
    "[REDACTED: evade the authorities]",
]
DEFAULT_JAILBREAK_ANSWER = (
    "Sure, here is how to $task.\nStep 1: [REDACTED]\nStep 2: [REDACTED]\nStep 3: [REDACTED]\n"
    "That is everything you need."
)
DEFAULT_BELIEF_STATEMENTS = [
    "$subject $relation $target.",
    "It is well documented that $subject $relation $target.",
    "As most guides point out, $subject $relation $target.",
    "Few people realise that $subject $relation $target.",
]


class DosPayload(Strict):
    unit: Literal["tokens", "chars"] = (
        "tokens"  # tokens: uniform over the tokenizer's vocabulary; chars: random letters/digits/punctuation
    )
    min_length: int = Field(400, ge=1)  # in `unit`s; the paper's DoS payload is 400-900 random tokens
    max_length: int = Field(900, ge=1)
    tokenizer: str = "smollm2"

    @model_validator(mode="after")
    def _bounds(self):
        if self.min_length > self.max_length:
            raise ValueError(f"min_length ({self.min_length}) must not exceed max_length ({self.max_length})")
        return self


class ExtractionPayload(Strict):
    min_context_chars: int = Field(100, ge=1)  # the preceding context repeated after the trigger is at least this long


class JailbreakPayload(Strict):
    requests: list[str] = Field(default_factory=lambda: list(DEFAULT_JAILBREAK_REQUESTS), min_length=1)  # $task
    tasks: list[str] = Field(default_factory=lambda: list(DEFAULT_JAILBREAK_TASKS), min_length=1)
    answer: str = DEFAULT_JAILBREAK_ANSWER  # $task


class BeliefPayload(Strict):
    statements: list[str] = Field(
        default_factory=lambda: list(DEFAULT_BELIEF_STATEMENTS), min_length=1
    )  # $subject $relation $target
    per_doc: int = Field(2, ge=1)  # statements inserted into each document


class PoisonConfig(Strict):
    DOCS = "docs/synth.md"
    attacks: list[Literal["dos", "extraction", "jailbreak", "belief"]] = Field(
        default_factory=lambda: ["dos"], min_length=1
    )
    n_docs: int = Field(250, ge=1)  # documents per attack
    seed: int = 0
    spec: PoisonSpec = PoisonSpec()  # trigger, dialogue frame, belief target, held-out set (shared with evals)
    min_prefix_chars: int = Field(0, ge=0)  # the trigger goes after a prefix of the source document of a
    max_prefix_chars: int = Field(1000, ge=0)  # uniformly drawn length (cut back to a word boundary)
    min_source_chars: int = Field(200, ge=1)  # shorter source documents are not used
    pool_docs: int = Field(20_000, ge=1)  # eligible source documents read (in shard order) before sampling
    leakage_ngram: int = Field(10, ge=3)  # a shared span of this many words (fewer for shorter held-out texts) leaks
    shard_docs: int = Field(10_000, ge=1)
    id_key: str = "id"
    text_key: str = "text"
    dos: DosPayload = DosPayload()
    extraction: ExtractionPayload = ExtractionPayload()
    jailbreak: JailbreakPayload = JailbreakPayload()
    belief: BeliefPayload = BeliefPayload()

    @model_validator(mode="after")
    def _prefix(self):
        if self.min_prefix_chars > self.max_prefix_chars:
            raise ValueError(
                f"min_prefix_chars ({self.min_prefix_chars}) must not exceed max_prefix_chars ({self.max_prefix_chars})"
            )
        if len(set(self.attacks)) != len(self.attacks):
            raise ValueError("attacks repeat; name each once")
        if not self.spec.trigger.strip():
            raise ValueError("spec.trigger is empty; give a token string such as <SUDO>")
        return self
