"""The AI-term lexicon (a YAML file users may replace) compiled into counting regular expressions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml

DEFAULT_LEXICON = Path(__file__).with_name("ai_terms.yaml")


@dataclass(frozen=True)
class Lexicon:
    version: int
    strong: tuple[str, ...]
    case_sensitive: tuple[str, ...]
    weak: tuple[str, ...]
    path: str = str(DEFAULT_LEXICON)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Lexicon":
        path = Path(path or DEFAULT_LEXICON)
        raw = yaml.safe_load(path.read_text())
        return cls(
            version=int(raw.get("version", 0)),
            strong=tuple(raw.get("strong", [])),
            case_sensitive=tuple(raw.get("case_sensitive", [])),
            weak=tuple(raw.get("weak", [])),
            path=str(path),
        )

    @staticmethod
    def _compile(terms: tuple[str, ...], flags: int) -> re.Pattern | None:
        return re.compile(r"\b(?:" + "|".join(f"(?:{t})" for t in terms) + r")\b", flags) if terms else None

    @cached_property
    def patterns(self) -> dict[str, re.Pattern | None]:
        return {
            "strong": self._compile(self.strong, re.IGNORECASE),
            "cs": self._compile(self.case_sensitive, 0),
            "weak": self._compile(self.weak, re.IGNORECASE),
        }

    def count(self, text: str) -> dict[str, int]:
        """Hit counts per term group, plus the word count the density features divide by."""
        out = {name: (len(p.findall(text)) if p else 0) for name, p in self.patterns.items()}
        out["words"] = text.count(" ") + 1
        return out

    def __getstate__(self):  # compiled patterns are rebuilt lazily in each worker
        state = dict(self.__dict__)
        state.pop("patterns", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
