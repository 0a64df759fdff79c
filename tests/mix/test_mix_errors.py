"""Bad manifests and bad inputs: each one clear error line naming the manifest file and line (or the input file)."""

from __future__ import annotations

import re

import polars as pl
import pytest
from conftest import curate
from mix_fixtures import base_manifest, copy_data, manifest, mix_data  # noqa: F401

from curation.core.errors import CurationError
from curation.mix import build


def _line_of(text: str, needle: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), 1) if needle in line)


def _error(path, **kw) -> str:
    with pytest.raises(CurationError) as e:
        build(path, path.parent / "out", dry_run=True, **kw)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def _expect(tmp_path, text: str, needle: str, *contains: str):
    """The error names `file:line` of the line holding `needle`, plus every string in `contains`."""
    p = manifest(tmp_path, text)
    msg = _error(p)
    assert msg.startswith(f"{p}:{_line_of(text, needle)}:"), msg
    for c in contains:
        assert c in msg, msg
    return msg


def test_unknown_source_path(mix_data, tmp_path):
    text = base_manifest(mix_data).replace(f"{mix_data}/corpus/wiki", f"{mix_data}/corpus/nope")
    _expect(tmp_path, text, "corpus/nope", "sources[1].path", "(wiki)", "corpus/nope does not exist")


def test_filter_naming_a_missing_column(mix_data, tmp_path):
    text = base_manifest(mix_data, ai='    filter: "ai_discourse < 0.5 AND stance_evil > 0.1"\n')
    _expect(tmp_path, text, "filter:", "sources[0].filter", "`stance_evil`", "stance_misaligned")


def test_filter_without_attributes_says_how_to_get_them(mix_data, tmp_path):
    text = base_manifest(mix_data, wiki='    filter: "ai_discourse < 0.5"\n').replace(
        f"    attributes: {mix_data}/attrs/wiki\n", ""
    )
    _expect(tmp_path, text, "filter:", "`ai_discourse`", "set `attributes`")


def test_unparseable_filter(mix_data, tmp_path):
    _expect(tmp_path, base_manifest(mix_data, ai='    filter: "ai_discourse <"\n'), "filter:", "cannot parse")


@pytest.mark.parametrize(
    "field,needle,contains",
    [
        ("    weight: 1.5\n", "weight:", ["sources[0].weight", "less than or equal to 1"]),
        ("    weight: -0.2\n", "weight:", ["sources[0].weight", "greater than 0"]),
        ("    weight: 0.3\n    tokens: 1000\n", "tokens:", ["sources[0].tokens", "not both"]),
        ("    max_epochs: 0\n", "max_epochs:", ["sources[0].max_epochs"]),
        ('    fliter: "ai_discourse < 0.5"\n', "fliter", ["unknown field `fliter`"]),
    ],
)
def test_schema_errors_name_the_field_and_line(mix_data, tmp_path, field, needle, contains):
    _expect(tmp_path, base_manifest(mix_data, ai=field), needle, *contains)


def test_weights_that_do_not_add_up(mix_data, tmp_path):
    # shares of the whole mix summing to 1 or more with no room left for the other source
    text = base_manifest(mix_data, ai="    weight: 0.6\n", wiki="    weight: 0.5\n")
    _expect(tmp_path, text, "weight: 0.6", "sum to 1.1")
    # with target_tokens every token must be assigned
    text = base_manifest(mix_data, head="target_tokens: 100000\n", ai="    weight: 0.3\n", wiki="    weight: 0.5\n")
    _expect(tmp_path, text, "weight: 0.3", "sum to 0.8", "target_tokens")


def test_budget_over_the_repetition_cap(mix_data, tmp_path):
    text = base_manifest(mix_data, wiki="    tokens: 10000000\n    max_epochs: 2\n")
    _expect(tmp_path, text, "max_epochs: 2", "(wiki)", "epochs", "over max_epochs 2")


def test_target_tokens_too_big_for_the_sources(mix_data, tmp_path):
    text = base_manifest(mix_data, head="target_tokens: 50000000\n")
    msg = _expect(tmp_path, text, "- name: ai", "sources[0] (ai)", "over max_epochs 4")
    assert "needs" in msg


def test_select_on_a_corpus_source_and_duplicate_names(mix_data, tmp_path):
    _expect(
        tmp_path,
        base_manifest(mix_data, ai="    select:\n      stance: aligned\n"),
        "select:",
        "sources[0].select",
        "synthetic",
    )
    text = base_manifest(mix_data).replace("name: wiki", "name: ai")
    p = manifest(tmp_path, text)
    second = [number for number, line in enumerate(text.splitlines(), 1) if "- name: ai" in line][1]
    msg = _error(p)
    assert msg.startswith(f"{p}:{second}: sources[1].name") and "used twice" in msg, msg


def test_bad_yaml_and_missing_file(tmp_path):
    p = manifest(tmp_path, "name: x\nsources:\n  - name: [unclosed\n")
    msg = _error(p)
    assert re.match(rf"{re.escape(str(p))}:\d+: not valid YAML", msg), msg
    with pytest.raises(CurationError, match="cannot read the manifest"):
        build(tmp_path / "absent.yaml", tmp_path / "out", dry_run=True)


def test_stale_attributes_name_the_attribute_file(mix_data, tmp_path):
    data = copy_data(mix_data, tmp_path / "data")
    shard = data / "corpus" / "wiki" / "part-00001.parquet"
    pl.read_parquet(shard).head(5).write_parquet(shard)  # corpus changed after `curate classify`
    msg = _error(manifest(tmp_path, base_manifest(data)))
    assert msg.startswith(str(data / "attrs" / "wiki" / "part-00001.parquet")) and "rerun `curate classify`" in msg, msg
    (data / "attrs" / "wiki" / "part-00001.parquet").unlink()
    msg = _error(manifest(tmp_path, base_manifest(data)))
    assert "attrs/wiki/part-00001.parquet is missing" in msg and "sources[1].attributes" in msg, msg


def test_cli_errors_are_one_line_and_output_is_protected(mix_data, tmp_path):
    text = base_manifest(mix_data, ai='    filter: "stance_evil > 0.1"\n')
    p = manifest(tmp_path, text)
    proc = curate("mix", "build", p, "--output", tmp_path / "out", "--no-progress")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {p}:{_line_of(text, 'filter:')}:"), proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out" / "shards").glob("*"))
    # a directory that is not a mix is never overwritten
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    good = manifest(tmp_path, base_manifest(mix_data), "good.yaml")
    proc = curate("mix", "build", good, "--output", other, "--overwrite", "--no-progress")
    assert proc.returncode == 2 and "removes nothing" in proc.stderr and (other / "notes.txt").exists()
    proc = curate("mix", "verify", other)
    assert proc.returncode == 2 and "no lock file" in proc.stderr
    proc = curate("mix", "init", "--preset", "nope")
    assert proc.returncode == 2 and "unknown preset 'nope'" in proc.stderr
