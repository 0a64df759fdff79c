"""Generation engine: one interface (`Generator.generate`), three backends (vLLM, OpenAI-compatible server,
transformers). Stages reach them through `curation.lm.session.LanguageModel`."""

from curation.lm.engines.base import Completion, Generator, Request
from curation.lm.engines.factory import make_generator

__all__ = ["Completion", "Generator", "Request", "make_generator"]
