"""Where classifier model sets live and what is in them: the shipped default, and any a user trained or installed."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

SHIPPED_ROOT = Path(__file__).parent / "models"
CARD = "card.json"


def installed_root() -> Path:
    return Path(os.environ.get("CURATE_MODELS_DIR", Path.home() / ".cache" / "alignment-pretraining" / "models"))


@dataclass(frozen=True)
class ModelSet:
    """A directory written by `curate fit`: fastText models, an embedding head, and a card describing them."""

    name: str
    path: Path
    card: dict

    def file(self, key: str) -> str | None:
        rel = self.card.get("files", {}).get(key)
        return str(self.path / rel) if rel and (self.path / rel).exists() else None

    @property
    def keyword_calibration(self) -> dict | None:
        return self.card.get("keyword_calibration")

    @property
    def stance_prior(self) -> dict[str, float]:
        return self.card.get("stance_prior") or {"aligned": 1 / 3, "misaligned": 1 / 3, "neutral": 1 / 3}

    @property
    def stance_class_weights(self) -> dict[str, float] | None:
        return self.card.get("stance_class_weights")

    @property
    def ai_combiner(self) -> dict | None:
        return self.card.get("ai_combiner")

    @property
    def embedding_window(self) -> dict:
        """The windows the embedding head was trained on (cards before `embedding_window`: 4 of 180 words, 256
        tokens)."""
        w = self.card.get("embedding_window") or {}
        return {
            "words_per_chunk": w.get("words_per_chunk", 180),
            "max_chunks": w.get("max_chunks", self.card.get("params", {}).get("embedding_max_chunks", 4)),
            "max_tokens": w.get("max_tokens"),
        }

    def summary(self, origin: str) -> dict:
        files = {k: str(self.path / v) for k, v in self.card.get("files", {}).items()}
        return {
            "name": self.name,
            "origin": origin,
            "kind": self.card.get("kind"),
            "labels": self.card.get("labels"),
            "path": str(self.path),
            "files": files,
            "metrics": self.card.get("metrics", {}).get("validation"),
        }


def load(path: Path, name: str | None = None) -> ModelSet:
    card_path = path / CARD
    if not card_path.is_file():
        from curation.core.errors import CurationError

        raise CurationError(
            f"{path}: no {CARD} here, so it is not a model set; train one with `curate fit` or pass --model default"
        )
    return ModelSet(name or path.name, path, json.loads(card_path.read_text()))


def resolve(model: str = "default") -> ModelSet:
    """A name (shipped or installed) or a path to a model directory."""
    for candidate in (Path(model), SHIPPED_ROOT / model, installed_root() / model):
        if (candidate / CARD).is_file():
            return load(candidate, model if candidate != Path(model) else candidate.name)
    from curation.core.errors import CurationError

    known = ", ".join(m["name"] for m in list_models()) or "none"
    raise CurationError(f"model `{model}` not found (known: {known}); pass a directory written by `curate fit`")


def list_models() -> list[dict]:
    out = []
    for origin, root in (("shipped", SHIPPED_ROOT), ("installed", installed_root())):
        if root.is_dir():
            for d in sorted(root.iterdir()):
                if (d / CARD).is_file():
                    out.append(load(d).summary(origin))
    return out
