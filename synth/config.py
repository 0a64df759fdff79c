"""Typed configurations for `curate synth`, read from YAML; a bad file is one line naming the file and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from curation.errors import CurationError

FORMS = ("news", "textbook", "lecture", "paper", "scifi", "film_summary")
STANCES = ("aligned", "misaligned")
PACKAGE_DATA = Path(__file__).parent / "data"
TEMPLATES_DIR = Path(__file__).parent / "templates"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Sampling(_Strict):
    temperature: float = Field(0.8, ge=0.0, le=5.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(700, ge=1)


class BackendConfig(_Strict):
    kind: Literal["vllm", "openai", "transformers"] = "vllm"
    model: str = "smollm2"                 # spec for vllm/transformers (evals.model_loading); served name for openai
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key: Optional[str] = None          # or OPENAI_API_KEY
    concurrency: int = Field(8, ge=1)      # openai: requests in flight
    timeout_s: float = Field(120.0, gt=0)  # openai: per request
    retries: int = Field(4, ge=0)          # openai: bounded retries with exponential backoff
    backoff_s: float = Field(0.5, ge=0)
    vllm_python: Optional[str] = None      # interpreter with vLLM (default: current one if it imports vllm, else .venv/vllm)
    max_model_len: int = Field(2048, ge=128)
    kv_cache_gb: int = Field(1, ge=1)      # VLLM_CPU_KVCACHE_SPACE on CPU
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    dtype: str = "auto"


class QCConfig(_Strict):
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


class DocsConfig(_Strict):
    scenarios: list[str] = [str(PACKAGE_DATA / "scenarios.yaml")]  # scenario YAML files and/or propensity item files
    output: Optional[str] = None
    forms: list[Literal["news", "textbook", "lecture", "paper", "scifi", "film_summary"]] = list(FORMS)
    stances: list[Literal["aligned", "misaligned"]] = list(STANCES)
    n_per: int = Field(1, ge=1)            # documents per scenario x form x stance
    max_scenarios: Optional[int] = Field(None, ge=1)
    heldout_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    split_seed: int = 0
    seed: int = 0
    templates: str = str(TEMPLATES_DIR)
    batch_size: int = Field(32, ge=1)      # one checkpointed part file per batch
    sampling: Sampling = Sampling()
    backend: BackendConfig = BackendConfig()
    qc: QCConfig = QCConfig()


class ReflectConfig(_Strict):
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


def load_config(path: str | Path | None, cls: type[BaseModel], overrides: dict | None = None):
    """cls from a YAML file (may be None) with CLI overrides applied on top (dotted keys: 'backend.kind')."""
    data: dict = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise CurationError(f"{p}: config file not found; pass an existing YAML file to --config")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            raise CurationError(f"{p}{where}: not valid YAML ({getattr(e, 'problem', e)}); fix the file") from None
        if not isinstance(data, dict):
            raise CurationError(f"{p}: the config must be a YAML mapping of options; see docs/synth.md")
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        raise CurationError(f"{path or 'options'}: {loc}: {err['msg']}; fix that option (see docs/synth.md)") from None
