"""Typed configuration of `curate classify`, loadable from YAML; CLI flags override single fields.

The tagger sections are not fields of `ClassifyConfig`: each registered tagger (`curation.classify.registry`) owns a
top-level section of its name, validated by its own model, so a new tagger needs no edit here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import ConfigDict, Field, ValidationError, model_serializer, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from curation.classify.registry import TAGGERS, TaggerConfig
from curation.classify.taggers import MIN_COMBINED, EmbeddingStage, FastTextStage, KeywordStage, LLMJudgeStage
from curation.core.config import Strict

__all__ = [
    "MIN_COMBINED",
    "ClassifyConfig",
    "EmbeddingStage",
    "ExecutorConfig",
    "FastTextStage",
    "KeywordStage",
    "LLMJudgeStage",
    "TaggerConfig",
]


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
    """The run's settings, plus one section per registered tagger (`cfg.keyword`, `cfg.fasttext`, ...)."""

    model_config = ConfigDict(extra="allow")  # only registered tagger names: checked in `_tagger_sections`
    DOCS = "docs/classify.md"
    model: str = "default"
    id_key: str = "id"
    text_key: str = "text"
    on_bad_doc: Literal["error", "tag"] = "error"
    max_doc_chars: int = Field(5_000_000, ge=1)
    seed: int = 0
    executor: ExecutorConfig = ExecutorConfig()

    if TYPE_CHECKING:  # the shipped sections, for type checkers; at run time they are registry entries
        keyword: KeywordStage
        fasttext: FastTextStage
        embedding: EmbeddingStage
        llm_judge: LLMJudgeStage

    @model_validator(mode="wrap")
    @classmethod
    def _tagger_sections(cls, data, handler):
        """Every registered tagger gets its section (defaults where absent); any other unknown key is an error."""
        if not isinstance(data, dict):
            return handler(data)
        data = dict(data)
        errors: list[InitErrorDetails] = []
        for key in data:
            if key not in cls.model_fields and key not in TAGGERS:
                errors.append({"type": "extra_forbidden", "loc": (key,), "input": data[key]})
        for name, entry in TAGGERS.items():
            if name in cls.model_fields:
                raise ValueError(f"tagger {name!r} has the name of a classify setting; register it under another")
            section = data.get(name)
            if isinstance(section, entry.config):
                continue
            try:
                data[name] = entry.config.model_validate({} if section is None else section)
            except ValidationError as e:
                errors += [
                    {
                        "type": PydanticCustomError(err["type"], err["msg"]),
                        "loc": (name, *err["loc"]),
                        "input": err["input"],
                    }
                    for err in e.errors()
                ]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return handler(data)

    @model_serializer(mode="wrap")
    def _in_order(self, handler) -> dict:
        """Settings, then the tagger sections in cascade order, then the executor (the order before the registry)."""
        out = handler(self)
        executor = out.pop("executor", None)
        sections = {k: out.pop(k) for k in TAGGERS if k in out}
        return {**out, **sections, **({"executor": executor} if executor is not None else {})}

    def section(self, name: str) -> TaggerConfig:
        """The config section of a registered tagger."""
        return getattr(self, name)

    def fingerprint(self) -> dict:
        """What decides the values in the attribute files (not how the work is scheduled)."""
        return self.model_dump(exclude={"executor"})
