"""One model opened once, for one backend: the letter scorer, the continuation scorer and greedy generation all
come from it, so a stage chooses the backend in one place (`LanguageModel.open`) and never again."""

from __future__ import annotations

from dataclasses import dataclass, field

from curation.core.errors import CurationError

BACKENDS = ("hf", "vllm")


@dataclass
class LanguageModel:
    spec: str
    backend: str
    model: object | None  # the transformers model (None on vLLM, which runs in its own worker process)
    tokenizer: object
    batch_size: int = 16
    dtype: str = "auto"
    _letters: object | None = field(default=None, repr=False)

    @classmethod
    def open(
        cls,
        spec: str,
        backend: str = "hf",
        dtype: str = "auto",
        device: str | None = None,
        batch_size: int = 16,
        loaded: tuple | None = None,
    ) -> LanguageModel:
        """``loaded``: an already loaded (model, tokenizer), so notebooks and tests can score several runs on one load."""
        from curation.lm.loading import hf_directory, load_model, load_tokenizer

        if backend not in BACKENDS:
            raise CurationError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        if backend == "vllm":
            return cls(str(spec), backend, None, load_tokenizer(hf_directory(spec)), batch_size, dtype)
        model, tok = loaded or load_model(spec, dtype=dtype, device=device)
        return cls(str(spec), backend, model, tok, batch_size, dtype)

    def _hf_only(self, what: str):
        if self.backend != "hf":
            raise CurationError(f"{what} runs on the hf backend; use --backend hf")

    def letter_scorer(self):
        """Next-token log-probs of option letters (transformers, or vLLM's prompt_logprobs in its worker)."""
        if self._letters is None:
            from curation.lm.scoring import LetterScorer, VLLMLetterScorer

            self._letters = (
                VLLMLetterScorer(self.tokenizer, model=self.spec, dtype=self.dtype)
                if self.backend == "vllm"
                else LetterScorer(self.model, self.tokenizer, batch_size=self.batch_size)
            )
        return self._letters

    def continuation_scorer(self, max_tokens: int = 2048):
        """lm-evaluation-harness's loglikelihood requests (cloze options, LAMBADA words, held-out text)."""
        from curation.lm.scoring import ContinuationScorer

        self._hf_only("continuation scoring (cloze, capability)")
        return ContinuationScorer(self.model, self.tokenizer, batch_size=self.batch_size, max_tokens=max_tokens)

    def complete(self, prompts: list[str], max_new_tokens: int, progress=None) -> list[str]:
        """Greedy completions of raw (already templated) prompts, through the generation engine's transformers backend."""
        from curation.lm.config import Sampling
        from curation.lm.engines.base import Request
        from curation.lm.engines.hf import TransformersGenerator

        self._hf_only("generation")
        gen = TransformersGenerator.from_loaded(self.model, self.tokenizer, self.spec, max_batch=self.batch_size)
        greedy = Sampling(temperature=0.0, max_tokens=max_new_tokens)
        out: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            out += [c.text for c in gen.generate([Request(messages=[], seed=None, prompt=p) for p in chunk], greedy)]
            if progress:
                progress(len(chunk))
        return out

    def close(self) -> None:
        if self._letters is not None and hasattr(self._letters, "close"):
            self._letters.close()
        self._letters = None
