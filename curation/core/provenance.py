"""Provenance every output records: package versions, the toolkit's commit, the host. One helper, so a lock file,
an eval summary and an experiment record agree on what "the versions" means."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

# The packages whose versions change results: the toolkit, the numerics and the model and data libraries.
PACKAGES = (
    "alignment-pretraining",
    "torch",
    "megatron-core",
    "transformers",
    "trl",
    "vllm",
    "tokenizers",
    "datatrove",
    "fasttext",
    "sentence-transformers",
    "pyarrow",
    "polars",
    "numpy",
    "pydantic",
)

PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Python and each installed package's version; packages that are not installed are left out."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit(root: Path = PACKAGE_ROOT) -> dict:
    """The toolkit checkout's commit and whether tracked files differ from it; None for both outside a checkout."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode == 0:
            return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        pass
    return {"commit": None, "dirty": None}


def host() -> str:
    return platform.node()
