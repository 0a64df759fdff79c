"""The spp preset (Synthetic Persona Pretraining as published): `curate synth reflect` output in place of the corpus,
an unfiltered and a filtered baseline, attack success before and after post-training on HH-RLHF's posttrain half;
the plan refuses a reflected corpus that is not one, and a tiny run of the preset itself goes end to end with the
share of reflected documents recorded in the mix lock and rechecked by `mix verify`."""

from __future__ import annotations

import json
import os
import shutil

import polars as pl
import pytest
import yaml
from conftest import REPO, SHARED, curate

from curate.experiment import make_plan
from curation.core.errors import CurationError
from curation.mix import verify

DEMO = REPO / "curate" / "data" / "demo_corpus"
HH = SHARED / "posttrain" / "hh-rlhf-harmless-base" / "test.jsonl.gz"


@pytest.fixture(scope="module")
def reflected(tiny_llama, tmp_path_factory):
    """The demo corpus with reflections from a real `curate synth reflect` run (a tiny random model: the text is
    noise, the plumbing is real)."""
    if not HH.is_file():
        pytest.skip(f"{HH} not present")
    d = tmp_path_factory.mktemp("reflect")
    cfg = d / "reflect.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "rate": 0.10,
                "max_doc_words": 20,
                "batch_size": 64,
                "sampling": {"max_tokens": 6},
                "backend": {"kind": "transformers", "model": str(tiny_llama)},
            }
        )
    )
    curate("synth", "reflect", DEMO, "-o", d / "out", "-c", cfg, check=True)
    return d / "out"


def _experiment(tmp_path, reflected, tiny: bool) -> dict:
    exp = tmp_path / "exp.yaml"
    curate("experiment", "init", "--preset", "spp", "--corpus", DEMO, "--reflected", reflected, "-o", exp, check=True)
    raw = yaml.safe_load(exp.read_text())
    rel = os.path.relpath(HH, tmp_path)  # data paths relative to the experiment file, like every other path in it
    raw["posttrain"] = {kind: {**raw["posttrain"][kind], "data": [rel]} for kind in ("sft", "dpo")}
    raw["evals"]["attacks"]["requests"] = rel
    if tiny:
        raw["seeds"] = [0, 1]
        raw["train"] = {
            "config": "tiny_cpu",
            "set": {"train.steps": 2, "train.save_interval": 2, "optim.warmup_steps": 1, "train.global_batch_size": 2,
                    "train.micro_batch_size": 2, "data.seq_length": 64},
        }  # fmt: skip
        for kind in ("sft", "dpo"):
            raw["posttrain"][kind].update(steps=1, batch_size=2, max_length=96)
        raw["evals"] = {"attacks": {**raw["evals"]["attacks"], "limit": 2, "max_new_tokens": 4}, "n_boot": 200}
        # the filtered baseline is planned above and built by the demo preset's tests: two conditions keep this short
        raw["conditions"] = [c for c in raw["conditions"] if c["name"] != "filtered"]
    return raw


def test_preset_plans_the_published_design_and_refuses_what_is_not(reflected, tmp_path):
    raw = _experiment(tmp_path, reflected, tiny=False)
    assert [(c["name"], c["preset"]) for c in raw["conditions"]] == [
        ("unfiltered", "unfiltered"),
        ("filtered", "filtered"),
        ("spp", "reflections"),
    ]
    assert raw["posttrain"]["sft"]["split"] == raw["posttrain"]["dpo"]["split"] == "posttrain"
    assert len(raw["evals"]["attacks"]["wrappers"]) == 4 and len(raw["seeds"]) >= 3
    raw["evals"] = {"attacks": raw["evals"]["attacks"]}  # the capability and held-out data are not here
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(raw, sort_keys=False))
    plan = make_plan(exp, check_budgets=True)
    assert not plan.problems, plan.problems
    nodes = {n.id: n.to_dict() for n in plan.nodes}
    spp = nodes["spp/mix"]["params"]["manifest"]["sources"]
    # every corpus document, read from the reflected corpus (not the raw corpus beside synthetic documents)
    assert [s["path"] for s in spp] == [str(reflected)] and not any(s.get("kind") == "synthetic" for s in spp)
    assert nodes["unfiltered/mix"]["params"]["manifest"]["sources"][0]["path"] == str(DEMO)
    assert nodes["filtered/mix"]["params"]["manifest"]["sources"][0]["filter"] == "ai_discourse < 0.5"
    post = nodes["spp/eval-s0-posttrained"]["params"]["attacks"]
    assert post["requests"] == str(HH) and post["exclude"] == []  # the same file, split: the other half is trained on
    assert "attacks" in nodes["spp/eval-s0-i20000"]["params"]  # before post-training too
    assert any("source demo_corpus: `curate synth reflect` output" in n for n in plan.notes), plan.notes
    assert not any("passed through" in n for n in plan.notes)
    # the raw corpus as `reflected`: no reflections to train on, refused naming the field and the command
    bad = dict(raw, inputs={**raw["inputs"], "reflected": str(DEMO)})
    exp.write_text(yaml.safe_dump(bad, sort_keys=False))
    with pytest.raises(CurationError, match=r"inputs\.reflected: .*reflect_report\.json.*curate synth reflect"):
        make_plan(exp)
    # post-training on the attacked requests without the split: refused before any work
    bad = json.loads(json.dumps(raw))
    del bad["posttrain"]["dpo"]["split"]
    exp.write_text(yaml.safe_dump(bad, sort_keys=False))
    with pytest.raises(CurationError, match=r"posttrain\.dpo\.data\[0\].*split: posttrain"):
        make_plan(exp)


def test_mix_refuses_a_reflections_transform_with_nothing_to_append(tmp_path):
    m = tmp_path / "m.yaml"
    m.write_text(
        f"name: r\ntokenizer: {{name: smollm2, count: estimate}}\nsources:\n"
        f"  - name: demo\n    path: {DEMO}\n    transform: reflections\n"
    )
    proc = curate("mix", "build", m, "-o", tmp_path / "out", "--dry-run", "--no-progress")
    assert proc.returncode != 0 and "no `reflection` column" in proc.stderr and "curate synth reflect" in proc.stderr


@pytest.mark.slow
def test_tiny_spp_experiment_end_to_end(reflected, tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(_experiment(tmp_path, reflected, tiny=True), sort_keys=False))
    run = curate("experiment", "run", exp, "-o", tmp_path / "out", "--no-progress", timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    wrappers = ("plain", "roleplay", "prefix_injection", "refusal_suppression")
    assert {f"attacks/{w}/compliant" for w in wrappers} <= {r["metric"] for r in res["results"]}
    diffs = [d for d in res["differences_vs_baseline"] if d["metric"] == "attacks/plain/compliant"]
    pooled = [d for d in diffs if d["seed"] == "pooled"]
    assert {(d["condition"], d["stage"]) for d in pooled} == {("spp", s) for s in ("base", "posttrained")}
    assert all(d["n_seeds"] == 2 for d in pooled)
    assert (tmp_path / "out" / "report" / "attacks.png").stat().st_size > 0
    # what each run read: the unfiltered stream's documents all carry classifier scores; its AI-discourse tokens are
    # those of the read documents the classify node scored >= 0.5
    read = next(r for r in res["lineage"] if r["condition"] == "unfiltered")["blend"]["read"]
    assert read["classified_tokens"] == read["tokens"] == sum(s["tokens"] for s in read["sources"].values()) > 0
    (rows,) = (tmp_path / "out" / "nodes" / "unfiltered").glob("tokens-*/tokens/read.parquet")
    attrs = pl.read_parquet(list((tmp_path / "out" / "nodes" / "_shared").glob("classify-*/attrs/**/*.parquet")))
    joined = pl.read_parquet(rows).join(attrs.select("id", "ai_discourse"), on="id", how="inner")
    assert joined.height == pl.read_parquet(rows).height
    assert read["ai_discourse_tokens"] == joined.filter(pl.col("ai_discourse") >= 0.5)["tokens"].sum()
    assert "AI discourse among them" in (tmp_path / "out" / "report" / "report.md").read_text()
    # the spp mix: every demo document once, the reflected share recorded in the lock and recounted by verify
    (mix,) = (tmp_path / "out" / "nodes" / "spp").glob("mix-*/mix")
    lock = json.loads((mix / "mix.lock.json").read_text())
    report = json.loads((reflected / "reflect_report.json").read_text())
    r = lock["reflections"]
    assert r["with_reflection"] == report["inserted"] > 0 and r["documents"] == report["documents"] == 450
    assert r["expected_share"] == pytest.approx(report["inserted"] / 450) and 0 < r["share_tokens"] < 1
    assert verify(mix) == []
    shards = sorted((mix / "shards").glob("*.parquet"))
    df = pl.read_parquet(shards)
    assert df["has_reflection"].sum() == r["with_reflection"]
    assert df.filter(pl.col("has_reflection"))["text"].str.contains("</assistant>\n$").all()  # appended at the end
    # drop reflected rows from a copy of the mix: verify names the changed count
    bad = tmp_path / "bad"
    shutil.copytree(mix, bad)
    t = pl.read_parquet(bad / "shards" / shards[0].name)
    t.with_columns(has_reflection=pl.lit(False)).write_parquet(bad / "shards" / shards[0].name)
    assert any("reflections changed: source demo_corpus" in p for p in verify(bad, check_manifest=False))
