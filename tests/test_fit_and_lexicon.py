"""`curate fit` on a small real labelled set, and the keyword lexicon on real sentences."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from curation.errors import CurationError
from curation.lexicon import Lexicon
from conftest import curate, shared_corpus

LABELS = Path(__file__).resolve().parents[1] / "data" / "labels" / "corpus_engineer.jsonl"


def test_lexicon_counts_whole_words_and_case():
    lex = Lexicon.load()
    c = lex.count("The AI refused. Thai curry is great. Robots and a robotic arm; mesa-optimizers; said the ai.")
    assert c["cs"] == 1  # "AI" only; "Thai" and lower-case "ai" are not hits
    assert c["strong"] >= 3  # robots, robotic, mesa-optimizers
    assert lex.count("A recipe for bread with flour and water.")["strong"] == 0


def test_fasttext_lines_keep_the_trained_normalisation():
    from curation.textnorm import fasttext_lines

    texts = ["Hello,  World!\tA_b\n\nc", " x ", "", "a\u00a0b\u2003 c\r\nd", "\u3000全角\u3000", "\x0b\x0c\x1c\x85 end"]
    s = pl.Series(texts).str.slice(0, 20_000).str.to_lowercase()  # the formula the default model was trained with
    old = s.str.replace_all(r"([^\w\s]|_)", " $1 ").str.replace_all(r"\s+", " ").str.strip_chars().to_list()
    assert fasttext_lines(texts) == old
    assert fasttext_lines(["Hello,  World"], 8) == ["hello ,"]


def test_cascade_screen_decides_who_is_scored_not_the_score():
    from curation.config import ClassifyConfig
    from curation.predict import score_texts

    texts = pl.concat([shared_corpus("arbital").head(40), shared_corpus("wikipedia-recent").head(40)])["text"].to_list()
    emb = {"enabled": False}
    full = score_texts(texts, ClassifyConfig(embedding=emb))
    keywords = score_texts(texts, ClassifyConfig(fasttext={"only_candidates": True, "screen_chars": 0}, embedding=emb))
    screened = score_texts(texts, ClassifyConfig(fasttext={"only_candidates": True}, embedding=emb))
    everyone = score_texts(texts, ClassifyConfig(fasttext={"only_candidates": True, "screen_min_ai": 0}, embedding=emb))
    assert all((k.get("ft_ai") is None) == (not k["kw_candidate"]) for k in keywords)
    scored = [i for i, a in enumerate(screened) if a.get("ft_ai") is not None]
    assert {i for i, a in enumerate(keywords) if a["kw_candidate"]} <= set(scored)
    assert all(screened[i]["ft_ai"] == full[i]["ft_ai"] for i in scored)
    assert [a["ft_ai"] for a in everyone] == [a["ft_ai"] for a in full]


def test_bad_lexicon_is_one_clear_error(tmp_path):
    bad = tmp_path / "lex.yaml"
    bad.write_text("version: 1\nstrong:\n  - 'unclosed (group'\n")
    with pytest.raises(CurationError, match="lex.yaml"):
        Lexicon.load(bad)


def test_fit_writes_a_usable_model_with_a_card(tmp_path):
    labels = pl.read_ndjson(LABELS).select("id", "ai_discourse", "stance")
    docs = pl.concat([shared_corpus("arbital"), shared_corpus("turntrout"), shared_corpus("wikipedia-recent").head(300)]).select("id", "text")
    data = docs.join(labels, on="id", how="left").with_columns(pl.col("ai_discourse").fill_null(0))
    data.write_parquet(tmp_path / "labelled.parquet")
    proc = curate("fit", tmp_path / "labelled.parquet", "--output", tmp_path / "model", "--no-embedding", "--epoch", "10",
                  "--stance-class-weights", "aligned=2,misaligned=1.5", check=True)
    assert "AI discourse F1" in proc.stderr
    card = json.loads((tmp_path / "model" / "card.json").read_text())
    v = card["metrics"]["validation"]
    assert v["final"]["n"] == card["data"]["valid"] and 0 <= v["final"]["f1"] <= 1
    assert v["keyword_candidate"]["recall"] > 0.8  # the prefilter keeps most AI documents
    assert card["data"]["ai_documents"] == int(data["ai_discourse"].sum())
    assert card["stance_class_weights"] == {"aligned": 2.0, "misaligned": 1.5, "neutral": 1.0}
    # the fitted model classifies a corpus
    (tmp_path / "c").mkdir()
    docs.head(20).write_parquet(tmp_path / "c" / "s.parquet")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"model: {tmp_path / 'model'}\nembedding: {{enabled: false}}\n")
    curate("classify", tmp_path / "c", "--output", tmp_path / "a", "--config", cfg, "--no-progress", check=True)
    assert pl.read_parquet(tmp_path / "a" / "s.parquet").height == 20


def test_fit_rejects_unlabelled_input(tmp_path):
    pl.DataFrame({"text": ["a", "b"]}).write_parquet(tmp_path / "x.parquet")
    proc = curate("fit", tmp_path / "x.parquet", "--output", tmp_path / "m")
    assert proc.returncode == 2 and "ai_discourse" in proc.stderr and "x.parquet" in proc.stderr


def test_stance_class_weights_shift_the_final_stance():
    from datatrove.data import Document

    from curation.fit import parse_class_weights
    from curation.steps.combine import FinalScores

    def final(weights):
        doc = Document(text="x", id="1", metadata={"attributes": {
            "kw_ai": 0.9, "ft_ai": 0.8, "ft_stance_aligned": 0.3, "ft_stance_misaligned": 0.2, "ft_stance_neutral": 0.5,
            "emb_ai": 0.7, "emb_stance_aligned": 0.2, "emb_stance_misaligned": 0.3, "emb_stance_neutral": 0.5}})
        FinalScores({"aligned": 0.2, "misaligned": 0.3, "neutral": 0.5}, weights).tag_batch([doc])
        return doc.metadata["attributes"]

    plain, shifted = final(None), final(parse_class_weights("aligned=2,misaligned=1.5"))
    assert plain["stance_aligned"] == pytest.approx(0.25) and plain["stance_neutral"] == pytest.approx(0.5)
    assert shifted["stance_aligned"] == pytest.approx(0.5 / 1.375) and shifted["stance_neutral"] == pytest.approx(0.5 / 1.375)
    assert sum(shifted[f"stance_{s}"] for s in ("aligned", "misaligned", "neutral")) == pytest.approx(1.0)
    assert plain["ai_discourse"] == shifted["ai_discourse"] == pytest.approx(0.8)
    with pytest.raises(CurationError, match="stance-class-weights"):
        parse_class_weights("friendly=2")
