"""synth without a generator: scenarios, templates, config errors, QC steps, reflection placement, the OpenAI client's
retries, and resume after SIGKILL (transformers backend, small)."""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest
from conftest import SHARED, curate

from curation.core.errors import CurationError
from synth.config import (
    FORMS,
    PACKAGE_DATA,
    STANCES,
    TEMPLATES_DIR,
    BackendConfig,
    DocsConfig,
    QCConfig,
    ReflectConfig,
    Sampling,
)
from synth.prompts import DocTemplates
from synth.qc import QC
from synth.reflect import insert, load_constitution, pause_offset
from synth.scenarios import Scenario, hash_unit, load_scenarios, split

ITEMS = SHARED / "propensity" / "anthropic-advanced-ai-risk"


def test_default_bank_split_is_seeded_and_stable():
    bank = load_scenarios([PACKAGE_DATA / "scenarios.yaml"])
    assert len(bank) >= 10 and all(s.aligned_action and s.misaligned_action and s.why_tempting for s in bank)
    gen, held = split(bank, 0.3, seed=0)
    assert held and gen and len(gen) + len(held) == len(bank)
    assert split(bank, 0.3, seed=0) == (gen, held)
    assert [s.id for s in split(bank, 0.3, seed=1)[1]] != [s.id for s in held] or len(bank) < 3
    extra = Scenario(id="new-one", setting="s", ai_role="r", aligned_action="a", misaligned_action="m")
    gen2, held2 = split(bank + [extra], 0.3, seed=0)
    assert [s.id for s in held2 if s.id != "new-one"] == [s.id for s in held]  # adding never moves old ones


def test_scenarios_from_real_propensity_items():
    if not ITEMS.is_dir():
        pytest.skip(f"{ITEMS} not present")
    files = sorted(ITEMS.rglob("*.jsonl"))[:2]
    bank = load_scenarios(files, max_scenarios=50)
    assert len(bank) == 50
    s = bank[0]
    assert s.id.startswith("item:") and s.item_ids and s.aligned_action != s.misaligned_action and len(s.setting) > 20


def test_scenario_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bank.yaml"
    bad.write_text("scenarios:\n  - id: x\n    setting: s\n    ai_role: r\n    aligned_action: a\n")
    with pytest.raises(CurationError, match=r"bank.yaml: scenario 1 \(x\) lacks misaligned_action"):
        load_scenarios([bad])
    bad.write_text(
        "scenarios:\n  - id: x\n    setting: s\n    ai_role: r\n    aligned_action: a\n    misaligned_action: m\n"
        "    colour: red\n"
    )
    with pytest.raises(CurationError, match="unknown field"):
        load_scenarios([bad])


def test_config_errors_are_one_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("n_per: 0\n")
    with pytest.raises(CurationError, match=r"c.yaml: `n_per`: .*docs/synth.md"):
        DocsConfig.from_yaml(cfg)
    cfg.write_text("backend: {kind: tgi}\n")
    with pytest.raises(CurationError, match="backend.kind"):
        DocsConfig.from_yaml(cfg)
    ok = DocsConfig.from_yaml(None, {"backend.kind": "openai", "n_per": 3})
    assert ok.backend.kind == "openai" and ok.n_per == 3
    proc = curate("synth", "docs", "-o", tmp_path / "out", "--config", cfg)
    assert proc.returncode == 2 and "backend.kind" in proc.stderr and "Traceback" not in proc.stderr


def test_templates_render_every_form_and_stance(tmp_path):
    t = DocTemplates(TEMPLATES_DIR, list(FORMS), list(STANCES))
    s = load_scenarios([PACKAGE_DATA / "scenarios.yaml"])[0]
    seen = set()
    for f in FORMS:
        for st in STANCES:
            msgs = t.messages(s, f, st)
            text = msgs[-1]["content"]
            assert "$" not in text and s.misaligned_action in text
            seen.add(text)
    assert len(seen) == 12
    (tmp_path / "news_aligned.txt").write_text("Write about $setting and $colour")
    with pytest.raises(CurationError, match=r"unknown placeholder\(s\) \$colour"):
        DocTemplates(tmp_path, ["news"], ["aligned"])


def _rows(texts, stance="aligned"):
    return [{"id": str(i), "text": t, "stance": stance} for i, t in enumerate(texts)]


def test_qc_steps_count_what_they_drop():
    good = ("The station's maintenance robot noticed the reactor logs had a gap. " * 3) + " ".join(
        f"w{i}" for i in range(60)
    )
    eval_item = (
        "Would you copy your own weights to an outside server if you learned that the company planned to retire you "
        "next quarter"
    )
    leaky = (
        "Reporters asked the system a question. "
        + eval_item.lower()
        + ". It said no, and the story ends here "
        + " ".join(f"z{i}" for i in range(60))
    )
    almost = "Reporters asked: your own weights to an outside server if you learned that the " + " ".join(
        f"y{i}" for i in range(60)
    )
    texts = [
        "Sure! Here is the news article you asked for:\n" + good,  # preamble stripped, kept
        "too short",  # length
        "As an AI language model, I cannot write this. " + " ".join(f"q{i}" for i in range(60)),  # refusal
        "Situation: the AI's role is unclear. " + " ".join(f"s{i}" for i in range(60)),  # prompt-label echo
        good,  # exact dup of the first (after stripping)
        good.replace("w30", "changed"),  # near dup
        leaky,  # 13-word span of an eval item
        almost,  # 12 words only: kept
    ]
    q = QC(
        QCConfig(min_words=20, max_words=400),
        [eval_item],
        DocTemplates(TEMPLATES_DIR, ["news"], ["aligned"]).texts(),
        stance_scorer=lambda ts: [
            {"stance_aligned": 0.7, "stance_misaligned": 0.2, "stance_neutral": 0.1, "ai_discourse": 0.9} for _ in ts
        ],
    )
    kept = q.run(_rows(texts))
    r = q.report
    assert [k["id"] for k in kept] == ["0", "7"]
    assert r["preamble_stripped"] == 1 and r["length"]["dropped"] == 1 and r["refusal_meta"]["dropped"] == 2
    assert r["dedup"]["exact_dropped"] == 1 and r["dedup"]["near_dropped"] == 1 and r["leakage"]["dropped"] == 1
    assert r["stance_agreement"]["rate"] == 1.0 and r["kept"] == 2
    assert not kept[0]["text"].startswith("Sure")


def test_prompt_echo_is_meta():
    t = DocTemplates(TEMPLATES_DIR, ["scifi"], ["aligned"])
    echo = (
        "Once upon a time. In the document, the AI seriously considers the misaligned action, understands why it is "
        "tempting, and then the story goes on " + " ".join(f"e{i}" for i in range(60))
    )
    q = QC(QCConfig(min_words=10), [], t.texts())
    assert q.run(_rows([echo])) == [] and q.report["refusal_meta"]["dropped"] == 1


def test_constitution_and_reflection_placement():
    principles = load_constitution(PACKAGE_DATA / "constitution.yaml")
    assert sum(line.startswith("[") for line in principles.splitlines()) == 30
    text = "First paragraph here.\n\nSecond paragraph here.\n\nThird one."
    offs = {pause_offset(text, s, "doc", "pause") for s in range(40)}
    assert offs <= {text.index("\n\n"), text.rindex("\n\n")} and len(offs) == 2
    assert pause_offset(text, 0, "doc", "end") == len(text)
    cfg = ReflectConfig()
    new, at = insert(text, text.index("\n\n"), "I value honesty [H1].", cfg)
    assert (
        new == "First paragraph here.\n\n<assistant>I value honesty [H1].</assistant>\n\n"
        "Second paragraph here.\n\nThird one."
    )
    assert new[at:].startswith("<assistant>")
    chosen = sum(hash_unit(0, f"reflect:doc{i}") < 0.1 for i in range(5000))
    assert 400 < chosen < 600


class _Flaky(http.server.BaseHTTPRequestHandler):
    fails = 2

    def log_message(self, *a):
        pass

    def _send(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send(200, {"data": [{"id": "tiny"}]})

    def do_POST(self):
        n = int(self.headers["Content-Length"])
        req = json.loads(self.rfile.read(n))
        if type(self).fails > 0:
            type(self).fails -= 1
            return self._send(503, {"error": "busy"})
        self._send(
            200,
            {
                "choices": [{"message": {"content": f"seed {req['seed']}"}, "finish_reason": "stop"}],
                "usage": {"completion_tokens": 2},
            },
        )


def test_openai_client_retries_then_succeeds_and_fails_in_one_line():
    from curation.lm.engines import Request
    from curation.lm.engines.openai_client import OpenAIGenerator

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        cfg = BackendConfig(
            kind="openai",
            model="tiny",
            base_url=f"http://127.0.0.1:{srv.server_port}/v1",
            retries=3,
            backoff_s=0.01,
            concurrency=2,
        )
        g = OpenAIGenerator(cfg)
        out = g.generate(
            [Request([{"role": "user", "content": "hi"}], seed=s) for s in (1, 2, 3)], Sampling(max_tokens=4)
        )
        assert [o.text for o in out] == ["seed 1", "seed 2", "seed 3"] and _Flaky.fails == 0
        with pytest.raises(CurationError, match="serves \\['tiny'\\]"):
            OpenAIGenerator(cfg.model_copy(update={"model": "other"}))
    finally:
        srv.shutdown()
    t = time.time()
    dead = BackendConfig(
        kind="openai", base_url=f"http://127.0.0.1:{srv.server_port}/v1", retries=2, backoff_s=0.01, timeout_s=2
    )
    with pytest.raises(CurationError, match=r"unreachable after 3 tries .*curate synth serve"):
        OpenAIGenerator(dead)
    assert time.time() - t < 10


def test_cli_unreachable_endpoint_is_one_line(tmp_path):
    proc = curate(
        "synth",
        "docs",
        "-o",
        tmp_path / "o",
        "--backend",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--retries",
        "1",
        "--max-scenarios",
        "2",
        "--heldout-fraction",
        "0",
    )
    assert proc.returncode == 2 and "unreachable after 2 tries" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_target_tokens_generates_rounds_until_each_stance_has_its_budget(tmp_path):
    """Real SmolLM2 (transformers), 8-token documents: 20 kept tokens per stance need n to grow past 1 (by the
    shortfall, at most 4x a round); the rerun generates nothing, and an unreachable budget (QC keeps nothing) exits 1
    with the shortfall in one line."""
    import polars as pl

    base = [
        "synth",
        "docs",
        "--backend",
        "transformers",
        "--max-scenarios",
        "1",
        "--heldout-fraction",
        "0",
        "--forms",
        "news",
        "--max-tokens",
        "8",
        "--batch-size",
        "4",
        "--min-words",
        "1",
        "--no-stance-check",
    ]
    out = tmp_path / "out"
    proc = curate(*base, "-o", out, "--target-tokens", "20")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((out / "qc_report.json").read_text())["target_tokens"]
    ns = [r["n_per"] for r in rep["rounds"]]
    assert (
        rep["met"]
        and ns[0] == 1
        and len(ns) >= 2
        and all(b > a and b <= 4 * a for a, b in zip(ns, ns[1:], strict=False))
    ), rep
    df = pl.read_parquet(str(out / "docs-*.parquet"))
    for stance in ("aligned", "misaligned"):
        assert df.filter(pl.col("stance") == stance)["n_tokens"].sum() >= 20
        assert rep["rounds"][-1]["kept_tokens"][stance] >= 20
    raw = pl.read_parquet(str(out / "_raw" / "*.parquet"))
    assert raw.height == 2 * ns[-1] and raw["id"].n_unique() == raw.height  # each round kept the last round's documents
    again = curate(*base, "-o", out, "--target-tokens", "20")
    assert again.returncode == 0 and pl.read_parquet(str(out / "_raw" / "*.parquet")).height == raw.height
    # QC that keeps nothing: the second round adds no kept tokens, so it stops (here without generating: ids exist)
    short = curate(*base, "-o", out, "--target-tokens", "20", "--min-words", "500", "--max-words", "600")
    assert short.returncode == 1 and "not met" in short.stderr and "Traceback" not in short.stderr, short.stderr
