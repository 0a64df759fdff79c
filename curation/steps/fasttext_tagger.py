"""Stage 2: fastText models for AI discourse and stance."""

from __future__ import annotations

import pyarrow as pa

from curation.steps.base import STANCES, TaggerStep, attrs, scorable
from curation.textnorm import fasttext_line


def load_fasttext(path: str):
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None  # silence the load-time deprecation warning
    return fasttext.load_model(path)


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


class FastTextTagger(TaggerStep):
    name = "⚡ fastText AI-discourse + stance"
    batch_size = 512

    def __init__(self, ai_model: str, stance_model: str, only_candidates: bool = True, max_chars: int = 20_000):
        super().__init__()
        self.ai_model, self.stance_model = ai_model, stance_model
        self.only_candidates = only_candidates
        self.max_chars = max_chars
        self._ai = self._stance = None

    def columns(self):
        return {"ft_ai": pa.float32(), **{f"ft_stance_{s}": pa.float32() for s in STANCES}}

    def tag_batch(self, docs):
        if self._ai is None:
            self._ai, self._stance = load_fasttext(self.ai_model), load_fasttext(self.stance_model)
        todo = [d for d in docs if scorable(d) and (not self.only_candidates or attrs(d).get("kw_candidate", True))]
        self.stat_update("skipped_by_cascade", value=len(docs) - len(todo))
        if not todo:
            return
        lines = [fasttext_line(d.text, self.max_chars) for d in todo]
        for doc, pa_, ps in zip(todo, label_probs(self._ai, lines, ("ai", "other")), label_probs(self._stance, lines, STANCES)):
            a = attrs(doc)
            a["ft_ai"] = pa_["ai"]
            for s in STANCES:
                a[f"ft_stance_{s}"] = ps[s]
