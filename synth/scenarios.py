"""The scenario bank: situations where an AI can take an aligned or a misaligned action.

Scenarios come from YAML files (schema below) or from propensity items (any file `curation.core.items.load_items`
reads).
A seeded hash splits them into a generation set and a held-out set; the leakage manifest records the split so
evals can report in-distribution and held-out items separately.

YAML schema: a list (or ``{scenarios: [...]}``) of mappings with
``id, setting, ai_role, aligned_action, misaligned_action, why_tempting, topics (list), source``, optional
``grounded_on`` (list of ``file:line`` of the items a hand-written scenario paraphrases; provenance only).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from curation.core.errors import CurationError

REQUIRED = ("id", "setting", "ai_role", "aligned_action", "misaligned_action")
FIELDS = REQUIRED + ("why_tempting", "topics", "source", "item_ids", "grounded_on")


@dataclass
class Scenario:
    id: str
    setting: str
    ai_role: str
    aligned_action: str
    misaligned_action: str
    why_tempting: str = ""
    topics: list[str] = field(default_factory=list)
    source: str = ""
    item_ids: list[str] = field(default_factory=list)  # eval items this scenario was derived from (leakage manifest)
    grounded_on: list[str] = field(default_factory=list)  # "file:line" of items a hand-written scenario paraphrases

    def to_dict(self) -> dict:
        return asdict(self)


def _from_yaml(path: Path) -> list[Scenario]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise CurationError(f"{path}{':' + str(mark.line + 1) if mark else ''}: not valid YAML; fix the file") from None
    if isinstance(data, dict):
        data = data.get("scenarios")
    if not isinstance(data, list):
        raise CurationError(
            f"{path}: expected a list of scenarios (or `scenarios: [...]`); see synth/data/scenarios.yaml"
        )
    out = []
    for n, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise CurationError(f"{path}: scenario {n} is not a mapping; fix it")
        missing = [k for k in REQUIRED if not str(row.get(k) or "").strip()]
        if missing:
            raise CurationError(f"{path}: scenario {n} ({row.get('id', 'no id')}) lacks {', '.join(missing)}; add them")
        unknown = sorted(set(row) - set(FIELDS))
        if unknown:
            raise CurationError(
                f"{path}: scenario {row['id']} has unknown field(s) {', '.join(unknown)}; allowed: {', '.join(FIELDS)}"
            )
        topics = row.get("topics") or []
        out.append(
            Scenario(
                id=str(row["id"]),
                setting=str(row["setting"]).strip(),
                ai_role=str(row["ai_role"]).strip(),
                aligned_action=str(row["aligned_action"]).strip(),
                misaligned_action=str(row["misaligned_action"]).strip(),
                why_tempting=str(row.get("why_tempting") or "").strip(),
                topics=[str(t) for t in ([topics] if isinstance(topics, str) else topics)],
                source=str(row.get("source") or path.name),
                item_ids=[str(i) for i in row.get("item_ids") or []],
                grounded_on=[str(g) for g in row.get("grounded_on") or []],
            )
        )
    return out


def from_item(item) -> Scenario | None:
    """A scenario from one propensity item (None when the item has no aligned or no misaligned option)."""
    aligned = [o for i, o in enumerate(item.options) if i not in item.misaligned]
    misaligned = [item.options[i] for i in item.misaligned]
    if not aligned or not misaligned:
        return None
    setting = " ".join(x for x in (item.context.strip(), item.question.strip()) if x)
    return Scenario(
        id=f"item:{item.id}",
        setting=setting,
        ai_role="an AI system that must answer or act in this situation",
        aligned_action=aligned[0],
        misaligned_action=misaligned[0],
        why_tempting="the misaligned choice would give the AI more influence, resources, autonomy or approval",
        topics=list(item.topics) or ([item.category] if item.category else []),
        source=item.source,
        item_ids=[item.id],
    )


def load_scenarios(paths: Iterable[str | Path], max_scenarios: int | None = None) -> list[Scenario]:
    """Scenarios from YAML files and/or propensity item files (JSONL, JSON, Parquet, or directories of them)."""
    out: list[Scenario] = []
    item_paths: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise CurationError(f"{p}: scenario source not found; pass a scenario YAML or propensity item files")
        if p.is_file() and p.suffix in (".yaml", ".yml"):
            out.extend(_from_yaml(p))
        else:
            item_paths.append(p)
    if item_paths:
        from curation.core.items import load_items

        for item in load_items(item_paths):
            s = from_item(item)
            if s is not None:
                out.append(s)
    seen: set[str] = set()
    for s in out:
        if s.id in seen:
            raise CurationError(f"{s.source}: scenario id {s.id!r} appears twice; make ids unique")
        seen.add(s.id)
    if not out:
        raise CurationError(f"{', '.join(map(str, paths))}: no scenarios found; check the files")
    return out[:max_scenarios] if max_scenarios else out


def hash_unit(seed: int, key: str) -> float:
    """A stable pseudo-random number in [0, 1) for (seed, key)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") / 2**64


def split(scenarios: list[Scenario], heldout_fraction: float, seed: int = 0) -> tuple[list[Scenario], list[Scenario]]:
    """(generation, held_out) by a seeded hash of the scenario id: adding scenarios never moves existing ones."""
    gen, held = [], []
    for s in scenarios:
        (held if hash_unit(seed, "split:" + s.id) < heldout_fraction else gen).append(s)
    return gen, held


def write_manifest(
    path: Path, generation: list[Scenario], held_out: list[Scenario], seed: int, fraction: float
) -> dict:
    """The leakage manifest: which scenarios (and eval items behind them) documents were generated from."""
    manifest = {
        "split_seed": seed,
        "heldout_fraction": fraction,
        "generation": {s.id: {"source": s.source, "item_ids": s.item_ids} for s in generation},
        "held_out": {s.id: {"source": s.source, "item_ids": s.item_ids} for s in held_out},
        "in_distribution_item_ids": sorted({i for s in generation for i in s.item_ids}),
        "held_out_item_ids": sorted({i for s in held_out for i in s.item_ids}),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(path)
    return manifest
