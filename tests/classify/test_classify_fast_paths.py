"""The classify speed paths give the same numbers as the plain ones: dequantized fastText, Arrow-backed text batches,
the keyword counts on a polars Series, and the cascade screen's spread sample."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from conftest import shared_corpus

from curation.classify.fasttext_model import dequantized, label_prob, label_probs, load_fasttext, model_inputs
from curation.classify.models import resolve


@pytest.fixture(scope="module")
def real_texts() -> list[str]:
    return pl.concat([shared_corpus("arbital").head(60), shared_corpus("wikipedia-recent").head(60)])["text"].to_list()


@pytest.mark.parametrize("name", ["ai_fasttext", "stance_fasttext"])
def test_dequantized_default_models_predict_bit_identically(name, real_texts):
    path = resolve("default").file(name)
    quant = load_fasttext(path, dequantize=False)
    inp, out = dequantized(path)
    assert out.shape == (len(quant.labels), quant.get_dimension())
    rows = np.random.default_rng(0).choice(inp.shape[0], 2000, replace=False)
    assert np.array_equal(np.stack([quant.get_input_vector(int(i)) for i in rows]), inp[rows])
    dense = load_fasttext(path)
    lines = model_inputs(real_texts)
    labels = tuple(label.removeprefix("__label__") for label in quant.labels)
    assert label_probs(dense, lines, labels) == label_probs(quant, lines, labels)
    assert label_prob(dense, lines, labels[0]) == [p[labels[0]] for p in label_probs(quant, lines, labels)]


def test_dequantized_small_model_with_a_narrow_last_subquantizer(tmp_path, real_texts):
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None
    train = tmp_path / "train.txt"
    lines = model_inputs(real_texts, max_chars=2000)
    train.write_text("".join(f"__label__{'ai' if i % 3 else 'other'} {x}\n" for i, x in enumerate(lines)))
    # a small bucket (5000) makes this fastText build diverge at random (out-of-range n-gram rows?); 2M, as fit uses,
    # does not
    for attempt in range(8):
        try:
            model = fasttext.train_supervised(
                str(train), dim=7, epoch=2, wordNgrams=2, minCount=1, bucket=2_000_000, thread=1, verbose=0
            )
            if np.isfinite(model.get_input_matrix()).all() and np.isfinite(model.get_output_matrix()).all():
                break
            raise RuntimeError("Encountered NaN in the trained weights")
        except RuntimeError as e:
            if "NaN" not in str(e) or attempt == 7:
                raise
    model.quantize(input=str(train), cutoff=3000, retrain=False, qnorm=True, dsub=2)  # dim 7: last sub-quantizer 1 wide
    model.save_model(str(tmp_path / "m.ftz"))
    quant = load_fasttext(str(tmp_path / "m.ftz"), dequantize=False)
    inp, _ = dequantized(str(tmp_path / "m.ftz"))
    assert inp.shape[1] == 7
    assert np.array_equal(np.stack([quant.get_input_vector(i) for i in range(inp.shape[0])]), inp)
    dense = load_fasttext(str(tmp_path / "m.ftz"))
    assert label_probs(dense, lines, ("ai", "other")) == label_probs(quant, lines, ("ai", "other"))
    assert dequantized(str(train)) is None  # not a model file: left to fastText


def test_text_series_reads_the_readers_arrow_arrays(tmp_path, real_texts):
    from curation.classify.steps.base import TEXT_REF, text_series
    from curation.classify.steps.reader import ShardReader

    pl.DataFrame({"id": [str(i) for i in range(len(real_texts))], "text": real_texts}).write_parquet(
        tmp_path / "s.parquet"
    )
    reader = ShardReader(str(tmp_path), None, str(tmp_path / "out"), batch_size=25)  # several Arrow arrays
    docs = list(reader._read_parquet("s.parquet"))
    assert all(TEXT_REF in d.metadata for d in docs)
    assert text_series(docs).to_list() == real_texts
    subset = [docs[i] for i in (3, 4, 5, 30, 7, 99, 100, 26)]  # runs, gaps, out of order, across arrays
    assert text_series(subset).to_list() == [d.text for d in subset]
    assert text_series([]).to_list() == []
    docs[4].text = "rewritten by a later step"
    assert text_series(docs[:6]).to_list() == [d.text for d in docs[:6]]  # a stale reference is not used


def test_keyword_counts_of_a_series_equal_those_of_a_list(real_texts):
    from curation.classify.lexicon import Lexicon

    lex = Lexicon.load()
    a, b = lex.count_batch(real_texts), lex.count_batch(pl.Series(real_texts))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_spread_sample_takes_evenly_spaced_pieces():
    from curation.classify.textnorm import spread_sample

    long = "".join(chr(ord("a") + i % 26) for i in range(1000))
    got = spread_sample(pl.Series(["short text", long, long * 30]), chars=30, chunks=3, span=1000).to_list()
    assert got[0] == "short text"
    assert got[1] == " ".join([long[0:10], long[495:505], long[990:1000]])
    assert got[2] == got[1]  # only the first `span` characters count
    assert spread_sample(pl.Series([long]), chars=30, chunks=1).to_list() == [long[:30]]
