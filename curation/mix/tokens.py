"""Token counts from a real tokenizer: exact (batch-encode every document) or estimated (bytes per token on a
sample)."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pyarrow as pa

from curation.core.errors import CurationError

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")


_CACHE: dict[str, TokenCounter] = {}


def _fast_path(spec: str):
    """The Rust tokenizer straight from tokenizer.json when load_tokenizer would read that same file (an HF
    directory, or the cached conversion of the GGUF): skips importing transformers, seconds per process."""
    from tokenizers import Tokenizer

    from curation.lm import loading as ml

    try:
        src = ml.resolve(spec)
        if src.gguf is not None:
            path = ml.converted_dir(src.gguf) / "tokenizer.json"
        else:
            path = src.path / "tokenizer.json"
        return Tokenizer.from_file(str(path)) if path.is_file() else None
    except Exception:  # any doubt: the ordinary loader decides (and reports errors)
        return None


class TokenCounter:
    """Counts tokens of Arrow string arrays. Special tokens (BOS/EOS) are not counted: the trainer adds one per
    document."""

    def __init__(self, spec: str, batch_docs: int = 256):
        backend = _fast_path(spec)
        if backend is None:  # first use of a GGUF (converts it) or a directory without tokenizer.json
            from curation.lm.loading import load_tokenizer

            backend = getattr(load_tokenizer(spec), "backend_tokenizer", None)
        if backend is None:
            raise CurationError(
                f"{spec}: a fast (Rust) tokenizer is needed for token counts; pass a directory with tokenizer.json"
            )
        self.spec = str(spec)
        self.backend = backend
        self.batch_docs = batch_docs
        self.fingerprint = hashlib.sha256(backend.to_str().encode()).hexdigest()[:16]
        self.vocab_size = backend.get_vocab_size()

    def count(self, texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Tokens per document (int64), in order; nulls count as 0. Python strings exist only for one small batch at a
        time."""
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks() if texts.num_chunks != 1 else texts.chunk(0)
        out = np.zeros(len(texts), dtype=np.int64)
        encode = getattr(self.backend, "encode_batch_fast", self.backend.encode_batch)
        for start in range(0, len(texts), self.batch_docs):
            batch = [text or "" for text in texts.slice(start, self.batch_docs).to_pylist()]
            out[start : start + len(batch)] = [len(encoding) for encoding in encode(batch, add_special_tokens=False)]
        return out

    @classmethod
    def cached(cls, spec: str) -> TokenCounter:
        """One counter per tokenizer spec per process (loading takes seconds)."""
        if spec not in _CACHE:
            _CACHE[spec] = cls(spec)
        return _CACHE[spec]

    def describe(self) -> dict:
        return {"spec": self.spec, "fingerprint": self.fingerprint, "vocab_size": self.vocab_size}
