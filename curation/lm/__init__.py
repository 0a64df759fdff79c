"""The language-model layer: loading (HF directory, .gguf, aliases), log-prob scoring, and generation behind one
interface (transformers, the vLLM worker, an OpenAI-compatible server), all reached through one object,
`curation.lm.session.LanguageModel`. Imports only the kernel."""
