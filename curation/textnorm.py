"""Text normalisation shared by training and tagging, so a model always sees text the way it was trained."""

import re

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]", re.UNICODE)


def fasttext_line(text: str, max_chars: int = 20_000) -> str:
    """Lower-cased, punctuation split off, one line; long documents are cut to `max_chars` characters.

    fastText averages word vectors over the whole line, so the cut bounds cost without changing the average much.
    """
    return " ".join(_TOKEN.findall(text[:max_chars].lower()))


def head_chunks(text: str, words_per_chunk: int = 180, max_chunks: int = 4) -> list[str]:
    """The first few fixed-size word windows of a document, for encoders with a short context (MiniLM: 256 tokens)."""
    words = text.split()
    chunks = [" ".join(words[i : i + words_per_chunk]) for i in range(0, len(words), words_per_chunk)]
    return chunks[:max_chunks] or [""]
