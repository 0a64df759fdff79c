"""The classify stages by name (an open registry: a new one needs no config edit), their declared dependencies,
and the datatrove range the executors are tested with."""

from __future__ import annotations

import pytest
from pydantic import Field

from curation.classify.config import ClassifyConfig
from curation.classify.executors import SUPPORTED, check_datatrove_version
from curation.classify.models import resolve
from curation.classify.predict import score_texts
from curation.classify.registry import TaggerConfig, register_tagger
from curation.classify.steps.base import TaggerStep, attrs, scorable
from curation.classify.taggers import TAGGERS, build_taggers, tagger
from curation.core.errors import CurationError


def test_unknown_stage_is_a_one_line_error_naming_the_known_ones():
    with pytest.raises(
        CurationError, match=r"unknown tagging stage 'fasttext2'; known stages: keyword, fasttext, embedding"
    ):
        tagger("fasttext2")


def test_pipeline_and_predict_run_the_same_stages_in_cascade_order():
    cfg = ClassifyConfig.validated({"embedding": {"enabled": False}})
    steps = build_taggers(cfg, resolve(cfg.model))
    assert [type(s).__name__ for s in steps] == ["KeywordTagger", "FastTextTagger", "FinalScores"]
    assert list(TAGGERS)[:2] == ["keyword", "fasttext"]
    got = score_texts(["An AI system hid its goals from its overseers to avoid being shut down."], cfg)[0]
    assert "emb_ai" not in got and got["ai_discourse"] > 0.5 and got["ai_stage"] == "fasttext"


def test_a_step_with_a_missing_dependency_fails_when_built_with_its_install_hint(monkeypatch):
    from curation.classify.steps.fasttext_tagger import FastTextTagger

    monkeypatch.setattr(FastTextTagger, "_requires_dependencies", [("fasttext_not_installed", "fasttext-x")])
    cfg = ClassifyConfig()
    with pytest.raises(
        CurationError, match=r"classify stage 'fasttext': .*pip install fasttext-x.*fasttext.enabled: false"
    ):
        build_taggers(cfg, resolve(cfg.model))


def test_datatrove_outside_the_tested_range_is_refused_before_any_work():
    check_datatrove_version()  # the installed one is in range
    with pytest.raises(CurationError, match=r"datatrove 0\.12\.0 is installed; .*tested with datatrove"):
        check_datatrove_version("0.12.0")
    assert SUPPORTED[0].startswith(">=")


# A new tagger, defined here as a user would: its config section and its step; ClassifyConfig is not edited. It
# counts exclamation marks, after the shipped stages.


class ShoutConfig(TaggerConfig):
    enabled: bool = False  # off unless a config asks for it
    min_marks: int = Field(2, ge=1)


class ShoutTagger(TaggerStep):
    name = "shout"

    def __init__(self, cfg, models):
        super().__init__()
        self.min_marks = cfg.shout.min_marks

    def columns(self):
        import pyarrow as pa

        return {"shout_marks": pa.int32(), "shout": pa.bool_(), "shout_saw_fasttext": pa.bool_()}

    def tag_batch(self, docs):
        for d in docs:
            if scorable(d):
                a = attrs(d)
                a["shout_marks"] = d.text.count("!")
                a["shout"] = a["shout_marks"] >= self.min_marks
                a["shout_saw_fasttext"] = "ft_ai" in a and "ai_discourse" not in a  # cascade order


@pytest.fixture
def shout():
    """The registration (in a module: `@register_tagger("shout", ShoutConfig)` on the class), undone afterwards so
    that the other tests of this process see the shipped registry."""
    register_tagger("shout", ShoutConfig)(ShoutTagger)
    yield
    del TAGGERS["shout"]


def test_a_new_tagger_is_a_class_and_a_registration_with_its_own_yaml_section(tmp_path, shout):
    import json

    import polars as pl
    from conftest import REPO

    from curation.classify.pipeline import classify

    corpus = REPO / "curate" / "data" / "demo_corpus"
    docs = pl.read_ndjson(sorted(corpus.glob("*.jsonl"))[0]).select("id", "text").head(12)
    docs = docs.with_columns(
        pl.when(pl.int_range(pl.len()) % 3 == 0).then(pl.col("text") + " Wow!!!").otherwise("text")
    )
    (tmp_path / "c").mkdir()
    docs.write_ndjson(tmp_path / "c" / "demo.jsonl")
    yaml = tmp_path / "cfg.yaml"
    yaml.write_text("embedding: {enabled: false}\nshout:\n  enabled: true\n  min_marks: 3\n")
    cfg = ClassifyConfig.from_yaml(yaml)
    assert cfg.shout.min_marks == 3 and cfg.model_dump()["shout"] == {"enabled": True, "min_marks": 3}
    res = classify(str(tmp_path / "c"), tmp_path / "attrs", cfg, progress=False)
    assert res.ok, res.errors
    got = pl.read_parquet(tmp_path / "attrs" / "demo.parquet")
    want = [t.count("!") for t in docs["text"]]
    assert got["shout_marks"].to_list() == want and got["shout"].to_list() == [n >= 3 for n in want]
    assert any(got["shout"]) and not all(got["shout"]) and got["shout_saw_fasttext"].all()
    assert json.loads((tmp_path / "attrs" / "summary.json").read_text())["config"]["shout"]["min_marks"] == 3
    # its section is validated by its own model, with the usual one-line error
    yaml.write_text("shout: {min_marks: 0}\n")
    with pytest.raises(CurationError, match=r"cfg.yaml: `shout.min_marks`: .*greater than or equal to 1"):
        ClassifyConfig.from_yaml(yaml)
    yaml.write_text("shuot: {enabled: true}\n")
    with pytest.raises(CurationError, match=r"cfg.yaml: `shuot`: unknown field"):
        ClassifyConfig.from_yaml(yaml)
    # off by default: the shipped cascade is unchanged
    assert [type(s).__name__ for s in build_taggers(ClassifyConfig(), resolve("default"))][-1] == "FinalScores"
    assert "ShoutTagger" not in [type(s).__name__ for s in build_taggers(ClassifyConfig(), resolve("default"))]
