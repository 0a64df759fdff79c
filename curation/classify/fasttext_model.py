"""The fastText runtime of the classifier: train, load and predict, kept together as Dolma's fastText tagger keeps them.

`curate fit` trains with it, the pipeline's FastTextTagger and the scripts predict with it; `model_inputs` is the one
definition of a model's input line, so training and tagging cannot drift apart.
"""

from __future__ import annotations

import os
import struct
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from curation.classify.lexicon import Lexicon
from curation.classify.textnorm import fasttext_lines, keyword_tokens


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
            table = centroids[j * 256 * dsub : j * 256 * dsub + 256 * width].reshape(256, width)
            dense[:, j * dsub : j * dsub + width] = table[codes[:, j]]
    if norms is not None:
        dense *= norms[:, None]
    return dense, output


@lru_cache(maxsize=4)
def _cached_fasttext(path: str, stamp: tuple):
    return load_fasttext(path)


def shared_fasttext(path: str):
    """The model at `path`, loaded once per process (reloaded if the file changes).

    Datatrove unpickles a fresh pipeline for every task, one per shard by default, so a model held by the step would
    be reloaded per shard (~15 ms for the two models: most of a small shard's fixed cost).
    """
    st = os.stat(path)  # ctime too: a rewrite with its mtime restored is still a new file
    return _cached_fasttext(path, (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))


def label_probs(model, lines: list[str], labels: tuple[str, ...]) -> list[dict[str, float]]:
    """Probabilities of every label for each line (fastText's softmax over all labels, k=-1)."""
    got_labels, got_probs = model.predict(lines, k=-1)
    out = []
    for ls, ps in zip(got_labels, got_probs, strict=False):
        d = {label: 0.0 for label in labels}
        for label, p in zip(ls, ps, strict=False):
            d[label.removeprefix("__label__")] = float(p)
        out.append(d)
    return out


def label_prob(model, lines: list[str], label: str) -> list[float]:
    """The probability of one label for each line (as `label_probs`, without a dict per line)."""
    key = f"__label__{label}"
    got_labels, got_probs = model.predict(lines, k=-1)
    return [float(ps[ls.index(key)]) if key in ls else 0.0 for ls, ps in zip(got_labels, got_probs, strict=False)]


@lru_cache(maxsize=1)
def default_lexicon() -> Lexicon:
    return Lexicon.load()


def model_inputs(texts: list[str] | pl.Series, known: list[dict] | None = None, max_chars: int = 20_000) -> list[str]:
    """fastText input lines: keyword evidence tokens + normalised text (the same in `curate fit` and tagging)."""
    if known and all("kw_words" in a for a in known):
        counts = {
            "strong": [a["kw_strong"] for a in known],
            "cs": [a["kw_case_sensitive"] for a in known],
            "words": [a["kw_words"] for a in known],
        }
    else:
        counts = default_lexicon().count_batch(texts)
    lines = fasttext_lines(texts, max_chars)
    return [
        f"{keyword_tokens(int(s), int(c), int(w))} {line}"
        for s, c, w, line in zip(counts["strong"], counts["cs"], counts["words"], lines, strict=False)
    ]


def train_fasttext(lines: list[str], out: Path, p) -> None:
    """Trains a supervised model on `__label__X text` lines and saves it quantized (.ftz) to `out`.

    `p` carries the hyper-parameters (`curation.classify.fit.FitParams`: epoch, lr, word_ngrams, dim, min_count,
    bucket, seed, quantize_cutoff)."""
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    # fastText raises "Encountered NaN" on some data at a high rate; this build (fasttext-numpy2-wheel) also diverges
    # at random run to run with a small `bucket` (5000: NaN in about half the runs, at any rate; none in 10 at 2M),
    # sometimes without noticing: the weights are checked, and a failed run is retried before the rate is lowered
    rates = (p.lr, p.lr, p.lr / 2, p.lr / 2, p.lr / 4, p.lr / 4)
    for attempt, lr in enumerate(rates):
        try:
            model = fasttext.train_supervised(
                input=f.name,
                epoch=p.epoch,
                lr=lr,
                wordNgrams=p.word_ngrams,
                dim=p.dim,
                minCount=p.min_count,
                bucket=p.bucket,
                loss="softmax",
                thread=1,
                seed=p.seed,
                verbose=0,
            )
            if not (np.isfinite(model.get_input_matrix()).all() and np.isfinite(model.get_output_matrix()).all()):
                raise RuntimeError("Encountered NaN in the trained weights")  # it does not always notice itself
            break
        except RuntimeError as e:
            if "NaN" not in str(e) or attempt == len(rates) - 1:
                raise
    model.quantize(input=f.name, qnorm=True, retrain=True, cutoff=p.quantize_cutoff, thread=1, verbose=0)
    model.save_model(str(out))
    Path(f.name).unlink()
