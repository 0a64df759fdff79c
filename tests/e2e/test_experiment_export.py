"""`curate experiment export | run-pack | import` on the cheapest node kind (mix, on a copy of the demo corpus): the
pack holds the graph unchanged and the corpus under inputs/, the pack runs with the original corpus gone (paths.json
moves it at load time), and import refuses results of another graph, a file no exported node writes, a node said
finished without its marker, and unfinished nodes, leaving the directory as it was; then imports, and keeps what is
finished on a second import."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile

import yaml
from conftest import REPO

DEMO = REPO / "curate" / "data" / "demo_corpus"
ITEMS = REPO / "evals" / "data" / "demo" / "propensity"


def _curate(*args, ok=True):
    r = subprocess.run(
        [sys.executable, "-m", "curate", "experiment", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert (r.returncode == 0) == ok, f"{args[0]}: {r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r


def _experiment(tmp_path, corpus, name="packed", max_epochs=8):
    manifest = tmp_path / f"{name}-all.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {"name": "all", "seed": 0, "sources": [{"name": "demo", "path": str(corpus), "max_epochs": max_epochs}]}
        )
    )
    exp = {
        "name": name,
        # attributes given (the manifest filters on none of them): no classify node, mix is the first
        "inputs": {"corpus": str(corpus), "attributes": str(tmp_path / "attrs")},
        "conditions": [{"name": "all", "manifest": str(manifest)}],
        "evals": {"propensity": [{"name": "demo", "items": [str(ITEMS)], "limit_per_file": 2}]},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path


def _retar(src, dst, drop=(), add=None, record=None):
    with tarfile.open(src) as tin, tarfile.open(dst, "w:gz") as tout:
        for m in tin.getmembers():
            if any(m.name.endswith(d) for d in drop):
                continue
            data = tin.extractfile(m) if m.isfile() else None
            if m.name == "results.json" and record is not None:
                body = json.dumps(record(json.loads(data.read()))).encode()
                m.size, data = len(body), __import__("io").BytesIO(body)
            tout.addfile(m, data)
        if add:
            import io

            info = tarfile.TarInfo(add)
            info.size = 1
            tout.addfile(info, io.BytesIO(b"x"))


def test_export_run_pack_import_and_its_refusals(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(DEMO, corpus)
    (tmp_path / "attrs").mkdir()
    exp = _experiment(tmp_path, corpus)
    out, pack, work, res = tmp_path / "exp", tmp_path / "pack", tmp_path / "work", tmp_path / "res"

    _curate("export", exp, "-d", out, "--only", "mix", "-o", pack)
    assert (pack / "graph.json").read_bytes() == (out / "graph.json").read_bytes()  # no substitution in the graph
    paths = json.loads((pack / "paths.json").read_text())["paths"]
    assert paths[str(corpus)] == "inputs/0/corpus" and (pack / "inputs" / "0" / "corpus").is_dir()
    manifest = json.loads((pack / "pack.json").read_text())
    assert list(manifest["nodes"]) == ["all/mix"] and manifest["carried"] == {}
    _curate("export", exp, "-d", out, "--only", "eval", "-o", tmp_path / "p2", ok=False)  # needs unfinished nodes

    corpus.rename(tmp_path / "hidden")  # the other machine has none of this one's paths
    try:
        ran = _curate("run-pack", pack, "-o", work, "--results", res)
    finally:
        (tmp_path / "hidden").rename(corpus)
    assert "1 nodes to run" in ran.stderr and (res / "results.tar.gz").is_file()
    mix_dir = json.loads((out / "graph.json").read_text())["nodes"][0]["dir"]
    assert not (out / mix_dir).exists()

    # refusals, each leaving the experiment directory as it was
    other = _experiment(tmp_path, corpus, name="other", max_epochs=4)
    _curate("export", other, "-d", tmp_path / "other", "--only", "mix", "-o", tmp_path / "other-pack")
    r = _curate("import", res, "--into", tmp_path / "other", ok=False)
    assert "exported from another graph" in r.stderr
    tgz = res / "results.tar.gz"
    _retar(tgz, tmp_path / "extra.tar.gz", add="nodes/_shared/stray.txt")
    r = _curate("import", tmp_path / "extra.tar.gz", "--into", out, ok=False)
    assert "which no exported node writes" in r.stderr
    _retar(tgz, tmp_path / "nomarker.tar.gz", drop=("/node.json",))
    r = _curate("import", tmp_path / "nomarker.tar.gz", "--into", out, ok=False)
    assert "lack its marker or files" in r.stderr
    _retar(tgz, tmp_path / "unfinished.tar.gz", drop=("/node.json",), record=lambda rec: {**rec, "finished": []})
    r = _curate("import", tmp_path / "unfinished.tar.gz", "--into", out, ok=False)
    assert "1 exported nodes unfinished (all/mix)" in r.stderr
    assert not (out / mix_dir).exists() and not list(out.glob(".import-*"))

    got = _curate("import", res, "--into", out)
    assert "imported 1 nodes" in got.stdout
    from curate.experiment.plan import make_plan

    plan = make_plan(exp, out, check_budgets=False)
    assert plan.done["all/mix"] and not plan.done["all/tokens"]  # finished here now, its files with it
    marker = (out / mix_dir / "node.json").read_bytes()
    again = _curate("import", res, "--into", out)
    assert "imported 0 nodes" in again.stdout and "kept" in again.stderr
    assert (out / mix_dir / "node.json").read_bytes() == marker
