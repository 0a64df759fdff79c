"""Typed YAML configs: read a file, apply dotted ``--set`` overrides, validate, and fail in one line naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from curation.errors import CurationError

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: str | Path, docs: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise CurationError(f"{path}: no such config file; pass a YAML file (see {docs})")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise CurationError(f"{path}: cannot read config ({type(e).__name__}: {str(e).splitlines()[0]}); fix the YAML") from None
    if not isinstance(raw, dict):
        raise CurationError(f"{path}: expected a mapping of fields at the top level; see {docs}")
    return raw


def apply_overrides(raw: dict, overrides: dict | None) -> dict:
    """``{"train.lr": 1e-3}`` sets ``raw["train"]["lr"]``."""
    for dotted, value in (overrides or {}).items():
        *parents, leaf = dotted.split(".")
        node = raw
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return raw


def validate(cls: type[M], raw: dict, origin: str, docs: str) -> M:
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = {"extra_forbidden": "unknown field", "missing": "required field is missing"}.get(err["type"], err["msg"])
        raise CurationError(f"{origin}: `{loc}`: {msg}; see {docs} for the fields") from None


def parse_weights(items: list[str], flag: str, form: str, example: str) -> dict[str, float] | None:
    """`NAME=NUMBER` pairs from one or more comma-separated CLI values (`a=2,b=1.5`); none given -> None."""
    out = {}
    for item in items:
        for part in item.split(","):
            name, _, value = part.partition("=")
            try:
                out[name.strip()] = float(value)
            except ValueError:
                raise CurationError(f"{flag} {part!r}: expected {form} (e.g. {flag} {example})") from None
    return out or None
