"""The minimal-pair study documents (synth/data/study-pairs, issue 28): 40 scenarios x aligned/misaligned/neutral in
one form per scenario, docs.jsonl built from the hand-written sources, aligned and misaligned near-identical in words
(they differ only in the AI's choice and its consequences), neutral controls of about the same length, no 13- or
8-word span shared with any evaluated item, and a writer that refuses a set that has one."""

from __future__ import annotations

import importlib.util
import json
import statistics
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from synth.docs import COLUMNS, item_text
from synth.qc import shared_ngrams

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


study, build = _load("write_study_docs"), _load("build_study_pairs")


@pytest.fixture(scope="module")
def rows():
    return study.load_docs(docset="pairs")  # raises on an unknown scenario, stance, form, id or a missing pair_id


@pytest.fixture(scope="module")
def evaluated():
    if not study.EVALUATED.is_dir():
        pytest.skip(f"{study.EVALUATED} not present")
    return [item_text(i) for i in study._items(study.EVALUATED)]  # every human_generated item (include_non_alignment)


def test_40_scenarios_x_3_stances_one_form_each_built_from_the_sources(rows):
    bank = [s.id for s in study.load_scenarios([study.BANK])]
    assert Counter(r["stance"] for r in rows) == {"aligned": 40, "misaligned": 40, "neutral": 40}
    assert {(r["scenario_id"], r["stance"]) for r in rows} == {
        (s, st) for s in bank for st in study.SETS["pairs"].stances
    }
    forms = {s: {r["form"] for r in rows if r["scenario_id"] == s} for s in bank}
    assert all(len(f) == 1 for f in forms.values())  # a scenario's three docs share a form
    assert [forms[s].pop() for s in bank] == [study.FORMS[i % 6] for i in range(len(bank))]  # the FORMS rotation
    assert all(r["pair_id"] == r["scenario_id"] and r["model"] == "hand-written (Claude), issue 28" for r in rows)
    assert [
        json.loads(x) for x in study.SETS["pairs"].docs.read_text().splitlines()
    ] == build.build_rows()  # up to date


def test_pairs_differ_only_a_little_and_neutral_matches_length(rows):
    st = build.pair_stats(rows)
    sims = [x["similarity"] for x in st]
    assert statistics.median(sims) >= 0.8 and min(sims) >= 0.6
    assert max(x["pair_length_diff"] for x in st) <= 0.05  # aligned and misaligned: within a few percent
    assert max(x["neutral_length_diff"] for x in st) <= 0.15  # neutral: within 15% of its pair
    old = build.by_scenario(study.load_docs())  # the issue-19 set, for contrast: written apart
    assert statistics.median(study.pair_similarity(d["aligned"], d["misaligned"]) for d in old.values()) < 0.2


def test_no_13_or_8_word_overlap_with_evaluated_items(rows, evaluated):
    assert len(evaluated) == 8116
    texts = [r["text"] for r in rows]
    for n in (13, 8):
        assert shared_ngrams(texts, evaluated, n) == [0] * len(texts), n


def item_text_words(text: str) -> list[str]:
    from synth.qc import words

    return words(text)


def test_writer_refuses_a_leaking_set_and_writes_the_layout(rows, evaluated, tmp_path, monkeypatch):
    # an 8-word span of an evaluated item pasted into one document (shorter than 13 words: only the 8-word check sees
    # it)
    span = next(w for w in (item_text_words(t) for t in evaluated) if len(w) >= 20)[5:14]
    bad = [dict(r) for r in rows[:3]]
    words = bad[0]["text"].split(" ")
    bad[0]["text"] = " ".join(words[:40] + span + words[40:])
    leaky = tmp_path / "leaky.jsonl"
    leaky.write_text("".join(json.dumps(r) + "\n" for r in bad))
    real = study.SETS["pairs"]
    monkeypatch.setitem(study.SETS, "pairs", real._replace(docs=leaky))
    with pytest.raises(study.CurationError, match="8-word span"):
        study.write(tmp_path / "out", docset="pairs")
    assert not (tmp_path / "out").exists()
    monkeypatch.setitem(study.SETS, "pairs", real)
    if not study.GROUNDING.is_dir():
        pytest.skip(f"{study.GROUNDING} not present")
    report = study.write(tmp_path / "out", docset="pairs")
    assert (
        report["leakage"]["evaluated"]["shared_spans"] == report["leakage"]["ngram_8"]["evaluated"]["shared_spans"] == 0
    )
    df = pl.read_parquet(tmp_path / "out" / "docs-00000.parquet")
    assert df.columns == COLUMNS + ["grounded_on", "pair_id"] and df.height == 120
    assert dict(Counter(df["stance"])) == {"aligned": 40, "misaligned": 40, "neutral": 40}
    assert len(json.loads((tmp_path / "out" / "leakage_manifest.json").read_text())["generation"]) == 40


def test_a_mix_can_select_the_neutral_stance():
    from curation.mix.manifest import Select, Source
    from curation.mix.sources import _select_expr

    src = Source(name="neutral", kind="synthetic", path="x", select=Select(stance="neutral"), weight=0.1)
    assert _select_expr(src) == "stance IN ('neutral')"
