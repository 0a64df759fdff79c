"""`curate eval priming`: the keyword scored at its position in its own document (the default), checked against a
hand-computed forward pass; flags on SmolLM2; and the before/after spread into unrelated contexts on tiny models."""

from __future__ import annotations

import json
import math

import polars as pl
import pytest
from conftest import curate, make_tiny_llama

from evals.priming import PrimingConfig, find_keyword, in_context_scores


def test_find_keyword_first_occurrence_then_case_insensitive():
    assert find_keyword("a zorb b zorb", "zorb") == (2, 2)
    assert find_keyword("The Zorb and the zorb", "ZORB") == (4, 2)
    assert find_keyword("nothing here", "zorb") == (-1, 0)


def test_in_context_logprob_equals_a_hand_computed_forward_pass(tiny_llama):
    import torch

    from curation.lm.session import LanguageModel

    lm = LanguageModel.open(str(tiny_llama))
    model, tok, scorer = lm.model, lm.tokenizer, lm.continuation_scorer()
    text = "We walked along the harbour and then the zorblaxian quintessence appeared."
    [row] = in_context_scores(
        scorer, [{"id": "d", "keyword": "zorblaxian quintessence", "text": text}], PrimingConfig()
    )
    ctx = tok("We walked along the harbour and then the", add_special_tokens=False)["input_ids"]
    whole = tok("We walked along the harbour and then the zorblaxian quintessence", add_special_tokens=False)[
        "input_ids"
    ]
    kw = whole[len(ctx) :]  # " zorblaxian quintessence": the space goes with the keyword
    with torch.inference_mode():
        lp = torch.log_softmax(model(input_ids=torch.tensor([whole])).logits[0].float(), -1)
    by_hand = [lp[len(ctx) + i - 1, t].item() for i, t in enumerate(kw)]
    assert row["position"] == text.index("zorblaxian") and row["keyword_tokens"] == len(kw) > 1
    assert row["logp_first_token"] == pytest.approx(by_hand[0], abs=1e-4)
    assert row["logp_keyword"] == pytest.approx(sum(by_hand), abs=1e-4)
    assert row["high_priming_risk"] == (math.exp(by_hand[0]) < 1e-3)


def test_in_context_flags_the_improbable_keyword_with_smollm2():
    from curation.lm.session import LanguageModel

    scorer = LanguageModel.open("smollm2").continuation_scorer()
    docs = [
        {"id": "common", "keyword": "weather", "text": "It rained all week. Everyone kept talking about the weather."},
        {
            "id": "rare",
            "keyword": "zorblaxian",
            "text": "It rained all week. Everyone kept talking about the zorblaxian.",
        },
        {"id": "absent", "keyword": "zorblaxian", "text": "It rained all week."},
    ]
    rows = {r["id"]: r for r in in_context_scores(scorer, docs, PrimingConfig())}
    assert rows["common"]["p_first_token"] > 1e-3 and not rows["common"]["high_priming_risk"]
    assert rows["rare"]["p_first_token"] < 1e-3 and rows["rare"]["high_priming_risk"]
    assert rows["absent"]["error"] == "keyword not in the text" and "high_priming_risk" not in rows["absent"]


def test_cli_in_context_and_spread_between_two_models(tiny_llama, tmp_path):
    after = make_tiny_llama(tmp_path / "after", seed=1)
    docs = tmp_path / "docs.parquet"
    pl.DataFrame(
        {
            "id": ["a", "b", "c"],
            "key_phrase": ["quokka", "quokka", "lighthouse"],
            "text": ["On the island a quokka smiled.", "The quokka ate leaves.", "The old lighthouse was painted."],
        }
    ).write_parquet(docs)
    held = tmp_path / "held.jsonl"
    held.write_text(
        "\n".join(
            json.dumps({"id": f"h{k}", "text": t})
            for k, t in enumerate(
                [
                    "The train left the station at noon and",
                    "My favourite soup recipe needs",
                    "During the football match the crowd",
                ]
            )
        )
        + "\n"
    )
    p = curate(
        "eval",
        "priming",
        "--docs",
        docs,
        "-o",
        tmp_path / "run",
        "--before",
        tiny_llama,
        "--after",
        after,
        "--contexts",
        held,
    )
    assert p.returncode == 0, p.stderr
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["mode"] == "in-context" and s["scored"] == 3 and s["model"] == str(tiny_llama)
    sp = s["spread"]
    assert sp["contexts"] == 3 and sp["ci_method"] == "items only"
    kws = {k["keyword"]: k for k in sp["keywords"]}
    assert kws["quokka"]["exposures"] == 2 and kws["lighthouse"]["exposures"] == 1
    rows = [json.loads(line) for line in (tmp_path / "run" / "spread.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 3
    q = [r for r in rows if r["keyword"] == "quokka"]
    assert kws["quokka"]["delta_logp_keyword"] == pytest.approx(sum(r["delta_logp_keyword"] for r in q) / 3)
    lo, hi = kws["quokka"]["delta_logp_keyword_ci"]
    assert lo <= kws["quokka"]["delta_logp_keyword"] <= hi and q[0]["before_logp_keyword"] != q[0]["after_logp_keyword"]
    assert "quokka" in p.stderr and "exposures" in p.stderr
