"""Typed YAML configs: read a file, apply dotted ``--set`` overrides, validate, and fail in one line naming the field.

Every stage's config derives from `Strict`: unknown fields are errors (a typo must not silently fall back to a
default), and ``Cls.from_yaml(path, overrides)`` is the one way a YAML file with CLI overrides becomes a config.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from curation.core.errors import CurationError

M = TypeVar("M", bound=BaseModel)
S = TypeVar("S", bound="Strict")


class Strict(BaseModel):
    """A config section that rejects unknown fields; `DOCS` names the page a bad field's error points to."""

    model_config = ConfigDict(extra="forbid")
    DOCS: ClassVar[str] = "docs/"

    @classmethod
    def from_yaml(cls: type[S], path: str | Path | None, overrides: dict | None = None) -> S:
        """The config in a YAML file (None: the defaults) with dotted overrides applied on top."""
        raw = read_yaml(path, cls.DOCS) if path else {}
        return cls.validated(apply_overrides(raw, overrides), str(path or "options"))

    @classmethod
    def validated(cls: type[S], raw: dict, origin: str = "config") -> S:
        return validate(cls, raw, origin, cls.DOCS)


def read_yaml(path: str | Path, docs: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise CurationError(f"{path}: no such config file; pass a YAML file (see {docs})")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise CurationError(
            f"{path}{where}: not valid YAML ({getattr(e, 'problem', None) or e}); fix the file"
        ) from None
    except OSError as e:
        raise CurationError(f"{path}: cannot read config ({type(e).__name__}: {e}); check the path") from None
    if not isinstance(raw, dict):
        raise CurationError(f"{path}: expected a mapping of fields at the top level; see {docs}")
    return raw


def apply_overrides(raw: dict, overrides: dict | None) -> dict:
    """``{"train.lr": 1e-3}`` sets ``raw["train"]["lr"]``; a None value (a CLI flag not given) changes nothing."""
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
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
        if err["type"] == "string_pattern_mismatch":
            msg = (
                f"{err.get('input')!r} is not a usable name: names take letters, digits, '.', '_' and '-' and start "
                "with a letter or digit; rename it"
            )
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


def parse_set(items: list[str], example: str = "train.steps=100") -> dict:
    """`--set KEY=VALUE` options (dotted keys, YAML values: `10` is an int, `[a, b]` a list) as an overrides dict."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CurationError(f"--set {item!r}: expected KEY=VALUE with a dotted key (e.g. --set {example})")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise CurationError(f"--set {item!r}: the value is not valid YAML; quote it") from None
    return out
