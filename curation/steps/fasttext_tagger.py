"""Stage 2: fastText models for AI discourse and stance."""

from __future__ import annotations

import os
from functools import lru_cache

import pyarrow as pa

from curation.steps.base import STANCES, TaggerStep, attrs, scorable
from curation.lexicon import Lexicon
from curation.textnorm import fasttext_lines, keyword_tokens


def load_fasttext(path: str):
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None  # silence the load-time deprecation warning
    return fasttext.load_model(path)


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


@lru_cache(maxsize=1)
def default_lexicon() -> Lexicon:
    return Lexicon.load()


def model_inputs(texts: list[str], known: list[dict] | None = None, max_chars: int = 20_000) -> list[str]:
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
                 stance_min_ai: float = 0.1, screen_chars: int = 1000, screen_min_ai: float = 0.0005):
        super().__init__()
        self.stance_min_ai = stance_min_ai  # stance is "given AI discourse": not worth a second model pass on the rest
        self.ai_model, self.stance_model = ai_model, stance_model
        self.only_candidates = only_candidates
        self.max_chars = max_chars
        self.screen_chars, self.screen_min_ai = screen_chars, screen_min_ai
        self._ai = self._stance = None

    def columns(self):
        return {"ft_ai": pa.float32(), **{f"ft_stance_{s}": pa.float32() for s in STANCES}}

    def _cascade(self, docs: list) -> list:
        """The documents the cascade scores: keyword candidates, and the others whose first `screen_chars` characters
        already score at least `screen_min_ai`.

        About one in twelve of the documents the model calls AI discourse has no strong or acronym keyword (AI text
        that never names AI, and the model's own false positives); keywords alone lose them. The screen reads a short
        prefix of the rest, with the same model and input as the full score, and passes on the few that might be:
        on the real corpus (benchmarks/classify_throughput.py) a fifth of the cascade's time for recall of
        fastText-on-all's positives 0.978 instead of 0.917.
        """
        todo, rest = [], []
        for d in docs:
            (todo if attrs(d).get("kw_candidate", True) else rest).append(d)
        if rest and self.screen_chars:
            lines = model_inputs([d.text[:self.screen_chars] for d in rest], [attrs(d) for d in rest], self.screen_chars)
            probs = label_probs(self._ai, lines, ("ai", "other"))
            passed = [d for d, p in zip(rest, probs) if p["ai"] >= self.screen_min_ai]
            self.stat_update("screened_in", value=len(passed))
            todo += passed
        return todo

    def tag_batch(self, docs):
        if self._ai is None:
            self._ai, self._stance = shared_fasttext(self.ai_model), shared_fasttext(self.stance_model)
        todo = [d for d in docs if scorable(d)]
        if self.only_candidates:
            todo = self._cascade(todo)
        self.stat_update("skipped_by_cascade", value=len(docs) - len(todo))
        if not todo:
            return
        lines = model_inputs([d.text for d in todo], [attrs(d) for d in todo], self.max_chars)
        for doc, p in zip(todo, label_probs(self._ai, lines, ("ai", "other"))):
            attrs(doc)["ft_ai"] = p["ai"]
        likely = [i for i, d in enumerate(todo) if attrs(d)["ft_ai"] >= self.stance_min_ai]
        self.stat_update("stance_scored", value=len(likely))
        if likely:
            for i, ps in zip(likely, label_probs(self._stance, [lines[i] for i in likely], STANCES)):
                a = attrs(todo[i])
                for s in STANCES:
                    a[f"ft_stance_{s}"] = ps[s]
