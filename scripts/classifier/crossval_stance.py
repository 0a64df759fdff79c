"""Stance-only cross-validation on the labelled real corpus AI documents (never heldout/): a light harness.

Why: `crossval_real.py` refits every stage per fold (about 15 minutes a fold here); stance choices only need the two
stance models. Same folds as crossval_real.py: each trains the fastText stance model and the embedding stance head
on the other folds' real AI documents plus the written and demo ones, and scores the fold's real documents cut to
4,000 characters. Prints macro-F1 at the default class weights (aligned x2, misaligned x1.5) and the best of a grid.
MiniLM embeddings share crossval_real.py's cache in build/cv/. Each argument is one configuration,
NAME[:key=value,...], keys: real_mult (real documents counted N times), use_written, use_demo (0/1), C (head),
ftw (fastText weight in the mean).

    python scripts/classifier/crossval_stance.py base real_mult3:real_mult=3 \
        nowritten:real_mult=3,use_written=0 head_c1:C=1
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[2]  # the repository
sys.path.insert(0, str(Path(__file__).resolve().parent))
GRID = [(wa, wm) for wa in (1, 1.5, 2, 3, 4) for wm in (1, 1.25, 1.5, 2, 3)]


def main():
    from crossval_real import cut, embedding_cache, real_folds
    from sklearn.linear_model import LogisticRegression
    from train_default_models import labelled_frame

    import curation.classify.fit as cf
    from curation.classify.fasttext_model import label_probs, load_fasttext, model_inputs, train_fasttext
    from curation.classify.steps.base import STANCES

    df = labelled_frame().filter(pl.col("ai_discourse") == 1)
    src = df["source"].to_numpy()
    real, fold = real_folds(df)
    texts = df["text"].to_list()
    cuts = [cut(t) for t in texts]
    y = np.array(df["stance"].to_list())
    cache = embedding_cache()
    emb_full, emb_cut = cache.embed(texts), cache.embed(cuts)
    cache.save()
    full_in, cut_in = model_inputs(texts), model_inputs(cuts)
    p = cf.FitParams()
    ai = np.flatnonzero(real)
    print(f"{len(ai)} real AI documents:", dict(zip(*np.unique(y[ai], return_counts=True), strict=False)))
    for spec in sys.argv[1:] or ["base"]:
        name, _, opts = spec.partition(":")
        o = {"real_mult": 1, "use_written": 1, "use_demo": 1, "C": 4.0, "ftw": 0.5}
        o.update({k: float(v) for k, v in (kv.split("=") for kv in opts.split(",") if kv)})
        pf, pe = np.zeros((len(texts), 3)), np.zeros((len(texts), 3))
        for k in range(5):
            tr = [
                i
                for i in range(len(texts))
                if fold[i] != k
                and (real[i] or (o["use_written"] and src[i] == "written") or (o["use_demo"] and src[i] == "demo"))
            ]
            va = np.flatnonzero(fold == k)
            mult = [int(o["real_mult"]) if real[i] else 1 for i in tr]
            lines = [f"__label__{y[i]} {full_in[i]}" for i, m in zip(tr, mult, strict=False) for _ in range(m)]
            random.Random(0).shuffle(lines)
            with tempfile.TemporaryDirectory() as tmp:
                train_fasttext(lines, Path(tmp) / "stance.ftz", p)
                model = load_fasttext(str(Path(tmp) / "stance.ftz"))
            pf[va] = [[d[s] for s in STANCES] for d in label_probs(model, [cut_in[i] for i in va], STANCES)]
            head = LogisticRegression(max_iter=3000, C=o["C"], class_weight="balanced").fit(
                emb_full[tr], y[tr], sample_weight=np.array(mult, float)
            )
            order = [list(head.classes_).index(s) for s in STANCES]
            pe[va] = head.predict_proba(emb_cut[va])[:, order]
        mixed = o["ftw"] * pf + (1 - o["ftw"]) * pe

        def f1(P, wa=2.0, wm=1.5):
            return cf.macro_f1(list(y[ai]), [STANCES[j] for j in (P[ai] * [wa, wm, 1.0]).argmax(1)])

        best = sorted(((f1(mixed, wa, wm)["macro_f1"], wa, wm) for wa, wm in GRID), reverse=True)[:3]
        d = f1(mixed)
        print(
            f"{name:14s} macro-F1 {d['macro_f1']:.3f} {d['per_class_f1']} (fastText {f1(pf)['macro_f1']:.3f}, "
            f"head {f1(pe)['macro_f1']:.3f}); best weights " + " ".join(f"{s:.3f}@{a},{m}" for s, a, m in best),
            flush=True,
        )


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
