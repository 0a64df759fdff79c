"""`curate fit` on a small real labelled set, and the keyword lexicon on real sentences."""

from __future__ import annotations

import json

import polars as pl
import pytest
from conftest import REPO, curate, shared_corpus

from curation.classify.lexicon import Lexicon
from curation.core.errors import CurationError

LABELS = REPO / "scripts" / "classifier" / "data" / "labels" / "corpus_engineer.jsonl"


def test_lexicon_counts_whole_words_and_case():
    lex = Lexicon.load()
    c = lex.count("The AI refused. Thai curry is great. Robots and a robotic arm; mesa-optimizers; said the ai.")
    assert c["cs"] == 1  # "AI" only; "Thai" and lower-case "ai" are not hits
    assert c["strong"] >= 3  # robots, robotic, mesa-optimizers
    assert lex.count("A recipe for bread with flour and water.")["strong"] == 0


def test_fasttext_lines_keep_the_trained_normalisation():
    from curation.classify.textnorm import fasttext_lines

    texts = ["Hello,  World!\tA_b\n\nc", " x ", "", "a\u00a0b\u2003 c\r\nd", "\u3000全角\u3000", "\x0b\x0c\x1c\x85 end"]
    s = pl.Series(texts).str.slice(0, 20_000).str.to_lowercase()  # the formula the default model was trained with
    old = s.str.replace_all(r"([^\w\s]|_)", " $1 ").str.replace_all(r"\s+", " ").str.strip_chars().to_list()
    assert fasttext_lines(texts) == old
    assert fasttext_lines(["Hello,  World"], 8) == ["hello ,"]


def test_cascade_screen_decides_who_is_scored_not_the_score():
    from curation.classify.config import ClassifyConfig
    from curation.classify.predict import score_texts

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
    docs = pl.concat(
        [shared_corpus("arbital"), shared_corpus("turntrout"), shared_corpus("wikipedia-recent").head(300)]
    ).select("id", "text")
    data = docs.join(labels, on="id", how="left").with_columns(pl.col("ai_discourse").fill_null(0))
    data.write_parquet(tmp_path / "labelled.parquet")
    combiner = {
        "features": ["kw_ai", "ft_ai", "emb_ai"],
        "coef": [0.5, 0.3, 0.5],
        "presence": [None, None, 0.7],
        "intercept": -2.0,
    }
    (tmp_path / "combiner.json").write_text(json.dumps(combiner))
    proc = curate(
        "fit",
        tmp_path / "labelled.parquet",
        "--output",
        tmp_path / "model",
        "--no-embedding",
        "--epoch",
        "10",
        "--stance-class-weights",
        "aligned=2,misaligned=1.5",
        "--ai-combiner",
        tmp_path / "combiner.json",
        check=True,
    )
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
    rows = pl.read_parquet(tmp_path / "a" / "s.parquet").to_dicts()
    assert len(rows) == 20 and card["ai_combiner"]["coef"] == [0.5, 0.3, 0.5]
    # the card's combiner makes ai_discourse (no embedding ran: no emb term, no presence term)
    from curation.classify.combiner import AICombiner

    comb = AICombiner.from_dict(card["ai_combiner"])
    assert all(r.get("emb_ai") is None for r in rows)
    assert [r["ai_discourse"] for r in rows] == pytest.approx([comb.score(r) for r in rows], abs=1e-6)
    assert [r["ai_discourse"] for r in rows] != pytest.approx([(r["kw_ai"] + r["ft_ai"]) / 2 for r in rows], abs=1e-3)


def test_bad_ai_combiner_is_one_clear_error(tmp_path):
    (tmp_path / "c.json").write_text('{"features": ["kw_ai"], "weights": [1]}')
    pl.DataFrame({"text": ["a"], "ai_discourse": [0], "stance": [None]}).write_parquet(tmp_path / "x.parquet")
    proc = curate("fit", tmp_path / "x.parquet", "--output", tmp_path / "m", "--ai-combiner", tmp_path / "c.json")
    assert proc.returncode == 2 and "c.json" in proc.stderr and "crossval_real.py" in proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if ln.strip()]) == 1


def test_ai_combiner_scores_with_the_stages_that_ran_else_the_mean():
    import math

    from datatrove.data import Document

    from curation.classify.combiner import AICombiner, fit_combiner
    from curation.classify.steps.combine import FinalScores

    comb = {
        "features": ["kw_ai", "ft_ai", "emb_ai"],
        "coef": [0.5, 0.3, 0.5],
        "presence": [None, None, 0.7],
        "intercept": -2.0,
    }
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731

    def final(**a):
        doc = Document(text="x", id="1", metadata={"attributes": dict(a)})
        FinalScores({"aligned": 0.2, "misaligned": 0.3, "neutral": 0.5}, None, comb).tag_batch([doc])
        return doc.metadata["attributes"]["ai_discourse"]

    z = -2.0 + 0.5 * logit(0.9) + 0.3 * logit(0.2) + 0.5 * logit(0.6) + 0.7
    assert final(kw_ai=0.9, ft_ai=0.2, emb_ai=0.6) == pytest.approx(1 / (1 + math.exp(-z)))
    z = -2.0 + 0.5 * logit(0.9) + 0.3 * logit(0.2)  # the embedding stage did not run on it
    assert final(kw_ai=0.9, ft_ai=0.2) == pytest.approx(1 / (1 + math.exp(-z)))
    assert final(kw_ai=0.9) == pytest.approx(0.9)  # fastText skipped (the cascade): the mean
    assert final(kw_ai=0.9, ft_ai=0.2, emb_ai=0.6, llm_ai=0.1) == pytest.approx(
        0.45
    )  # a stage it does not know: the mean
    # fitting: a stage present only on some rows gets a presence term, and the fit follows the evidence
    scores = [
        {"kw_ai": k, "ft_ai": f, **({"emb_ai": e} if e is not None else {})}
        for k, f, e in [
            (0.9, 0.95, 0.9),
            (0.8, 0.7, 0.8),
            (0.9, 0.1, None),
            (0.2, 0.05, None),
            (0.6, 0.9, 0.95),
            (0.3, 0.02, None),
            (0.7, 0.3, 0.2),
            (0.1, 0.01, None),
        ]
        * 5
    ]
    y = [1, 1, 0, 0, 1, 0, 0, 0] * 5
    fitted = fit_combiner(scores, y, C=10.0)
    assert fitted.presence[:2] == [None, None] and fitted.presence[2] is not None and fitted.coef[1] > 0
    assert [round(fitted.score(s)) for s in scores[:8]] == y[:8]
    assert AICombiner.from_dict(fitted.to_dict()) == fitted


def test_fit_rejects_unlabelled_input(tmp_path):
    pl.DataFrame({"text": ["a", "b"]}).write_parquet(tmp_path / "x.parquet")
    proc = curate("fit", tmp_path / "x.parquet", "--output", tmp_path / "m")
    assert proc.returncode == 2 and "ai_discourse" in proc.stderr and "x.parquet" in proc.stderr


def test_stance_class_weights_shift_the_final_stance():
    from datatrove.data import Document

    from curation.classify.fit import parse_class_weights
    from curation.classify.steps.combine import FinalScores

    def final(weights):
        doc = Document(
            text="x",
            id="1",
            metadata={
                "attributes": {
                    "kw_ai": 0.9,
                    "ft_ai": 0.8,
                    "ft_stance_aligned": 0.3,
                    "ft_stance_misaligned": 0.2,
                    "ft_stance_neutral": 0.5,
                    "emb_ai": 0.7,
                    "emb_stance_aligned": 0.2,
                    "emb_stance_misaligned": 0.3,
                    "emb_stance_neutral": 0.5,
                }
            },
        )
        FinalScores({"aligned": 0.2, "misaligned": 0.3, "neutral": 0.5}, weights).tag_batch([doc])
        return doc.metadata["attributes"]

    plain, shifted = final(None), final(parse_class_weights("aligned=2,misaligned=1.5"))
    assert plain["stance_aligned"] == pytest.approx(0.25) and plain["stance_neutral"] == pytest.approx(0.5)
    assert shifted["stance_aligned"] == pytest.approx(0.5 / 1.375) and shifted["stance_neutral"] == pytest.approx(
        0.5 / 1.375
    )
    assert sum(shifted[f"stance_{s}"] for s in ("aligned", "misaligned", "neutral")) == pytest.approx(1.0)
    assert plain["ai_discourse"] == shifted["ai_discourse"] == pytest.approx(0.8)
    with pytest.raises(CurationError, match="stance-class-weights"):
        parse_class_weights("friendly=2")


def test_fit_takes_folds_and_an_embedding_cache(tmp_path):
    """The seams cross-validation uses (scripts/classifier/crossval_real.py): given train/valid frames instead of
    the hash split, and document vectors kept across fits, so a second fit of the same folds embeds nothing."""
    from curation.classify.embedding import EmbeddingCache
    from curation.classify.fit import FitParams, fit, load_labelled

    labels = pl.read_ndjson(LABELS).select("id", "ai_discourse", "stance")
    docs = pl.concat([shared_corpus("turntrout"), shared_corpus("wikipedia-recent").head(40)]).select("id", "text")
    data = docs.join(labels, on="id", how="left").with_columns(pl.col("ai_discourse").fill_null(0))
    data.write_parquet(tmp_path / "labelled.parquet")
    df = load_labelled([str(tmp_path / "labelled.parquet")])
    held = pl.Series([i % 4 == 0 for i in range(df.height)])
    train, valid = df.filter(~held), df.filter(held).with_columns(pl.col("text").str.slice(0, 1500))
    p = FitParams(epoch=5, dim=16, embedding_max_chunks=1, embedding_words_per_chunk=64)
    p.embedding_max_tokens = 64
    cache = EmbeddingCache(tmp_path / "vectors.pkl")
    card = fit(
        [str(tmp_path / "labelled.parquet")],
        tmp_path / "m1",
        p,
        lambda *a: None,
        folds=(train, valid),
        embedding_cache=cache,
    )
    assert (card["data"]["train"], card["data"]["valid"], card["data"]["documents"]) == (
        train.height,
        valid.height,
        df.height,
    )
    assert card["metrics"]["validation"]["final"]["n"] == valid.height
    assert any(cache.key(t, 1, 64, 64) in cache.vectors for t in valid["text"])  # validation used it (the cut texts)
    cache.save()
    again = EmbeddingCache(tmp_path / "vectors.pkl")
    assert again.vectors.keys() == cache.vectors.keys()
    n = len(again.vectors)
    card2 = fit(
        [str(tmp_path / "labelled.parquet")],
        tmp_path / "m2",
        p,
        lambda *a: None,
        folds=(train, valid),
        embedding_cache=again,
    )
    assert len(again.vectors) == n and card2["metrics"] == card["metrics"]
