"""Typed configurations for `curate synth`, read from YAML; a bad file is one line naming the file and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, model_validator

from curation.core.config import Strict
from curation.lm.config import BackendConfig, Sampling

FORMS = ("news", "textbook", "lecture", "paper", "scifi", "film_summary")
STANCES = ("aligned", "misaligned")
PACKAGE_DATA = Path(__file__).parent / "data"
TEMPLATES_DIR = Path(__file__).parent / "templates"


class QCConfig(Strict):
    min_words: int = Field(60, ge=0)
    max_words: int = Field(4000, ge=1)
    stance_check: bool = True              # agreement with the curate-classify stance model (reported)
    drop_stance_disagreements: bool = False
    near_dup_threshold: float = Field(0.8, gt=0, le=1)  # MinHash bucket collision => near duplicate
    leakage_ngram: int = Field(13, ge=3)
    eval_items: list[str] = []             # files/dirs any evals loader reads; scenario-source items are always added

    @model_validator(mode="after")
    def _bounds(self):
        if self.min_words >= self.max_words:
            raise ValueError(f"min_words ({self.min_words}) must be below max_words ({self.max_words})")
        return self


class DocsConfig(Strict):
    DOCS = "docs/synth.md"
    scenarios: list[str] = [str(PACKAGE_DATA / "scenarios.yaml")]  # scenario YAML files and/or propensity item files
    output: Optional[str] = None
    forms: list[Literal["news", "textbook", "lecture", "paper", "scifi", "film_summary"]] = list(FORMS)
    stances: list[Literal["aligned", "misaligned"]] = list(STANCES)
    n_per: int = Field(1, ge=1)            # documents per scenario x form x stance
    target_tokens: Optional[int] = Field(None, ge=1)  # generate to a budget: kept (post-QC) tokens per stance; n_per grows
    max_rounds: int = Field(6, ge=1)       # rounds of growing n_per before a short budget is reported
    max_scenarios: Optional[int] = Field(None, ge=1)
    heldout_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    split_seed: int = 0
    seed: int = 0
    templates: str = str(TEMPLATES_DIR)
    batch_size: int = Field(32, ge=1)      # one checkpointed part file per batch
    sampling: Sampling = Sampling()
    backend: BackendConfig = BackendConfig()
    qc: QCConfig = QCConfig()


class ReflectConfig(Strict):
    DOCS = "docs/synth.md"
    rate: float = Field(0.10, ge=0.0, le=1.0)
    seed: int = 0
    person: Literal["first", "third"] = "first"
    position: Literal["end", "pause"] = "pause"
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
