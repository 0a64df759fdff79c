"""The one place an engine is built (for `LanguageModel`, curation.lm.session, which stages go through). It imports
the backend modules (lazily: only the chosen one's packages load); they import only base.py, so no two modules of the
engines import each other, and none imports the session."""

from __future__ import annotations

from curation.lm.config import BackendConfig
from curation.lm.engines.base import Generator


def make_generator(cfg: BackendConfig, log_dir: str | None = None) -> Generator:
    """The backend the config names; model loading or server start happens here, once."""
    if cfg.kind == "transformers":
        from curation.lm.engines.hf import TransformersGenerator

        return TransformersGenerator(cfg)
    if cfg.kind == "openai":
        from curation.lm.engines.openai_client import OpenAIGenerator

        return OpenAIGenerator(cfg)
    from curation.lm.engines.vllm_client import VLLMGenerator

    return VLLMGenerator(cfg, log_dir=log_dir)
