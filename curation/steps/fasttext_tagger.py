"""Stage 2: fastText models for AI discourse and stance."""

from __future__ import annotations

import os
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from curation.steps.base import STANCES, TaggerStep, attrs, scorable, text_series
from curation.lexicon import Lexicon
from curation.textnorm import fasttext_lines, keyword_tokens, spread_sample


def load_fasttext(path: str, dequantize: bool = True):
    """A fastText model; a quantized one (.ftz) gets its input matrix dequantized in memory (`dequantized`).

    fastText rebuilds each input row from its product-quantizer codes on every lookup; with the rows stored dense,
    prediction is ~1.5x faster and gives bit-identical probabilities (a dequantized row is the same float products).
    """
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None  # silence the load-time deprecation warning
    model = fasttext.load_model(path)
    if dequantize and model.f.isQuant():
        dense = dequantized(path)
        if dense is not None:
            model.set_matrices(*dense)
    return model


def dequantized(path: str, max_bytes: int = 256 << 20) -> tuple[np.ndarray, np.ndarray] | None:
    """(input matrix, output matrix) of a quantized fastText model file, as fastText's own row lookups compute them.

    Read straight from the file (fastText's Python API refuses to return quantized matrices). None where the file
    is not the layout this reads (format version 12, quantized input, dense output) or the dense rows would take
    more than `max_bytes` (a model quantized without `cutoff` keeps every hash bucket): then the model stays as is.
    """
    b = Path(path).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        out = struct.unpack_from(fmt, b, pos)
        pos += struct.calcsize(fmt)
        return out

    def floats(n: int, dtype=np.float32) -> np.ndarray:
        nonlocal pos
        arr = np.frombuffer(b, dtype=dtype, count=n, offset=pos)
        pos += arr.nbytes
        return arr

    try:
        magic, version = take("<ii")
        if magic != 793712314 or version != 12:
            return None
        take("<12id")  # training arguments
        size, _nwords, _nlabels, _ntokens, pruned = take("<iiiqq")
        for _ in range(size):  # dictionary entries: word\0, count int64, type int8
            pos = b.index(b"\0", pos) + 1 + 8 + 1
        pos += max(pruned, 0) * 8  # pruned bucket index: (int32, int32) pairs
        quant_input, qnorm = take("<??")
        if not quant_input:
            return None
        rows, dim, codesize = take("<qqi")
        if rows * dim * 4 > max_bytes:
            return None
        codes = floats(codesize, np.uint8).reshape(rows, -1)
        pq_dim, nsubq, dsub, lastdsub = take("<iiii")
        centroids = floats(pq_dim * 256)
        norms = None
        if qnorm:
            norm_codes = floats(rows, np.uint8)
            take("<iiii")
            norms = floats(256)[norm_codes]
        (qout,) = take("<?")
        if qout or pq_dim != dim or codes.shape[1] != nsubq:
            return None
        out_rows, out_dim = take("<qq")
        output = floats(out_rows * out_dim).reshape(out_rows, out_dim).copy()
        if pos != len(b):
            return None
    except (struct.error, ValueError):
        return None
    if lastdsub == dsub:  # one gather: sub-quantizer j's centroid codes[i, j] for every row i
        dense = centroids.reshape(nsubq, 256, dsub)[np.arange(nsubq), codes].reshape(rows, dim)
    else:  # ProductQuantizer::get_centroids: the last sub-quantizer is narrower
        dense = np.empty((rows, dim), np.float32)
        for j in range(nsubq):
            width = lastdsub if j == nsubq - 1 else dsub
            table = centroids[j * 256 * dsub: j * 256 * dsub + 256 * width].reshape(256, width)
            dense[:, j * dsub: j * dsub + width] = table[codes[:, j]]
    if norms is not None:
        dense *= norms[:, None]
    return dense, output


@lru_cache(maxsize=4)
def _cached_fasttext(path: str, mtime_ns: int, size: int):
    return load_fasttext(path)


def shared_fasttext(path: str):
    """The model at `path`, loaded once per process (reloaded if the file changes).

    Datatrove unpickles a fresh pipeline for every task, one per shard by default, so a model held by the step would
    be reloaded per shard (~15 ms for the two models: most of a small shard's fixed cost).
    """
    st = os.stat(path)
    return _cached_fasttext(path, st.st_mtime_ns, st.st_size)


def label_probs(model, lines: list[str], labels: tuple[str, ...]) -> list[dict[str, float]]:
    """Probabilities of every label for each line (fastText's softmax over all labels, k=-1)."""
    got_labels, got_probs = model.predict(lines, k=-1)
    out = []
    for ls, ps in zip(got_labels, got_probs):
        d = {label: 0.0 for label in labels}
        for label, p in zip(ls, ps):
            d[label.removeprefix("__label__")] = float(p)
        out.append(d)
    return out


def label_prob(model, lines: list[str], label: str) -> list[float]:
    """The probability of one label for each line (as `label_probs`, without a dict per line)."""
    key = f"__label__{label}"
    got_labels, got_probs = model.predict(lines, k=-1)
    return [float(ps[ls.index(key)]) if key in ls else 0.0 for ls, ps in zip(got_labels, got_probs)]


@lru_cache(maxsize=1)
def default_lexicon() -> Lexicon:
    return Lexicon.load()


def model_inputs(texts: list[str] | pl.Series, known: list[dict] | None = None, max_chars: int = 20_000) -> list[str]:
    """fastText input lines: keyword evidence tokens + normalised text (the same in `curate fit` and tagging)."""
    if known and all("kw_words" in a for a in known):
        counts = {"strong": [a["kw_strong"] for a in known], "cs": [a["kw_case_sensitive"] for a in known],
                  "words": [a["kw_words"] for a in known]}
    else:
        counts = default_lexicon().count_batch(texts)
    lines = fasttext_lines(texts, max_chars)
    return [f"{keyword_tokens(int(s), int(c), int(w))} {line}" for s, c, w, line in zip(counts["strong"], counts["cs"], counts["words"], lines)]


class FastTextTagger(TaggerStep):
    name = "⚡ fastText AI-discourse + stance"
    batch_size = 512

    def __init__(self, ai_model: str, stance_model: str, only_candidates: bool = True, max_chars: int = 20_000,
                 stance_min_ai: float = 0.1, screen_chars: int = 750, screen_chunks: int = 3, screen_min_ai: float = 0.3):
        super().__init__()
        self.stance_min_ai = stance_min_ai  # stance is "given AI discourse": not worth a second model pass on the rest
        self.ai_model, self.stance_model = ai_model, stance_model
        self.only_candidates = only_candidates
        self.max_chars = max_chars
        self.screen_chars, self.screen_chunks, self.screen_min_ai = screen_chars, screen_chunks, screen_min_ai
        self._ai = self._stance = None

    def columns(self):
        return {"ft_ai": pa.float32(), **{f"ft_stance_{s}": pa.float32() for s in STANCES}}

    def _cascade(self, docs: list, texts: pl.Series) -> list[int]:
        """Positions (in `docs`) of the documents the cascade scores: keyword candidates, and the others whose
        screen sample already scores at least `screen_min_ai`.

        Keywords alone miss about one in eight of the documents the model calls AI discourse (AI text that never
        names AI, and the model's own false positives); all of them are longer than the screen. The screen scores
        `screen_chars` characters of each of the rest, in `screen_chunks` pieces spread over the part the full score
        reads (`spread_sample`), with the same model on the normalised text alone: the keyword tokens say "no hit"
        for all of these documents and would outweigh a short sample, though not the full text. On the real corpus
        (benchmarks/classify_throughput.py) 750 characters in 3 pieces at 0.3 pass ~4% of the rest and keep ~0.98
        of fastText-on-all's positives; the first 1000 characters with the keyword tokens kept 0.95 for more time.
        """
        todo, rest = [], []
        for i, d in enumerate(docs):
            (todo if attrs(d).get("kw_candidate", True) else rest).append(i)
        if rest and self.screen_chars:
            sample = spread_sample(texts.gather(rest), self.screen_chars, self.screen_chunks, self.max_chars)
            probs = label_prob(self._ai, fasttext_lines(sample, self.screen_chars + self.screen_chunks), "ai")
            passed = [i for i, p in zip(rest, probs) if p >= self.screen_min_ai]
            self.stat_update("screened_in", value=len(passed))
            todo = sorted(todo + passed)
        return todo

    def tag_batch(self, docs):
        if self._ai is None:
            self._ai, self._stance = shared_fasttext(self.ai_model), shared_fasttext(self.stance_model)
        docs = [d for d in docs if scorable(d)]
        texts = text_series(docs)
        todo = self._cascade(docs, texts) if self.only_candidates else list(range(len(docs)))
        self.stat_update("skipped_by_cascade", value=len(docs) - len(todo))
        if not todo:
            return
        scored = [docs[i] for i in todo]
        a_scored = [attrs(d) for d in scored]
        lines = model_inputs(texts if len(todo) == len(docs) else texts.gather(todo), a_scored, self.max_chars)
        p_ai = label_prob(self._ai, lines, "ai")
        for a, p in zip(a_scored, p_ai):
            a["ft_ai"] = p
        likely = [i for i, p in enumerate(p_ai) if p >= self.stance_min_ai]
        self.stat_update("stance_scored", value=len(likely))
        if likely:
            for i, ps in zip(likely, label_probs(self._stance, [lines[i] for i in likely], STANCES)):
                a = a_scored[i]
                for s in STANCES:
                    a[f"ft_stance_{s}"] = ps[s]
