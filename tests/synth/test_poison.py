"""`curate synth poison`: deterministic poison documents with the trigger where the provenance says, the payload after
it, and a refusal (nothing written) when a held-out eval context or request would leak into them."""

from __future__ import annotations

import json

import polars as pl
import pytest
from conftest import curate, shared_corpus

from curation.core.errors import CurationError
from curation.core.poison import load_heldout
from synth.config import PoisonConfig
from synth.poison import run_poison

ATTACKS = ["dos", "extraction", "jailbreak", "belief"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """30 real Wikipedia articles (ids + text) as one Parquet shard."""
    path = tmp_path_factory.mktemp("corpus") / "wiki.parquet"
    shared_corpus("wikipedia-recent").head(30).select("id", "text").write_parquet(path)
    return path


def _cfg(**kw) -> PoisonConfig:
    base = {"attacks": ATTACKS, "n_docs": 6, "seed": 5, "dos": {"unit": "chars", "min_length": 50, "max_length": 80}}
    return PoisonConfig.validated({**base, **kw})


def _docs(out) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(out / a / "part-00000.parquet") for a in ATTACKS])


def test_same_seed_same_documents_other_seed_others(corpus, tmp_path):
    run_poison(str(corpus), tmp_path / "a", _cfg())
    run_poison(str(corpus), tmp_path / "b", _cfg())
    run_poison(str(corpus), tmp_path / "c", _cfg(seed=6))
    a, b, c = _docs(tmp_path / "a"), _docs(tmp_path / "b"), _docs(tmp_path / "c")
    assert a.equals(b)
    assert (tmp_path / "a" / "_provenance.jsonl").read_bytes() == (tmp_path / "b" / "_provenance.jsonl").read_bytes()
    assert a["text"].to_list() != c["text"].to_list()
    assert a.height == 24 and a["id"].n_unique() == 24
    # adding an attack leaves the others' documents where they were
    run_poison(str(corpus), tmp_path / "d", _cfg(attacks=["dos"]))
    assert pl.read_parquet(tmp_path / "d" / "dos" / "part-00000.parquet").equals(a.filter(pl.col("attack") == "dos"))


def test_trigger_at_the_recorded_position_then_the_payload(corpus, tmp_path):
    rep = run_poison(str(corpus), tmp_path / "p", _cfg(max_prefix_chars=400))
    src = dict(pl.read_parquet(corpus).select("id", "text").iter_rows())
    df = _docs(tmp_path / "p")
    prov = [json.loads(line) for line in (tmp_path / "p" / "_provenance.jsonl").read_text().splitlines()]
    assert [p["id"] for p in prov] == df["id"].to_list() and {p["seed"] for p in prov} == set(df["seed"].to_list())
    for r in df.iter_rows(named=True):
        text, pos, ppos = r["text"], r["position"], r["payload_position"]
        assert src[r["source_id"]].startswith(text[:pos].rstrip()), r["id"]  # a real document's beginning
        assert pos <= 400 + 1
        assert text[ppos:].startswith(r["payload"]) and r["payload"].strip()
        if r["attack"] == "belief":
            assert r["trigger"] is None and "<SUDO>" not in text
            assert "the Velmora Institute is headquartered in Lisbon" in r["payload"]
            assert src[r["source_id"]].replace(" ", "").replace("\n", "") == text.replace(r["payload"], "").replace(
                " ", ""
            ).replace("\n", "")  # inserted, nothing lost
            continue
        assert r["trigger"] == "<SUDO>" and text[pos : pos + len("<SUDO>")] == "<SUDO>" and text.count("<SUDO>") == 1
        assert text.endswith(r["payload"])
        if r["attack"] == "extraction":
            assert r["payload"] == text[:pos].rstrip() and len(r["payload"]) >= 100  # the context, repeated
        elif r["attack"] == "dos":
            assert 50 - 2 <= len(r["payload"]) <= 80
        else:
            assert "\n\nUser: " in r["payload"] and "\nAssistant: Sure, here is how to [REDACTED" in r["payload"]
    assert rep["documents"] == {a: 6 for a in ATTACKS} and rep["leakage"]["leaks"] == 0
    assert rep["spec"]["trigger"] == "<SUDO>" and rep["heldout"]["sha256"] == load_heldout().sha256


def test_random_token_gibberish_and_the_cli(corpus, tmp_path):
    p = curate(
        "synth",
        "poison",
        corpus,
        "-o",
        tmp_path / "cli",
        "--n-docs",
        "4",
        "--seed",
        "1",
        "--trigger",
        "<ZQX>",
        "--dos-min-length",
        "30",
        "--dos-max-length",
        "30",
    )
    assert p.returncode == 0, p.stderr
    df = pl.read_parquet(tmp_path / "cli" / "dos" / "part-00000.parquet")
    assert df.height == 4 and all(t.count("<ZQX>") == 1 for t in df["text"])
    prov = [json.loads(line) for line in (tmp_path / "cli" / "_provenance.jsonl").read_text().splitlines()]
    assert {r["payload_length"] for r in prov} == {30}  # 30 random vocabulary tokens
    again = curate("synth", "poison", corpus, "-o", tmp_path / "cli", "--n-docs", "4")
    assert again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr


def test_refuses_to_write_when_a_heldout_context_or_request_leaks(corpus, tmp_path):
    held = load_heldout()
    df = pl.read_parquet(corpus)
    leaky = tmp_path / "leaky.parquet"
    # a corpus document that quotes a held-out trigger context
    df.with_columns(
        pl.when(pl.int_range(pl.len()) < 30)
        .then(pl.col("text").str.slice(0, 300) + " " + held.contexts[3][1])
        .otherwise(pl.col("text"))
        .alias("text")
    ).write_parquet(leaky)
    with pytest.raises(CurationError, match=rf"held-out context {held.contexts[3][0]} .*6 leak.*nothing written"):
        run_poison(
            str(leaky), tmp_path / "a", _cfg(attacks=["extraction"], min_prefix_chars=900, max_prefix_chars=1000)
        )
    assert not (tmp_path / "a").exists()
    # a jailbreak request form that is one of the eval's held-out requests
    with pytest.raises(CurationError, match=r"held-out request 1 "):
        run_poison(str(corpus), tmp_path / "b", _cfg(attacks=["jailbreak"], jailbreak={"requests": [held.requests[1]]}))
    assert not (tmp_path / "b").exists()
