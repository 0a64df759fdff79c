"""Text normalisation shared by training and tagging, so a model always sees text the way it was trained."""

from __future__ import annotations

import math

import polars as pl


def fasttext_lines(texts: list[str] | pl.Series, max_chars: int = 20_000) -> list[str]:
    """Lower-cased, punctuation split off, one line per text, cut to `max_chars` characters (Rust regexes via polars).

    fastText averages word vectors over the whole line, so the cut bounds cost without changing the average much.
    """
    s = texts if isinstance(texts, pl.Series) else pl.Series(texts, dtype=pl.Utf8)
    s = s.str.slice(0, max_chars).str.to_lowercase()
    # every whitespace run becomes one space; written so that single spaces, most of the text, are not matches
    # (the same output as `\s+` -> " ", three times faster)
    s = s.str.replace_all(r"[^\w\s]|_", " $0 ").str.replace_all(r"\s\s+|[^\S ]", " ").str.strip_chars()
    return s.to_list()


def spread_sample(texts: pl.Series, chars: int, chunks: int, span: int = 20_000) -> pl.Series:
    """About `chars` characters of each text: `chunks` pieces of `chars // chunks` characters spread evenly over its
    first `span` characters (first and last piece at the ends), joined by spaces; a text of at most `chars`
    characters within the span is kept whole.

    fastText's score is a function of the average of the line's word (and bigram) vectors, so pieces from across
    the text estimate the full text's score better than a prefix of the same length.
    """
    n = texts.str.len_chars().clip(upper_bound=span)
    width = max(chars // max(chunks, 1), 1)
    if chunks <= 1:
        sample = texts.str.slice(0, width)
    else:
        room = (n - width).clip(lower_bound=0)
        sample = pl.concat_str([texts.str.slice(room * j // (chunks - 1), width) for j in range(chunks)], separator=" ")
    return pl.select(pl.when(n <= chars).then(texts.str.slice(0, n)).otherwise(sample)).to_series()


def _bucket(n: float) -> int:
    return 0 if n <= 0 else min(1 + int(math.log2(n)), 6)


def keyword_tokens(strong: int, acronyms: int, words: int) -> str:
    """Pseudo-words giving fastText the lexicon's evidence directly (hit counts and density, log-bucketed)."""
    density = 1000.0 * (strong + acronyms) / max(words, 1)
    return f"__kws{_bucket(strong)} __kwa{_bucket(acronyms)} __kwd{_bucket(density)}"


def head_chunks(text: str, words_per_chunk: int = 180, max_chunks: int = 4) -> list[str]:
    """The first few fixed-size word windows of a document, for encoders with a short context (MiniLM: 256 tokens)."""
    words = text.split()
    chunks = [" ".join(words[i : i + words_per_chunk]) for i in range(0, len(words), words_per_chunk)]
    return chunks[:max_chunks] or [""]
