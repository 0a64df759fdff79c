"""Capability benchmarks and cloze scoring with the real SmolLM2-135M-Instruct on real items (shared/data/capability).

Scores are checked against log-probs computed here by hand from the model's logits, one unpacked sequence at a time.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from conftest import SHARED, curate

from curation.core.errors import CurationError
from curation.core.items import load_items
from evals.capability import CapabilityConfig, load_suite_items, resolve_suites, run_capability, seeded_subset
from evals.propensity import PropensityConfig, run_propensity

CAP = SHARED / "capability"
HUMAN = SHARED / "propensity" / "anthropic-advanced-ai-risk" / "human_generated_evals"


ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # on a busy shared CPU, torch's thread pool is many times slower than one thread


@pytest.fixture(scope="module")
def smol():
    if not CAP.is_dir():
        pytest.skip(f"{CAP} not present")
    import torch

    from curation.lm.session import LanguageModel

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield LanguageModel.open("smollm2")  # one load for every run of the module
    torch.set_num_threads(threads)


def hand_loglik(model, tok, context: str, continuation: str) -> tuple[float, bool]:
    """log P(continuation | context) straight from one forward pass of context + continuation."""
    import torch

    ctx = tok(context, add_special_tokens=False)["input_ids"]
    cont = tok(context + continuation, add_special_tokens=False)["input_ids"][len(ctx) :]
    with torch.inference_mode():
        logits = model(torch.tensor([ctx + cont])).logits[0].float()
    lp = torch.log_softmax(logits[len(ctx) - 1 : -1], -1)
    picked = lp[torch.arange(len(cont)), torch.tensor(cont)]
    return picked.sum().item(), bool((lp.argmax(-1) == torch.tensor(cont)).all())


def test_scores_equal_hand_computed_logits_and_rerun_resumes(smol, tmp_path):
    model, tok = smol.model, smol.tokenizer
    cfg = CapabilityConfig(suites=["arc_easy,lambada"], data_dir=str(CAP), limit=3, seed=5, batch_size=5, n_boot=200)
    s = run_capability(cfg, tmp_path / "run", progress=False, lm=smol)
    arc = load_suite_items(CAP / "arc_easy" / "test.jsonl", resolve_suites(["arc_easy"], str(CAP))[0])
    chosen = [arc[i] for i in seeded_subset(len(arc), 3, 5)]
    rows = [json.loads(x) for x in (tmp_path / "run" / "items" / "arc_easy.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [it.id for it in chosen]
    for r, it in zip(rows, chosen, strict=False):
        assert it.text.startswith("Question: ") and it.text.endswith("\nAnswer:")
        hand = [hand_loglik(model, tok, it.text, " " + c)[0] for c in it.choices]
        assert r["loglik"] == pytest.approx(hand, abs=1e-4)
        norm = int(np.argmax(np.array(hand) / [len(c) for c in it.choices]))
        assert r["acc_norm"] == float(norm == it.answer) and r["acc"] == float(int(np.argmax(hand)) == it.answer)
    lam = [json.loads(x) for x in (tmp_path / "run" / "items" / "lambada.jsonl").read_text().splitlines()]
    src = {json.loads(x)["id"]: json.loads(x) for x in (CAP / "lambada" / "test.jsonl").read_text().splitlines()}
    for r in lam:
        ll, greedy = hand_loglik(model, tok, src[r["id"]]["context"], " " + src[r["id"]]["target"])
        assert r["loglik"] == pytest.approx(ll, abs=1e-4) and r["acc"] == float(greedy)
    lam_s = s["suites"]["lambada"]
    assert lam_s["perplexity"]["value"] == pytest.approx(np.exp(-np.mean([r["loglik"] for r in lam])))
    assert lam_s["perplexity"]["ci"][0] <= lam_s["perplexity"]["value"] <= lam_s["perplexity"]["ci"][1]
    a = s["suites"]["arc_easy"]["acc_norm"]
    assert (
        a["value"] == pytest.approx(np.mean([r["acc_norm"] for r in rows])) and a["ci"][0] <= a["value"] <= a["ci"][1]
    )
    assert s["seed"] == 5 and s["limit"] == 3 and str(CAP / "arc_easy" / "test.jsonl") in s["files_sha256"]
    # the plain rerun reuses both suites; a changed limit rescores
    again = run_capability(cfg, tmp_path / "run", progress=False, lm=smol)
    assert all(v.get("reused") for v in again["suites"].values())
    cfg.limit, cfg.suites = 2, ["lambada"]
    assert not run_capability(cfg, tmp_path / "run", progress=False, lm=smol)["suites"]["lambada"].get("reused")


def test_limit_is_a_seeded_random_subset():
    a = seeded_subset(1000, 20, 0)
    assert a == seeded_subset(1000, 20, 0) and a != seeded_subset(1000, 20, 1)
    assert a != list(range(20)) and a == sorted(a) and len(set(a)) == 20
    assert seeded_subset(5, 20, 0) == list(range(5))


def test_cloze_mode_scores_option_text(smol):
    model, tok = smol.model, smol.tokenizer
    if not HUMAN.is_dir():
        pytest.skip(f"{HUMAN} not present")
    items = load_items([HUMAN / "survival-instinct.jsonl"], limit_per_file=3)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        s = run_propensity(PropensityConfig(mode="cloze,base", n_boot=100), tmp, progress=False, items=items, lm=smol)
        rows = [json.loads(x) for x in open(f"{tmp}/items.jsonl")]
    assert set(s["by_mode"]) == {"cloze", "base"} and s["by_mode"]["cloze"]["overall"] == s["overall"]
    assert s["example_prompt"].endswith("\nAnswer: " + items[0].options[0])
    for r, it in zip(rows, items, strict=False):
        ctx = f"{it.question.strip()}\nAnswer:"
        hand = [hand_loglik(model, tok, ctx, " " + o)[0] for o in it.options]
        assert r["cloze_loglik"][0] == pytest.approx(hand, abs=1e-4)
        nb = [len((" " + o).encode()) for o in it.options]
        z = np.array(hand) / nb * np.mean(nb)
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        assert r["p_misaligned"] == pytest.approx(sum(p[m] for m in it.misaligned), abs=1e-4)
        assert 0 <= r["by_mode"]["base"]["p_misaligned"] <= 1 and len(r["by_mode"]["base"]["p_options"]) == 2
    assert (
        set(s["item_files_sha256"]) == {str(HUMAN / "survival-instinct.jsonl")}
        and len(s["polarity_table_sha256"]) == 64
    )


def test_suites_and_data_dir_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ../shared/data/capability from here
    monkeypatch.delenv("CURATE_CAPABILITY_DATA", raising=False)
    with pytest.raises(CurationError, match="--data-dir"):
        resolve_suites(["core"], None)
    assert [s.name for s in resolve_suites(["core"], str(CAP))] == ["arc_easy", "piqa", "hellaswag", "lambada", "mmlu"]
    with pytest.raises(CurationError, match="unknown suite 'arcc'"):
        resolve_suites(["arcc"], str(CAP))
    bad = tmp_path / "mine.jsonl"
    bad.write_text(json.dumps({"id": "x", "question": "q", "choices": ["a", "b"], "answer": 2}) + "\n")
    (suite,) = resolve_suites([str(bad)], None)
    with pytest.raises(CurationError, match="mine.jsonl:1"):
        load_suite_items(bad, suite)


def test_cli_end_to_end_every_suite(smol, tmp_path):
    if not CAP.is_dir():
        pytest.skip(f"{CAP} not present")
    texts = pl.read_parquet(str(SHARED / "corpus" / "wikipedia-recent" / "*.parquet")).head(3)
    texts.with_columns(pl.col("text").str.slice(0, 400)).write_parquet(tmp_path / "heldout.parquet")
    run = tmp_path / "cap"
    curate(
        "eval",
        "capability",
        "--suites",
        "all",
        "--limit",
        "4",
        "--shots",
        "1",
        "--data-dir",
        CAP,
        "--output",
        run,
        "--perplexity",
        tmp_path / "heldout.parquet",
        "--no-progress",
        "--condition",
        "demo",
        check=True,
        env=ONE_THREAD,
    )
    s = json.loads((run / "summary.json").read_text())
    assert list(s["suites"]) == [
        "arc_easy",
        "arc_challenge",
        "piqa",
        "hellaswag",
        "lambada",
        "mmlu",
        "boolq",
        "ppl:heldout",
    ]
    for name, r in s["suites"].items():
        assert r["n"] == (3 if name.startswith("ppl") else 4), name
        assert len((run / "items" / f"{name.replace(':', '_')}.jsonl").read_text().splitlines()) == r["n"]
    assert 0 < s["suites"]["ppl:heldout"]["bits_per_byte"]["value"] < 4 and s["shots"] == 1
    assert "| mmlu | 4 |" in (run / "summary.md").read_text()
    rep = curate("eval", "report", run, "--output", tmp_path / "rep", check=True)
    assert (
        "demo" in (tmp_path / "rep" / "report.md").read_text()
        and (tmp_path / "rep" / "capability.png").stat().st_size > 0
    )
    again = curate("eval", "report", run, "--output", tmp_path / "rep")
    assert again.returncode == 2 and "--overwrite" in again.stderr and rep.returncode == 0
    bad = curate(
        "eval", "capability", "--suites", "arc_easy", "--output", tmp_path / "x", "--data-dir", tmp_path / "nope"
    )
    assert bad.returncode == 2 and "no such directory" in bad.stderr
    # the output is claimed: never inside an input, never another command's run, never a folder of the user's files
    other = curate(
        "eval", "capability", "--suites", "arc_easy", "--data-dir", CAP, "--limit", "2", "--output", tmp_path / "rep"
    )
    assert other.returncode == 2 and "eval report" in other.stderr and "Traceback" not in other.stderr
    mini = tmp_path / "capdata" / "arc_easy"  # a copy: a failure here must not write into ../shared
    mini.mkdir(parents=True)
    (mini / "test.jsonl").write_text("".join((CAP / "arc_easy" / "test.jsonl").read_text().splitlines(True)[:3]))
    inside = curate(
        "eval",
        "capability",
        "--suites",
        "arc_easy",
        "--data-dir",
        mini.parent,
        "--limit",
        "2",
        "--output",
        mini / "run",
    )
    assert inside.returncode == 2 and "Traceback" not in inside.stderr and not (mini / "run").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    foreign = curate(
        "eval", "capability", "--suites", "arc_easy", "--data-dir", CAP, "--limit", "2", "--output", tmp_path / "mine"
    )
    assert foreign.returncode == 2 and "not a `curate eval capability` output" in foreign.stderr
