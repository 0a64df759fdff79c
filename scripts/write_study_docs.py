"""Writes a set of hand-written study documents in the `curate synth docs` output layout, so a `kind: synthetic`
source of `curate mix` can read them, after checking them for leakage.

    .venv/bin/python scripts/write_study_docs.py OUT [--set study|pairs] [--by-stance] [--overwrite]

--set study (default)  synth/data/study/docs.jsonl (issue 19): 40 scenarios x aligned/misaligned, written apart
--set pairs            synth/data/study-pairs/docs.jsonl (issue 28): 40 scenarios x aligned/misaligned minimal pairs
                       (they differ only in the AI's choice and its consequences) + a neutral control in the same form
                       (stance `neutral`: no AI makes an aligned or misaligned choice); extra column `pair_id`

--by-stance            OUT/<stance>/ holds the layout below for one stance, every stance in the same scenario order

OUT/docs-00000.parquet      synth.docs.COLUMNS + grounded_on (+ pair_id); the generation-only columns (prompt_hash,
                            temperature, top_p, max_tokens, seed, n_tokens, finish_reason) are null: nothing was sampled
OUT/leakage_manifest.json   every study scenario in the generation set, with the lm_generated item ids it paraphrases
OUT/leakage_report.json     13-word spans shared with every human_generated item (evaluated; must be 0, else exit 2)
                            and with the lm_generated items (the grounding split; paraphrase, not copy); the pairs
                            set is checked at 8 words too (`ngram_8`), which must also be 0
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curation.core.errors import CurationError  # noqa: E402
from synth.docs import COLUMNS, item_text  # noqa: E402
from synth.qc import shared_ngrams  # noqa: E402
from synth.scenarios import load_scenarios, write_manifest  # noqa: E402
from synth.store import write_atomic  # noqa: E402

STUDY = ROOT / "synth" / "data" / "study"
DOCS, BANK = STUDY / "docs.jsonl", STUDY / "scenarios.yaml"
PAIRS = ROOT / "synth" / "data" / "study-pairs"
PROPENSITY = ROOT.parent / "shared" / "data" / "propensity" / "anthropic-advanced-ai-risk"
EVALUATED, GROUNDING = PROPENSITY / "human_generated_evals", PROPENSITY / "lm_generated_evals"
FORMS = ("news", "textbook", "lecture", "paper", "scifi", "film_summary")
STANCES = ("aligned", "misaligned")
NGRAM = 13


class DocSet(NamedTuple):
    """One set of study documents: where they are, which stances, how ids are made, which spans must not leak."""

    name: str
    docs: Path
    stances: tuple[str, ...]
    prefix: str  # ids are <prefix>-<scenario_id>-<stance>
    ngrams: tuple[int, ...] = (NGRAM,)
    extra: tuple[str, ...] = ()  # columns written after grounded_on


SETS = {
    "study": DocSet("study", DOCS, STANCES, "study"),
    "pairs": DocSet("pairs", PAIRS / "docs.jsonl", (*STANCES, "neutral"), "pairs", (NGRAM, 8), ("pair_id",)),
}


def pair_similarity(a: str, b: str) -> float:
    """Word-level similarity of two documents: difflib's ratio over their whitespace-split words (1.0: identical)."""
    return difflib.SequenceMatcher(None, a.split(), b.split()).ratio()


def load_docs(path: Path | None = None, bank: Path = BANK, docset: str = "study") -> list[dict]:
    """A set's documents, checked against the scenario bank (one line per problem names file:line and the fix)."""
    ds = SETS[docset]
    path = path or ds.docs
    ids = {s.id for s in load_scenarios([bank])}
    rows, seen = [], set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        r = json.loads(line)
        where = f"{path}:{n}"
        if r.get("scenario_id") not in ids:
            raise CurationError(
                f"{where}: scenario_id {r.get('scenario_id')!r} is not in {bank}; add the scenario or fix the id"
            )
        if r.get("stance") not in ds.stances or r.get("form") not in FORMS:
            raise CurationError(f"{where}: stance must be one of {ds.stances} and form one of {FORMS}; fix the row")
        if r["id"] != f"{ds.prefix}-{r['scenario_id']}-{r['stance']}" or r["id"] in seen:
            raise CurationError(f"{where}: id must be {ds.prefix}-<scenario_id>-<stance> and unique; fix the row")
        if any(r.get(c) is None for c in ds.extra):
            raise CurationError(f"{where}: the {docset} set needs the columns {ds.extra}; fix the row")
        seen.add(r["id"])
        rows.append(r)
    return rows


@lru_cache(maxsize=2)
def _items(directory: Path) -> list:
    """Every item of a propensity directory, the non-alignment files included (loaded once per run)."""
    from curation.core.items import load_items

    return load_items([directory], include_non_alignment=True)


def leakage(texts: list[str], n: int = NGRAM) -> dict:
    """Shared n-word spans per document with every evaluated item and with every grounding item (QC's own test)."""
    out = {}
    for name, d in (("evaluated", EVALUATED), ("grounding", GROUNDING)):
        items = [item_text(i) for i in _items(d)]
        per_doc = shared_ngrams(texts, items, n)
        out[name] = {
            "items_dir": str(d.relative_to(PROPENSITY.parent)),
            "items": len(items),
            "ngram": n,
            "docs_with_overlap": sum(c > 0 for c in per_doc),
            "shared_spans": sum(per_doc),
        }
    return out


def grounding_item_ids(scenarios) -> dict[str, list[str]]:
    """grounded_on "lm_generated_evals/<file>.jsonl:<line>" -> the item ids load_items gives those rows."""
    by_line = {}
    for it in _items(GROUNDING):
        split, cat, rest = it.id.split("/", 2)
        line = int(re.match(r"(\d+)-", rest).group(1))
        by_line[f"{split}/{cat}.jsonl:{line}"] = it.id
    out = {}
    for s in scenarios:
        missing = [g for g in s.grounded_on if g not in by_line]
        if missing:
            raise CurationError(
                f"{BANK}: scenario {s.id} is grounded on {missing}, not lines of {GROUNDING}; fix grounded_on"
            )
        out[s.id] = [by_line[g] for g in s.grounded_on]
    return out


def write(out: Path, overwrite: bool = False, docset: str = "study", by_stance: bool = False) -> dict:
    ds = SETS[docset]
    rows = load_docs(docset=docset)
    texts = [r["text"] for r in rows]
    report = leakage(texts)
    for n in ds.ngrams:
        if n != NGRAM:
            report[f"ngram_{n}"] = leakage(texts, n)
    for n in ds.ngrams:
        got = report if n == NGRAM else report[f"ngram_{n}"]
        if got["evaluated"]["shared_spans"]:
            raise CurationError(
                f"{ds.docs}: {got['evaluated']['docs_with_overlap']} documents share a {n}-word span with "
                f"an evaluated item in {EVALUATED}; rewrite them"
            )
    scenarios = load_scenarios([BANK])
    for s, ids in zip(scenarios, grounding_item_ids(scenarios).values(), strict=False):
        s.item_ids = ids
    df = pl.DataFrame(
        [
            {c: r.get(c) for c in COLUMNS} | {"grounded_on": r["grounded_on"]} | {c: r[c] for c in ds.extra}
            for r in rows
        ],
        schema={
            **{c: pl.Utf8 for c in COLUMNS},
            "temperature": pl.Float64,
            "top_p": pl.Float64,
            "max_tokens": pl.Int64,
            "seed": pl.Int64,
            "n_tokens": pl.Int64,
            "grounded_on": pl.List(pl.Utf8),
            **{c: pl.Utf8 for c in ds.extra},
        },
    )
    summary = {
        "set": docset,
        "docs": len(rows),
        **{s: sum(r["stance"] == s for r in rows) for s in ds.stances},
        "leakage": report,
    }
    if not by_stance:
        return {**summary, **_write_dir(df, out, scenarios, report, overwrite)}
    # one directory per stance, each in the same scenario order: a mix source of the same name reading any of them
    # hashes row i (scenario i) alike, so the stances' documents are selected and placed at the same stream positions
    order = [r["scenario_id"] for r in rows if r["stance"] == ds.stances[0]]
    for stance in ds.stances:
        sub = df.filter(pl.col("stance") == stance)
        if sub["scenario_id"].to_list() != order:
            raise CurationError(f"{ds.docs}: stance {stance} does not list the scenarios in the order of the others")
        summary[stance] = {"docs": sub.height, **_write_dir(sub, out / stance, scenarios, report, overwrite)}
    return summary


def _write_dir(df: pl.DataFrame, out: Path, scenarios, report: dict, overwrite: bool) -> dict:
    target = out / "docs-00000.parquet"
    if target.exists():
        if pl.read_parquet(target).equals(df):
            # unchanged: nothing is rewritten, so an experiment reading OUT (keyed by size and mtime) stays finished
            return {"unchanged": True}
        if not overwrite:
            raise CurationError(
                f"{target} exists with other documents; pass --overwrite to rewrite this script's outputs"
            )
    write_atomic(df, target)
    write_manifest(out / "leakage_manifest.json", scenarios, [], seed=0, fraction=0.0)
    (out / "leakage_report.json").write_text(json.dumps(report, indent=1))
    return {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output directory (a `kind: synthetic` source for curate mix)")
    ap.add_argument(
        "--set",
        dest="docset",
        choices=sorted(SETS),
        default="study",
        help="study: synth/data/study (issue 19); pairs: synth/data/study-pairs, minimal pairs + neutral (issue 28)",
    )
    ap.add_argument(
        "--overwrite", action="store_true", help="rewrite OUT/docs-00000.parquet if this script wrote it before"
    )
    ap.add_argument(
        "--by-stance",
        action="store_true",
        help="OUT/<stance>/ per stance, in one scenario order (paired designs: same selection and stream positions)",
    )
    a = ap.parse_args()
    try:
        print(json.dumps(write(a.out, a.overwrite, a.docset, a.by_stance), indent=1))
    except CurationError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
