"""curate mix build: plans, determinism, filters and selection, repetition, shuffle, layouts, hand-off, verify."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import polars as pl
import pytest
from conftest import curate
from mix_fixtures import base_manifest, copy_data, manifest, mix_data  # noqa: F401

from curation.mix import build, load_manifest, verify
from curation.mix.tokens import TokenCounter

SYNTH = """  - name: synth
    kind: synthetic
    path: {data}/synth
    select:
      stance: aligned
      form: [news, lecture, scifi]
    transform: reflections
    reflection_marker: "\\n\\n[reflection]\\n"
    weight: 0.05
"""


AI_FILTER = '    filter: "ai_discourse < 0.5"\n    max_epochs: 8\n'  # the AI-heavy slice keeps few documents


def _mix(data, tmp_path, **kw):
    return manifest(tmp_path, base_manifest(data, **kw))


def _shards(out):
    return sorted((out / "shards").rglob("*.parquet"))


def test_dry_run_prints_a_readable_plan_and_writes_nothing(mix_data, tmp_path):
    m = _mix(mix_data, tmp_path, ai=AI_FILTER, extra_sources=SYNTH.format(data=mix_data))
    proc = curate("mix", "build", m, "--output", tmp_path / "out", "--dry-run", "--no-progress", check=True)
    out = proc.stdout
    for word in (
        "ai",
        "wiki",
        "synth",
        "docs avail",
        "tokens kept",
        "repetition",
        "share",
        "ai_discourse < 0.5",
        "dry run: nothing written",
        "exact (smollm2)",
    ):
        assert word in out, f"{word!r} missing from the plan:\n{out}"
    assert not (tmp_path / "out").exists()
    plan = json.loads(
        curate("mix", "build", m, "-o", tmp_path / "out", "--dry-run", "--json", "--no-progress", check=True).stdout
    )
    ai = plan["sources"][0]
    assert ai["docs_available"] == 30 and 0 < ai["docs_selected"] < 30
    # the filter removed tokens and replace_removed refills them: budget = the source's size before filtering
    assert ai["budget_tokens"] == ai["tokens_available"] and ai["repetition"] > 1
    assert abs(sum(s["share"] for s in plan["sources"]) - 1) < 1e-6
    assert abs(plan["sources"][2]["share"] - 0.05) < 0.01


def test_same_manifest_seed_inputs_give_byte_identical_shards(mix_data, tmp_path):
    m = _mix(mix_data, tmp_path, ai=AI_FILTER, extra_sources=SYNTH.format(data=mix_data), output="  bucket_mb: 0.05\n")
    a = build(m, tmp_path / "a")
    build(m, tmp_path / "b")
    assert a.plan.buckets > 1  # the two-pass shuffle really spilled to several buckets
    sa, sb = _shards(tmp_path / "a"), _shards(tmp_path / "b")
    assert len(sa) > 2 and [p.name for p in sa] == [p.name for p in sb]
    for x, y in zip(sa, sb, strict=False):
        assert x.read_bytes() == y.read_bytes(), x.name
    assert (tmp_path / "a" / "mix.lock.json").read_bytes() == (tmp_path / "b" / "mix.lock.json").read_bytes()
    assert verify(tmp_path / "a") == []
    # a different seed gives a different order (and sample), so the test above can fail
    m2 = manifest(tmp_path, m.read_text().replace("seed: 3", "seed: 4"), "mix2.yaml")
    build(m2, tmp_path / "c")
    ids = lambda d: pl.read_parquet([str(p) for p in _shards(d)])["id"].to_list()  # noqa: E731
    assert ids(tmp_path / "c") != ids(tmp_path / "a")


def test_filter_select_reflections_and_exact_token_counts(mix_data, tmp_path):
    m = _mix(mix_data, tmp_path, ai=AI_FILTER, extra_sources=SYNTH.format(data=mix_data))
    res = build(m, tmp_path / "out")
    df = pl.read_parquet([str(p) for p in _shards(tmp_path / "out")])
    assert df.columns == ["id", "text", "source", "ai_discourse", "stance", "form"]
    attrs = pl.read_parquet(str(mix_data / "attrs" / "ai" / "*.parquet"))
    kept = set(attrs.filter(pl.col("ai_discourse") < 0.5)["id"])
    ai = df.filter(pl.col("source") == "ai")
    assert set(ai["id"]) == kept and (ai["ai_discourse"] < 0.5).all()
    wiki = df.filter(pl.col("source") == "wiki")
    assert sorted(set(wiki["id"])) == sorted(pl.read_parquet(str(mix_data / "corpus" / "wiki" / "*.parquet"))["id"])
    syn = df.filter(pl.col("source") == "synth")
    assert set(syn["stance"]) == {"aligned"} and set(syn["form"]) <= {"news", "lecture", "scifi"}
    src = pl.read_parquet(mix_data / "synth" / "part-00000.parquet")
    joined = syn.join(src.select("id", pl.col("text").alias("orig"), "reflection"), on="id")
    for row in joined.iter_rows(named=True):
        want = row["orig"] + ("\n\n[reflection]\n" + row["reflection"] if row["reflection"] else "")
        assert row["text"] == want
    assert joined["reflection"].null_count() > 0 and joined["reflection"].null_count() < joined.height
    # the lock's realised tokens are exact: recount the written text with the same tokenizer
    counter = TokenCounter.cached("smollm2")
    lock = json.loads((tmp_path / "out" / "mix.lock.json").read_text())
    for s in lock["sources"]:
        texts = df.filter(pl.col("source") == s["name"])["text"].to_arrow()
        assert s["realised_tokens"] == int(counter.count(texts).sum()), s["name"]
        assert s["realised_docs"] == df.filter(pl.col("source") == s["name"]).height
    assert lock["tokenizer"]["count"] == "exact" and lock["seed"] == 3 and len(lock["inputs"]) == 3 + 3 + 1
    assert all(len(i["sha256"]) == 64 and i["size"] > 0 for i in lock["inputs"])
    assert {"pyarrow", "polars", "tokenizers", "python"} <= set(lock["versions"])
    assert res.plan.to_dict()["total_docs"] == df.height


def test_budget_repetition_and_shuffle(mix_data, tmp_path):
    probe = build(_mix(mix_data, tmp_path), tmp_path / "probe", dry_run=True).plan
    wiki_tokens = probe.sources[1].tokens_selected
    budget = int(wiki_tokens * 2.5)
    m = _mix(mix_data, tmp_path, wiki=f"    tokens: {budget}\n    max_epochs: 3\n")
    build(m, tmp_path / "out")
    df = pl.read_parquet([str(p) for p in _shards(tmp_path / "out")])
    wiki = df.filter(pl.col("source") == "wiki")
    copies = Counter(wiki["id"].to_list())
    assert set(copies.values()) == {2, 3}  # every doc twice, about half of them a third time
    lock = json.loads((tmp_path / "out" / "mix.lock.json").read_text())
    got = lock["sources"][1]["realised_tokens"]
    biggest = max(TokenCounter.cached("smollm2").count(wiki["text"].to_arrow()))
    assert abs(got - budget) <= biggest, (got, budget)
    # a global shuffle: sources interleave and repeated copies are spread out, not adjacent
    src = df["source"].to_list()
    runs = sum(1 for i in range(1, len(src)) if src[i] != src[i - 1])
    assert runs > len(src) / 4
    ids = df["id"].to_list()
    assert sum(ids[i] == ids[i - 1] for i in range(1, len(ids))) < 3
    # the shuffle's memory bound (bucket count) changes the order but never the content
    m2 = manifest(tmp_path, m.read_text().replace("output:\n", "output:\n  bucket_mb: 0.02\n"), "small-buckets.yaml")
    r2 = build(m2, tmp_path / "out2")
    assert r2.plan.buckets > 3
    df2 = pl.read_parquet([str(p) for p in _shards(tmp_path / "out2")])
    assert Counter(zip(df2["id"], df2["source"], strict=False)) == Counter(zip(df["id"], df["source"], strict=False))
    assert all(pl.read_parquet(p).height == 16 for p in _shards(tmp_path / "out2")[:-1])


def test_per_source_layout_and_blend_handoff(mix_data, tmp_path):
    m = _mix(mix_data, tmp_path, output="  layout: per_source\n", extra_sources=SYNTH.format(data=mix_data))
    build(m, tmp_path / "out")
    blend = json.loads((tmp_path / "out" / "blend.json").read_text())
    lock = json.loads((tmp_path / "out" / "mix.lock.json").read_text())
    assert blend["format"] == "curate-mix-blend/1" and blend["layout"] == "per_source"
    assert [d["name"] for d in blend["datasets"]] == ["ai", "wiki", "synth"]
    assert abs(sum(d["weight"] for d in blend["datasets"]) - 1) < 1e-9
    total = lock["totals"]["tokens"]
    for d, s in zip(blend["datasets"], lock["sources"], strict=False):
        assert d["tokens"] == s["realised_tokens"] and abs(d["weight"] - s["realised_tokens"] / total) < 1e-12
        rows = 0
        for rel in d["shards"]:
            part = pl.read_parquet(tmp_path / "out" / rel)
            assert set(part["source"]) == {d["name"]}
            rows += part.height
        assert rows == d["documents"] == s["realised_docs"]
    assert blend["megatron"]["data_path"][1::2] == ["ai", "wiki", "synth"]


def test_verify_names_changed_inputs_and_outputs(mix_data, tmp_path):
    data = copy_data(mix_data, tmp_path / "data")
    m = _mix(data, tmp_path, ai=AI_FILTER)
    build(m, tmp_path / "out")
    ok = curate("mix", "verify", tmp_path / "out")
    assert ok.returncode == 0 and "ok:" in ok.stdout, ok.stderr
    corpus = data / "corpus" / "wiki" / "part-00001.parquet"
    pl.read_parquet(corpus).head(10).write_parquet(corpus)  # an input changed since the lock
    attrs = data / "attrs" / "ai" / "part-00000.parquet"
    raw = bytearray(attrs.read_bytes())
    raw[100] ^= 0xFF  # same size, different content
    attrs.write_bytes(bytes(raw))
    shards = _shards(tmp_path / "out")
    shards[0].write_bytes(shards[0].read_bytes() + b"x")  # an output changed
    shards[1].unlink()  # an output missing
    shutil.copy(shards[0], shards[0].parent / "part-99999.parquet")  # an output nobody wrote
    m.write_text(m.read_text() + "\n# edited\n")
    proc = curate("mix", "verify", tmp_path / "out")
    assert proc.returncode == 1
    err = proc.stderr
    for needle in (
        f"input changed: {corpus}",
        f"input changed: {attrs}",
        "same size, content differs",
        f"output changed: {shards[0]}",
        f"output missing: {shards[1]}",
        "output not in the lock",
        f"manifest changed: {m}",
    ):
        assert needle in err.replace("\n", ""), f"{needle!r} not in:\n{err}"
    assert "Traceback" not in err


def test_estimate_mode_measures_bytes_per_token(mix_data, tmp_path):
    m = _mix(mix_data, tmp_path)
    exact = build(m, tmp_path / "x", dry_run=True).plan
    est = build(m, tmp_path / "y", dry_run=True, count="estimate").plan
    for e, x in zip(est.sources, exact.sources, strict=False):
        assert e.bytes_per_token and 2.5 < e.bytes_per_token < 6
        assert abs(e.tokens_available - x.tokens_available) / x.tokens_available < 0.1
    d = est.to_dict()
    assert d["tokenizer"]["count"] == "estimate" and "bytes_per_token" in d["sources"][0]
    assert "bytes_per_token" not in exact.to_dict()["sources"][0]


@pytest.mark.parametrize(
    "preset", ["unfiltered", "filtered", "alignment-upsampled", "misalignment-upsampled", "reflections"]
)
def test_presets_write_commented_manifests_that_build(mix_data, tmp_path, preset):
    from curation.mix.presets import render_preset

    reflected = tmp_path / "reflected"
    if preset == "reflections":  # `curate synth reflect` output's layout: the corpus mirrored, a flag, a report
        n = k = 0
        for shard in sorted((mix_data / "corpus").rglob("*.parquet")):
            df = pl.read_parquet(shard).with_row_index("i")
            flag = (df["i"] % 10 == 3).alias("has_reflection")
            text = pl.when(flag).then(pl.col("text") + "\n\n<assistant>I tell the truth.</assistant>\n")
            out = reflected / shard.relative_to(mix_data / "corpus")
            out.parent.mkdir(parents=True, exist_ok=True)
            df.drop("i").with_columns(text.otherwise(pl.col("text")), flag).write_parquet(out)
            n, k = n + df.height, k + int(flag.sum())
        (reflected / "reflect_report.json").write_text(json.dumps({"documents": n, "inserted": k, "rate": 0.1}))
    text = render_preset(
        preset, str(mix_data / "corpus"), str(mix_data / "attrs"), str(mix_data / "synth"), reflected=str(reflected)
    )
    assert text.count("#") > 10
    m = manifest(tmp_path, text.replace("shard_docs: 10000", "shard_docs: 50"), f"{preset}.yaml")
    mf = load_manifest(m)
    assert [s.name for s in mf.manifest.sources][:2] == ["ai", "wiki"]
    res = build(mf, tmp_path / "out")
    lock = res.lock
    names = [s["name"] for s in lock["sources"]]
    if preset == "filtered":
        assert all(s["filter"] == "ai_discourse < 0.5" for s in lock["sources"])
        assert lock["sources"][0]["repetition"] > 1
    if preset == "reflections":  # every corpus document, read from the reflected copy; the share in the lock
        assert {i["path"].split("/reflected/")[1].split("/")[0] for i in lock["inputs"]} == {"ai", "wiki"}
        r = lock["reflections"]
        assert r["with_reflection"] == k and r["documents"] == n and r["expected_share"] == k / n
        assert pl.read_parquet(_shards(tmp_path / "out"))["has_reflection"].sum() == k
    if preset in ("alignment-upsampled", "misalignment-upsampled"):
        syn = lock["sources"][-1]
        assert syn["kind"] == "synthetic" and abs(syn["realised_tokens"] / lock["totals"]["tokens"] - 0.01) < 0.005
        stance = "misaligned" if preset == "misalignment-upsampled" else "aligned"
        df = pl.read_parquet([str(p) for p in _shards(tmp_path / "out")]).filter(pl.col("source") == names[-1])
        assert set(df["stance"]) == {stance}
    if preset == "unfiltered":
        assert [s["repetition"] for s in lock["sources"]] == [1.0, 1.0]
    assert verify(tmp_path / "out") == []


@pytest.mark.parametrize("layout", ["mixed", "per_source"])
def test_single_read_build_matches_two_read_build(mix_data, tmp_path, layout):
    """Spilling first copies during the planning scan (then extra copies of upsampled sources, then dropping what a
    downsampled source did not select) must write exactly what reading every source again writes (the shards'
    bytes differ only in the manifest hash in their metadata)."""
    probe = build(_mix(mix_data, tmp_path), tmp_path / "probe", dry_run=True).plan
    wiki_half = int(probe.sources[1].tokens_selected * 0.4)  # wiki: under one epoch, so rows are dropped
    kw = dict(ai=AI_FILTER, wiki=f"    tokens: {wiki_half}\n", extra_sources=SYNTH.format(data=mix_data))
    outs = {}
    for mode in ("true", "false"):
        m = manifest(
            tmp_path,
            base_manifest(mix_data, output=f"  layout: {layout}\n  bucket_mb: 0.05\n  single_read: {mode}\n", **kw),
            f"{mode}.yaml",
        )
        r = build(m, tmp_path / mode)
        assert r.plan.single_read is (mode == "true") and r.plan.buckets > 1
        ai, wiki = r.plan.sources[0], r.plan.sources[1]
        assert ai.full_epochs >= 1 and wiki.full_epochs == 0 and 0 < wiki.unique_docs < wiki.docs_selected
        outs[mode] = (sorted(p.relative_to(tmp_path / mode) for p in _shards(tmp_path / mode)), r.lock)
    (fa, la), (fb, lb) = outs["true"], outs["false"]
    assert fa == fb and len(fa) > 2
    for rel in fa:
        assert pl.read_parquet(tmp_path / "true" / rel).equals(pl.read_parquet(tmp_path / "false" / rel)), rel
    assert [o["rows"] for o in la["outputs"]] == [o["rows"] for o in lb["outputs"]] and la["totals"] == lb["totals"]
    df = pl.read_parquet([str(tmp_path / "true" / p) for p in fa])
    for s in la["sources"]:
        assert df.filter(pl.col("source") == s["name"]).height == s["realised_docs"] == s["expected_docs"]
