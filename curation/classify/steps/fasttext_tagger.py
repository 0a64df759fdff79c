"""Stage 2: fastText models for AI discourse and stance."""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from curation.classify.fasttext_model import label_prob, label_probs, model_inputs, shared_fasttext
from curation.classify.steps.base import STANCES, TaggerStep, attrs, scorable, text_series
from curation.classify.textnorm import fasttext_lines, spread_sample


class FastTextTagger(TaggerStep):
    _requires_dependencies = [("fasttext", "fasttext-numpy2-wheel")]  # checked by datatrove when the step is built
    name = "⚡ fastText AI-discourse + stance"
    batch_size = 512

    def __init__(
        self,
        ai_model: str,
        stance_model: str,
        only_candidates: bool = True,
        max_chars: int = 20_000,
        stance_min_ai: float = 0.1,
        screen_chars: int = 750,
        screen_chunks: int = 3,
        screen_min_ai: float = 0.3,
    ):
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
            passed = [i for i, p in zip(rest, probs, strict=False) if p >= self.screen_min_ai]
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
        for a, p in zip(a_scored, p_ai, strict=False):
            a["ft_ai"] = p
        likely = [i for i, p in enumerate(p_ai) if p >= self.stance_min_ai]
        self.stat_update("stance_scored", value=len(likely))
        if likely:
            for i, ps in zip(likely, label_probs(self._stance, [lines[i] for i in likely], STANCES), strict=False):
                a = a_scored[i]
                for s in STANCES:
                    a[f"ft_stance_{s}"] = ps[s]
