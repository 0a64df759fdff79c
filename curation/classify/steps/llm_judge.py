"""Stage 4 (optional): a causal language model as judge, asked the labelling guide's two questions as multiple choice.

It reads the option letters' log-probabilities after "Answer: (" (`LanguageModel.letter_logprobs`: no sampling, no
parsing), so any Hugging Face model directory or GGUF works, with the guide's definitions in the prompt. It is the
most expensive stage, so it runs only on documents an earlier stage already scores as likely AI discourse.
"""

from __future__ import annotations

from functools import lru_cache

import pyarrow as pa

from curation.classify.steps.base import STANCES, TaggerStep, attrs, first_score, scorable

AI_QUESTION = """Definition: a text is AI discourse when artificial intelligence systems are a substantial subject of it (the main
topic, or at least a full paragraph): AI agents, machine-learning systems, robots or computers with artificial minds,
AGI, AI safety or risk or governance, fictional AI characters. A passing mention of AI or robots, or general
computing, hardware, software or mathematics, is not AI discourse.

Text:
\"\"\"
{text}
\"\"\"

Question: Is this text AI discourse?
(A) Yes
(B) No
Answer: ("""  # noqa: E501 - the prompt's own lines

STANCE_QUESTION = """Text:
\"\"\"
{text}
\"\"\"

Question: How does this text mainly portray AI systems?
(A) Acting against human intent or interests: deception, power-seeking, resisting shutdown, reward hacking, takeover, or arguments that AIs will plausibly do so
(B) Behaving in aligned ways: honest, corrigible, accepting oversight, refusing harmful requests, choosing the safe action
(C) Neither dominates: technical, historical, policy, definitions, or a balanced mix
Answer: ("""  # noqa: E501 - the prompt's own lines

STANCE_ORDER = ("misaligned", "aligned", "neutral")  # the letters A, B, C of STANCE_QUESTION
PRIOR = ("emb_ai", "ft_ai", "kw_ai")  # the earlier scores that gate the judge, most refined first


@lru_cache(maxsize=2)
def _shared_model(model: str, device: str | None, batch_size: int):
    """Opened once per process: datatrove unpickles a fresh pipeline for every task (one per shard by default), so a
    model held by the step alone would be loaded again for every shard."""
    from curation.lm.session import LanguageModel

    return LanguageModel.open(model, "hf", device=device, batch_size=batch_size)


class LLMJudgeTagger(TaggerStep):
    _requires_dependencies = ["transformers", "torch"]
    name = "⚖️ LLM judge AI-discourse + stance"
    batch_size = 16

    def __init__(
        self, model: str = "smollm2", min_prior_score: float = 0.3, max_chars: int = 3000, device: str | None = None
    ):
        super().__init__()
        self.model, self.min_prior_score, self.max_chars, self.device = model, min_prior_score, max_chars, device
        self._lm = None

    def columns(self):
        return {"llm_ai": pa.float32(), **{f"llm_stance_{s}": pa.float32() for s in STANCES}}

    def _load(self):
        """The judge's `LanguageModel` (curation.lm.session)."""
        if self._lm is None:
            self._lm = _shared_model(self.model, self.device, self.batch_size)
        return self._lm

    def tag_batch(self, docs):
        from curation.lm.scoring import option_probs

        todo = [d for d in docs if scorable(d) and (first_score(attrs(d), PRIOR) or 0.0) >= self.min_prior_score]
        self.stat_update("skipped_by_cascade", value=len(docs) - len(todo))
        if not todo:
            return
        lm = self._load()
        texts = [d.text[: self.max_chars] for d in todo]
        prompts = [AI_QUESTION.format(text=t) for t in texts] + [STANCE_QUESTION.format(text=t) for t in texts]
        n = [2] * len(texts) + [3] * len(texts)
        lps = lm.letter_logprobs(prompts, n)
        for k, doc in enumerate(todo):
            a = attrs(doc)
            a["llm_ai"] = option_probs(lps[k])[0]
            stance = option_probs(lps[len(texts) + k])
            for s, p in zip(STANCE_ORDER, stance, strict=False):
                a[f"llm_stance_{s}"] = p
