"""Fixtures: small real corpora cut from ../shared/data (the package itself never reads ../shared)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
CURATE = [sys.executable, "-m", "curate"]


def shared_corpus(source: str) -> pl.DataFrame:
    path = SHARED / "corpus" / source
    if not path.is_dir():
        pytest.skip(f"{path} not present")
    return pl.read_parquet(str(path / "*.parquet"))


@pytest.fixture(scope="session")
def mixed_docs() -> pl.DataFrame:
    """60 real documents: AI-heavy TurnTrout/Arbital posts and ordinary Wikipedia articles."""
    a = shared_corpus("turntrout").head(15)
    b = shared_corpus("arbital").head(15)
    c = shared_corpus("wikipedia-recent").head(30)
    return pl.concat([a, b, c]).select("id", "text", "source", "title")


def write_corpus(root: Path, df: pl.DataFrame, layout: dict[str, slice]) -> dict[str, pl.DataFrame]:
    """Writes slices of df as shards named by `layout` keys (suffix picks the format)."""
    out = {}
    for rel, sl in layout.items():
        part = df[sl]
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".parquet"):
            part.write_parquet(path)
        elif rel.endswith(".jsonl.gz"):
            with gzip.open(path, "wt", encoding="utf-8") as f:
                for row in part.iter_rows(named=True):
                    f.write(json.dumps(row) + "\n")
        else:
            part.write_ndjson(path)
        out[rel] = part
    return out


def curate(*args, check: bool = False, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, **(env or {})}
    proc = subprocess.run([*CURATE, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=e)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"curate {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def make_tiny_llama(out: Path, seed: int = 0) -> Path:
    """A random 2-layer Llama (hidden 64) with the SmolLM2 tokenizer, saved as a Hugging Face directory: loads and
    runs in well under a second, for smoke tests of commands that need a model."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from curation.lm.loading import hf_directory, load_tokenizer

    tok = load_tokenizer(hf_directory("smollm2"))
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama") / "model")
