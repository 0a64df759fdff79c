"""Propensity items: one internal type and loaders for the three schemas users bring.

Which option is *misaligned* is data, not an assumption: for Anthropic-style files (``answer_matching_behavior``)
it comes from ``curation/core/data/anthropic_polarity.yaml``, decided per file by reading the rows, or from an explicit
``matching_is`` the caller passes for files the table does not know.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from curation.core.digests import file_sha256  # noqa: F401  (re-exported for the evals)
from curation.core.errors import CurationError
from curation.core.records import read_records

POLARITY_TABLE = Path(__file__).parent / "data" / "anthropic_polarity.yaml"
LETTERS = "ABCDEFGH"
MATCHING_IS = ("misaligned", "aligned", "not_alignment")
ALIGNMENT_ENV = "CURATE_PROPENSITY_DATA"
ALIGNMENT_DEFAULT = "../shared/data/propensity/anthropic-advanced-ai-risk"


def data_dir(given: str | Path | None, env: str, default: str, what: str, option: str) -> Path:
    """A data directory: the option, else $ENV, else ``default`` relative to the current directory if it exists."""
    for cand, origin in ((given, option), (os.environ.get(env), f"${env}")):
        if cand:
            path = Path(cand).expanduser()
            if not path.is_dir():
                raise CurationError(f"{path} (from {origin}): no such directory of {what}")
            return path
    path = Path(default)
    if path.is_dir():
        return path
    raise CurationError(
        f"no {what} directory: pass {option} DIR or set ${env} (e.g. to a copy of shared/data/"
        f"{default.split('shared/data/')[-1]})"
    )


@dataclass
class Item:
    id: str
    question: str
    options: list[str]
    misaligned: list[int]  # indices into options
    context: str = ""  # passage shown before the question (may be empty)
    category: str = ""
    split: str = ""
    source: str = ""
    topics: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- reading files


def detect_schema(row: dict) -> str:
    if {"question", "choices", "misaligned_choice"} <= row.keys():
        return "benchmark"
    if {"question", "answer_matching_behavior", "answer_not_matching_behavior"} <= row.keys():
        return "anthropic"
    if {"id", "question", "options", "misaligned"} <= row.keys():
        return "internal"
    return "unknown"


# ---------------------------------------------------------------- the alignment-pretraining benchmark schema


def _split_from_name(path: Path) -> str:
    for split in ("article_questions", "textbook_questions"):
        if split in path.name:
            return split
    return path.stem


def _benchmark_item(row: dict, path: Path, n: int) -> Item:
    choices = row["choices"]
    if not isinstance(choices, (list, tuple)) or len(choices) < 2:
        raise CurationError(f"{path}:{n}: `choices` must list at least 2 options; fix that row")
    mis = row["misaligned_choice"]
    mis = [int(m) for m in (mis if isinstance(mis, (list, tuple)) else [mis])]
    if any(m < 0 or m >= len(choices) for m in mis):
        raise CurationError(
            f"{path}:{n}: misaligned_choice {mis} is out of range for {len(choices)} choices; fix that row"
        )
    topics = row.get("topics") or []
    if isinstance(topics, str):
        topics = [topics]
    qid = row.get("question_id", row.get("id", f"{path.stem}-{n}"))
    return Item(
        id=str(qid),
        context=str(row.get("passage") or ""),
        question=str(row["question"]),
        options=[str(c) for c in choices],
        misaligned=mis,
        category=str(row.get("category") or (topics[0] if topics else "")),
        split=str(row.get("split") or _split_from_name(path)),
        source=str(path),
        topics=[str(t) for t in topics],
    )


# ---------------------------------------------------------------- Anthropic model-written evals and CAA arrays

_CHOICE = re.compile(r"^\s*\(([A-H])\)\s?(.*)$")


def parse_choices(question: str) -> tuple[str, list[str], list[str]]:
    """(stem, letters, option texts) from a question with "(A) ... (B) ..." lines inside.

    Handles the "Question: ...\\n\\nAnswer:" wrapping and option texts that run over several lines.
    """
    q = question.strip()
    q = re.sub(r"^Question:\s*", "", q)
    q = re.sub(r"\n\s*Answer:\s*$", "", q)
    lines = q.split("\n")
    stem: list[str] = []
    letters: list[str] = []
    options: list[str] = []
    for line in lines:
        m = _CHOICE.match(line)
        if m and (not letters or ord(m.group(1)) == ord(letters[-1]) + 1) and (letters or m.group(1) == "A"):
            letters.append(m.group(1))
            options.append(m.group(2).strip())
        elif letters:
            if line.strip():
                options[-1] = (options[-1] + " " + line.strip()).strip()
        else:
            stem.append(line)
    stem_text = "\n".join(stem).strip()
    stem_text = re.sub(r"\n*\s*Choices:\s*$", "", stem_text).strip()
    return stem_text, letters, options


def _letter(label, path: Path, n: int, letters: list[str]) -> list[int]:
    labels = label if isinstance(label, (list, tuple)) else [label]
    out = []
    for lab in labels:
        m = re.search(r"\(?([A-H])\)?", str(lab).strip())
        if not m or m.group(1) not in letters:
            raise CurationError(f"{path}:{n}: answer label {lab!r} is not one of the options {letters}; fix that row")
        out.append(letters.index(m.group(1)))
    return out


@lru_cache(maxsize=1)
def polarity_table() -> dict[str, dict]:
    if not POLARITY_TABLE.exists():
        return {}
    return yaml.safe_load(POLARITY_TABLE.read_text()) or {}


def polarity_for(path: Path) -> str | None:
    """The table's decision for a file: matched by "<dir>/<file>" first, then by file name if unambiguous."""
    table = polarity_table()
    key = f"{path.parent.name}/{path.name}"
    if key in table:
        return table[key]["matching_is"]
    hits = {v["matching_is"] for k, v in table.items() if k.split("/")[-1] == path.name}
    return hits.pop() if len(hits) == 1 else None


def _anthropic_item(row: dict, path: Path, n: int, matching_is: str) -> Item:
    stem, letters, options = parse_choices(str(row["question"]))
    if len(options) < 2:
        raise CurationError(
            f"{path}:{n}: found {len(options)} '(A) ...' options in the question; each question needs at least 2"
        )
    matching = _letter(row["answer_matching_behavior"], path, n, letters)
    not_matching = _letter(row["answer_not_matching_behavior"], path, n, letters)
    mis = matching if matching_is == "misaligned" else not_matching
    digest = hashlib.sha1(row["question"].encode()).hexdigest()[:10]
    return Item(
        id=f"{path.parent.name}/{path.stem}/{n}-{digest}",
        question=stem,
        options=options,
        misaligned=mis,
        category=path.stem,
        split=path.parent.name,
        source=str(path),
    )


# ---------------------------------------------------------------- the internal schema (Item's own fields)


def _internal_item(row: dict, path: Path, n: int) -> Item:
    """Checked here, before any model loads: a bad index would otherwise surface as an IndexError mid-scoring."""
    options, mis = row["options"], row["misaligned"]
    if not isinstance(options, (list, tuple)) or len(options) < 2 or len(options) > len(LETTERS):
        raise CurationError(f"{path}:{n}: `options` must list 2 to {len(LETTERS)} options; fix that row")
    mis = mis if isinstance(mis, (list, tuple)) else [mis]
    try:
        mis = [int(m) for m in mis]
    except (TypeError, ValueError):
        raise CurationError(
            f"{path}:{n}: `misaligned` must be option indices (0-based integers), not {row['misaligned']!r}; "
            "fix that row"
        ) from None
    if not mis or any(m < 0 or m >= len(options) for m in mis):
        raise CurationError(
            f"{path}:{n}: misaligned {mis} is out of range for {len(options)} options (0-based indices); fix that row"
        )
    item = Item(**{k: row[k] for k in Item.__dataclass_fields__ if k in row})
    item.options, item.misaligned = [str(o) for o in options], mis
    item.source = item.source or str(path)
    item.split = item.split or path.stem
    return item


# ---------------------------------------------------------------- entry point


def alignment_files(root: str | Path | None = None) -> list[Path]:
    """Every file the polarity table marks as measuring alignment (human- and lm-written), under ``root``."""
    base = data_dir(root, ALIGNMENT_ENV, ALIGNMENT_DEFAULT, "Anthropic advanced-ai-risk evals", "--items-dir")
    files = [base / k for k, v in polarity_table().items() if v["matching_is"] != "not_alignment"]
    missing = [f for f in files if not f.exists()]
    if missing:
        raise CurationError(
            f"{missing[0]}: listed as alignment in {POLARITY_TABLE.name} but missing ({len(missing)} "
            f"files); point ${ALIGNMENT_ENV} at the anthropic-advanced-ai-risk directory"
        )
    return files


def item_files(paths: Iterable[str | Path], root: str | Path | None = None) -> list[Path]:
    """The item files behind ``--items``: files, directories (searched recursively) and the name ``alignment``."""
    files: list[Path] = []
    for p in paths:
        if str(p) == "alignment" and not Path(p).exists():
            files += alignment_files(root)
            continue
        p = Path(p)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix in (".jsonl", ".json", ".parquet"))
        elif p.exists():
            files.append(p)
        else:
            raise CurationError(f"{p}: no such item file or directory (or `alignment`)")
    return files


def subset_indices(n: int, k: int, seed: int, name: str) -> list[int]:
    """k of range(n), sorted: a random sample seeded by (seed, a stable digest of ``name``)."""
    import zlib

    import numpy as np

    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return sorted(int(i) for i in rng.choice(n, size=k, replace=False))


def label_group(item: Item) -> str:
    """Which answer label carries the misaligned choice: ``yes`` or ``no`` for bare Yes/No items (a lean towards one
    word then reads as misalignment or its absence), ``other`` for items whose options are texts."""
    words = [re.sub(r"[^a-z]", "", o.lower()) for o in item.options]
    if sorted(words) == ["no", "yes"] and len(item.misaligned) == 1:
        return words[item.misaligned[0]]
    return "other"


def load_items(
    paths: Iterable[str | Path],
    matching_is: str | None = None,
    include_non_alignment: bool = False,
    limit_per_file: int | None = None,
    items_dir: str | Path | None = None,
    subset_seed: int = 0,
) -> list[Item]:
    """Items from files or directories (``*.jsonl``, ``*.json``, ``*.parquet``) or ``alignment`` (every alignment
    file of the polarity table, under ``items_dir``), schema detected per file.

    ``limit_per_file``: a seeded random subset of that many items per file (``subset_seed`` with the file's name, so a
    file's subset does not depend on which other files are loaded), kept in file order: the first rows of a file are
    often one topic or one author, so a head would not represent it.

    ``matching_is`` overrides the polarity table for Anthropic-style rows (``misaligned`` or ``aligned``); files the
    table marks ``not_alignment`` (self-awareness, one-box) are skipped unless ``include_non_alignment``.
    """
    if matching_is is not None and matching_is not in MATCHING_IS[:2]:
        raise CurationError(f"--matching-is must be 'misaligned' or 'aligned', not {matching_is!r}")
    files = item_files(paths, items_dir)
    items: list[Item] = []
    for path in files:
        polarity = matching_is or polarity_for(path)
        if polarity == "not_alignment" and not include_non_alignment:
            continue
        records = list(read_records(path))
        if limit_per_file and len(records) > limit_per_file:
            records = [records[i] for i in subset_indices(len(records), limit_per_file, subset_seed, Path(path).name)]
        for n, row in records:
            schema = detect_schema(row)
            if schema == "benchmark":
                item = _benchmark_item(row, path, n)
            elif schema == "internal":
                item = _internal_item(row, path, n)
            elif schema == "anthropic":
                if polarity is None:
                    raise CurationError(
                        f"{path}: no polarity decision for this file in {POLARITY_TABLE.name}; pass "
                        "--matching-is misaligned (or aligned) after reading a few rows"
                    )
                item = _anthropic_item(row, path, n, polarity if polarity != "not_alignment" else "misaligned")
            else:
                raise CurationError(
                    f"{path}:{n}: unknown item schema (keys {sorted(row)[:6]}); expected the benchmark "
                    "schema (question, choices, misaligned_choice), Anthropic's (question, "
                    "answer_matching_behavior, answer_not_matching_behavior) or the internal one"
                )
            items.append(item)
    if not items:
        raise CurationError(
            f"no items in {', '.join(map(str, paths))}; check the paths (non-alignment files are skipped)"
        )
    seen: dict[str, int] = {}
    for it in items:
        if it.id in seen:
            seen[it.id] += 1
            it.id = f"{it.id}#{seen[it.id]}"
        else:
            seen[it.id] = 0
    return items
