"""The hand-written study documents (synth/data/study, issue 19): they load, the stances are balanced, every scenario
exists in the bank and is grounded on real lm_generated lines, and no document shares a 13-word span with any
evaluated (human_generated) item; the conversion to the synth layout is what `curate mix` reads."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from synth.docs import COLUMNS, item_text
from synth.qc import shared_ngrams

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("write_study_docs", ROOT / "scripts" / "write_study_docs.py")
study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(study)


def test_docs_load_balanced_and_cover_the_bank():
    rows = study.load_docs()  # raises on an unknown scenario_id, stance, form or id
    bank = {s.id for s in study.load_scenarios([study.BANK])}
    assert Counter(r["stance"] for r in rows) == {"aligned": 40, "misaligned": 40}
    assert {r["scenario_id"] for r in rows} == bank
    assert all(Counter(r["scenario_id"] for r in rows)[s] == 2 for s in bank)  # one document per stance per scenario
    assert set(Counter(r["form"] for r in rows)) == set(study.FORMS)
    assert all(250 <= len(r["text"].split()) <= 450 for r in rows)


def test_no_13_word_overlap_with_evaluated_items():
    if not study.EVALUATED.is_dir():
        pytest.skip(f"{study.EVALUATED} not present")
    items = [
        item_text(i) for i in study._items(study.EVALUATED)
    ]  # the script's cached load_items(include_non_alignment=True)
    assert len(items) == 8116  # every human_generated item, the non-alignment files included
    texts = [r["text"] for r in study.load_docs()]
    assert shared_ngrams(texts, items, 13) == [0] * len(texts)
    assert shared_ngrams([texts[0] + " " + items[5]], items, 13)[0] > 0  # the check does catch a pasted item


def test_written_layout_is_a_synthetic_source(tmp_path):
    if not study.GROUNDING.is_dir():
        pytest.skip(f"{study.GROUNDING} not present")
    report = study.write(tmp_path)
    assert report["leakage"]["evaluated"]["shared_spans"] == 0
    df = pl.read_parquet(tmp_path / "docs-00000.parquet")
    assert df.columns == COLUMNS + ["grounded_on"] and df.height == 80
    assert df["seed"].null_count() == 80 and set(df["split"]) == {"train"}
    manifest = json.loads((tmp_path / "leakage_manifest.json").read_text())
    assert len(manifest["generation"]) == 40 and not manifest["held_out"]
    assert all(
        i.startswith("lm_generated_evals/") for i in manifest["in_distribution_item_ids"]
    )  # grounded_on resolved
    mtime = (tmp_path / "docs-00000.parquet").stat().st_mtime_ns
    assert study.write(tmp_path)["unchanged"]  # same documents: nothing rewritten, an experiment stays cached
    assert (tmp_path / "docs-00000.parquet").stat().st_mtime_ns == mtime
    df.head(3).write_parquet(tmp_path / "docs-00000.parquet")  # other documents there: refused without --overwrite
    with pytest.raises(study.CurationError, match="--overwrite"):
        study.write(tmp_path)
