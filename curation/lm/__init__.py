"""The language-model layer: loading (HF directory, .gguf, aliases), log-prob scoring, and generation behind one
interface (transformers, the vLLM worker, an OpenAI-compatible server). Imports only the kernel."""
