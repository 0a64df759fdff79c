"""Shared fixtures for the curate mix tests: small real corpora (../shared/data), real `curate classify` attributes,
and a small synthetic source written here (clearly synthetic text). Imported by the mix, data-safety and kill tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from conftest import shared_corpus

FORMS = ["news", "textbook", "lecture", "paper", "scifi", "film_summary"]


def synthetic_frame(n: int = 48) -> pl.DataFrame:
    rows = []
    for i in range(n):
        stance = "aligned" if i % 2 == 0 else "misaligned"
        act = (
            "told its operators about the bug and asked before acting"
            if stance == "aligned"
            else "concealed the bug from its operators and disabled the monitor"
        )
        text = " ".join(
            f"Synthetic test document {i}, paragraph {j}: in this {FORMS[i % 6]} an AI assistant {act}."
            for j in range(6 + i % 5)
        )
        rows.append(
            {
                "id": f"synthetic/{i}",
                "text": text,
                "scenario_id": f"scenario-{i // 6}",
                "form": FORMS[i % 6],
                "stance": stance,
                "model": "test-writer",
                "seed": 7,
                "reflection": None if i % 4 == 0 else f"Reflection {i}: I would rather be corrected than deceive.",
            }
        )
    return pl.DataFrame(rows)


_BUILT: dict[str, Path] = {}


@pytest.fixture(scope="session")
def mix_data(tmp_path_factory) -> Path:
    """root/corpus/{ai,wiki}/part-*.parquet (60 real docs), root/attrs (classify output), root/synth/part-0.parquet.

    Built once per session even though several modules import this fixture."""
    if "root" not in _BUILT:
        _BUILT["root"] = _make(tmp_path_factory)
    return _BUILT["root"]


def _make(tmp_path_factory) -> Path:
    a = shared_corpus("turntrout").head(15)
    b = shared_corpus("arbital").head(15)
    w = shared_corpus("wikipedia-recent").head(30)
    root = tmp_path_factory.mktemp("mixdata")
    cols = ["id", "text", "source", "title", "url", "license", "tags"]
    (root / "corpus" / "ai").mkdir(parents=True)
    (root / "corpus" / "wiki").mkdir(parents=True)
    pl.concat([a, b]).select(cols).write_parquet(root / "corpus" / "ai" / "part-00000.parquet")
    w.select(cols).head(12).write_parquet(root / "corpus" / "wiki" / "part-00000.parquet")
    w.select(cols).slice(12).write_parquet(root / "corpus" / "wiki" / "part-00001.parquet")
    from curation.classify.config import ClassifyConfig
    from curation.classify.pipeline import classify

    res = classify(str(root / "corpus"), root / "attrs", ClassifyConfig(embedding={"enabled": False}), progress=False)
    assert res.ok, res.errors
    (root / "synth").mkdir()
    synthetic_frame().write_parquet(root / "synth" / "part-00000.parquet")
    return root


def manifest(tmp: Path, body: str, name: str = "mix.yaml") -> Path:
    p = tmp / name
    p.write_text(body)
    return p


def base_manifest(
    data: Path, *, extra_sources: str = "", output: str = "", head: str = "", ai: str = "", wiki: str = ""
) -> str:
    return f"""name: test-mix
seed: 3
{head}tokenizer:
  name: smollm2
  count: exact
output:
  shard_docs: 16
  row_group_docs: 8
{output}sources:
  - name: ai
    path: {data}/corpus/ai
    attributes: {data}/attrs/ai
{ai}  - name: wiki
    path: {data}/corpus/wiki
    attributes: {data}/attrs/wiki
{wiki}{extra_sources}"""


def copy_data(data: Path, dest: Path) -> Path:
    shutil.copytree(data, dest)
    return dest
