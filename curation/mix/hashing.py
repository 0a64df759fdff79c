"""Stable, vectorised pseudo-randomness (splitmix64 over row numbers) and file content hashes.

Nothing here depends on library versions (polars' hash is not stable across releases), so the same manifest, seed
and inputs give the same selection and order on any machine.
"""

from __future__ import annotations

import hashlib

import numpy as np

from curation.core.digests import file_sha256  # noqa: F401  (re-exported: lock and verify use it)

_U = np.uint64
BINS = 1 << 16  # resolution of the fractional-epoch threshold (see plan.py)


def splitmix64(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = x + _U(0x9E3779B97F4A7C15)
        z = (z ^ (z >> _U(30))) * _U(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _U(27))) * _U(0x94D049BB133111EB)
        return z ^ (z >> _U(31))


def stream_key(seed: int, *parts: str) -> np.uint64:
    """A 64-bit key for one random stream (seed, source name, purpose)."""
    h = hashlib.sha256("\x1f".join([str(seed), *parts]).encode()).digest()
    return _U(int.from_bytes(h[:8], "little"))


def row_hash(key: np.uint64, rows: np.ndarray) -> np.ndarray:
    """Independent 64-bit values for global row numbers `rows` of the stream `key`."""
    return splitmix64(splitmix64(np.asarray(rows, dtype=np.uint64)) ^ key)


def hash_bins(h: np.ndarray) -> np.ndarray:
    return (h >> _U(48)).astype(np.int64)
