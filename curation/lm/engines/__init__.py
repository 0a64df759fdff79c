"""Generation engine: one interface (`Generator.generate`), three backends (vLLM, OpenAI-compatible server, transformers)."""

from curation.lm.engines.base import Completion, Generator, Request
from curation.lm.engines.factory import make_generator

__all__ = ["Completion", "Generator", "Request", "make_generator"]
