"""The classify stages by name, their declared dependencies, and the datatrove range the executors are tested with."""

from __future__ import annotations

import pytest

from curation.classify.config import ClassifyConfig
from curation.classify.executors import SUPPORTED, check_datatrove_version
from curation.classify.models import resolve
from curation.classify.predict import score_texts
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
