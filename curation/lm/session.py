"""One language model, opened once for one backend, in the manner of lm-evaluation-harness's ``LM``.

Letter scoring, continuation scoring (loglikelihood requests), rolling log-likelihood (perplexity) and generation
(greedy and sampled, through the engines) all come from it, so a stage chooses the backend in one place
(`LanguageModel.open`) and every stage handed the same object loads nothing again. Stage functions take ``lm=``;
`LanguageModel.from_loaded` wraps a model a notebook or test already holds.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

from curation.core.errors import CurationError
from curation.lm.config import BackendConfig, Sampling

BACKENDS = ("hf", "vllm", "openai")
ENGINE_KIND = {"hf": "transformers", "vllm": "vllm", "openai": "openai"}  # LanguageModel backend -> BackendConfig.kind


def same_model(a, b) -> bool:
    """Whether two specs name the same model (an alias, or the same file or directory however written)."""
    if str(a) == str(b):
        return True
    from curation.lm.loading import resolve

    try:
        return resolve(a).path.resolve() == resolve(b).path.resolve()
    except CurationError:
        return False


class LanguageModel:
    """The model (transformers weights on hf; a vLLM worker or an OpenAI-compatible server otherwise), its tokenizer
    and its generation engine. ``batch_size`` is the scorers' and the transformers generator's batch."""

    def __init__(
        self,
        spec: str,
        backend: str,
        model=None,
        tokenizer=None,
        batch_size: int = 16,
        dtype: str = "auto",
        engine: BackendConfig | None = None,
        log_dir: str | None = None,
    ):
        self.spec, self.backend, self.model, self.batch_size, self.dtype = str(spec), backend, model, batch_size, dtype
        self.engine_config = engine or BackendConfig(kind=ENGINE_KIND[backend], model=str(spec), dtype=dtype)
        self.log_dir = log_dir
        # shared by `batched` views: the tokenizer, once loaded, and the vLLM / OpenAI engine, once started
        self._shared: dict = {"tokenizer": tokenizer, "engine": None}

    @classmethod
    def open(
        cls,
        spec: str,
        backend: str = "hf",
        dtype: str = "auto",
        device: str | None = None,
        batch_size: int = 16,
        *,
        engine: BackendConfig | None = None,
        log_dir: str | None = None,
    ) -> LanguageModel:
        """The transformers weights load here (hf); vLLM's worker and the server connection start on first use.
        ``engine``: the vLLM / server settings (synth's ``backend`` section); ``log_dir``: the vLLM worker's log."""
        if backend not in BACKENDS:
            raise CurationError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        if backend != "hf":
            return cls(spec, backend, None, None, batch_size, dtype, engine, log_dir)
        from curation.lm.loading import load_model

        model, tok = load_model(spec, dtype=dtype, device=device)
        return cls(spec, backend, model, tok, batch_size, dtype, engine, log_dir)

    @classmethod
    def from_backend(cls, cfg: BackendConfig, log_dir: str | None = None) -> LanguageModel:
        """The model a synth ``backend`` section names (kind transformers, vllm or openai)."""
        backend = {v: k for k, v in ENGINE_KIND.items()}[cfg.kind]
        return cls.open(cfg.model, backend, dtype=cfg.dtype, engine=cfg, log_dir=log_dir)

    @classmethod
    def from_loaded(cls, model, tokenizer, spec: str = "smollm2", batch_size: int = 16) -> LanguageModel:
        """An already loaded transformers model and tokenizer (notebooks, tests): several runs on one load."""
        return cls(spec, "hf", model, tokenizer, batch_size)

    def batched(self, batch_size: int) -> LanguageModel:
        """The same loaded model, tokenizer and engine at another batch size (each eval config sets its own)."""
        if batch_size == self.batch_size:
            return self
        view = copy.copy(self)  # shares `_shared`: nothing loads or starts twice
        view.batch_size = batch_size
        return view

    def serves(self, spec, backend: str | None = None) -> None:
        """One clear error when a stage is handed a model other than the one its config names."""
        if not same_model(self.spec, spec) or (backend is not None and backend != self.backend):
            want = f"{spec}" + (f" on --backend {backend}" if backend else "")
            raise CurationError(
                f"the LanguageModel passed is {self.spec} on --backend {self.backend}, the config names {want}; "
                "open the model the config names"
            )

    @property
    def tokenizer(self):
        if self._shared["tokenizer"] is None:
            if self.backend == "openai":
                raise CurationError("an OpenAI-compatible server has no local tokenizer; use --backend hf or vllm")
            from curation.lm.loading import hf_directory, load_tokenizer

            self._shared["tokenizer"] = load_tokenizer(hf_directory(self.spec))
        return self._shared["tokenizer"]

    @property
    def model_id(self) -> str:
        """What outputs record as the model (the served name on a server)."""
        if self.backend == "openai":
            return self.engine.model_id
        from curation.lm.loading import resolve

        return resolve(self.spec).model_id

    @property
    def engine(self):
        """The generation engine (curation.lm.engines): transformers over the loaded weights, the vLLM worker (started
        on its first batch) or the server client."""
        if self.backend == "hf":
            from curation.lm.engines.hf import TransformersGenerator

            return TransformersGenerator.from_loaded(self.model, self.tokenizer, self.spec, max_batch=self.batch_size)
        if self._shared["engine"] is None:
            from curation.lm.engines.factory import make_generator

            cfg = self.engine_config.model_copy(update={"kind": ENGINE_KIND[self.backend]})
            self._shared["engine"] = make_generator(cfg, log_dir=self.log_dir)
        return self._shared["engine"]

    def _hf_only(self, what: str):
        if self.backend != "hf":
            raise CurationError(f"{what} runs on the hf backend; use --backend hf")

    # scoring

    def letter_scorer(self):
        """Next-token log-probs of option letters (transformers, or vLLM's prompt_logprobs in its worker)."""
        from curation.lm.scoring import LetterScorer, VLLMLetterScorer

        if self.backend == "vllm":
            return VLLMLetterScorer(self.tokenizer, self.engine)
        self._hf_only("letter scoring")
        return LetterScorer(self.model, self.tokenizer, batch_size=self.batch_size)

    def letter_logprobs(
        self,
        prompts: Sequence[str],
        n_options: Sequence[int],
        groups: Sequence[int] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[list[float]]:
        """log P(letter) of each prompt's first n option letters (see `LetterScorer.letter_logprobs`)."""
        return self.letter_scorer().letter_logprobs(prompts, n_options, groups, progress)

    def continuation_scorer(self, max_tokens: int = 2048):
        """lm-evaluation-harness's loglikelihood requests (cloze options, LAMBADA words, held-out text)."""
        from curation.lm.scoring import ContinuationScorer

        self._hf_only("continuation scoring (cloze, capability, perplexity)")
        return ContinuationScorer(self.model, self.tokenizer, batch_size=self.batch_size, max_tokens=max_tokens)

    def loglikelihoods(
        self,
        requests: Sequence[tuple[str, str]],
        groups: Sequence | None = None,
        progress: Callable[[int], None] | None = None,
        max_tokens: int = 2048,
    ) -> list[tuple[float, bool, int]]:
        """(log-likelihood, greedy, token count) per (context, continuation): `ContinuationScorer.loglikelihoods`."""
        return self.continuation_scorer(max_tokens).loglikelihoods(requests, groups, progress)

    def rolling_loglikelihoods(
        self,
        texts: Sequence[str],
        window: int,
        max_tokens: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[tuple[float, int]]:
        """lm-eval's loglikelihood_rolling: (log-likelihood, predicted tokens) of each text over disjoint windows of
        ``window`` predicted tokens, the first after the end-of-text token, each later one conditioned on the token
        before it. ``max_tokens``: only each text's first tokens."""
        scorer = self.continuation_scorer(max_tokens=window)
        tok = self.tokenizer
        pairs, owner = [], []
        for d, text in enumerate(texts):
            ids = tok(text, add_special_tokens=False)["input_ids"][:max_tokens]
            for s in range(0, len(ids), window):
                pairs.append(([tok.eos_token_id] if s == 0 else [ids[s - 1]], ids[s : s + window]))
                owner.append(d)
        out = [[0.0, 0] for _ in texts]
        for d, r in zip(owner, scorer.token_loglikelihoods(pairs, progress=progress), strict=True):
            out[d][0] += r[0]
            out[d][1] += r[2]
        return [(ll, n) for ll, n in out]

    # generation

    def generate(self, requests: list, sampling: Sampling, **kw) -> list:
        """Completions of engine `Request`s (chat messages, or raw prompts on hf) with ``sampling``, greedy at
        temperature 0; ``kw`` goes to the engine (``force_length`` for throughput benchmarks)."""
        return self.engine.generate(requests, sampling, **kw)

    def complete(self, prompts: list[str], max_new_tokens: int, progress=None) -> list[str]:
        """Greedy completions of raw (already templated) prompts, through the transformers engine."""
        from curation.lm.engines.base import Request

        self._hf_only("generation from raw prompts")
        gen = self.engine
        greedy = Sampling(temperature=0.0, max_tokens=max_new_tokens)
        out: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            out += [c.text for c in gen.generate([Request(messages=[], seed=None, prompt=p) for p in chunk], greedy)]
            if progress:
                progress(len(chunk))
        return out

    def close(self) -> None:
        """Stops the vLLM worker or closes the server session (the transformers weights stay with their holder)."""
        if self._shared["engine"] is not None:
            self._shared["engine"].close()
        self._shared["engine"] = None

    def __enter__(self) -> LanguageModel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LanguageModel({self.spec!r}, backend={self.backend!r}, batch_size={self.batch_size})"
