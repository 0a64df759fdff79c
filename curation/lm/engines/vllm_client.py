"""vLLM backend: `LLM.chat` in a worker process that runs in the interpreter holding vLLM.

Which interpreter: `backend.vllm_python`, else $SYNTH_VLLM_PYTHON, else this one if it imports vllm, else the
`.venv/vllm` that `make vllm` builds. The worker starts lazily on the first batch (so a resumed run with nothing left
to do never loads vLLM) and stops with `close()`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from curation.core.errors import CurationError
from curation.lm.config import BackendConfig, Sampling
from curation.lm.engines.base import Completion, Request

WORKER = Path(__file__).with_name("vllm_worker.py")


def vllm_python(cfg_value: str | None = None) -> str | None:
    """The interpreter that has vLLM, or None."""
    for cand in (cfg_value, os.environ.get("SYNTH_VLLM_PYTHON")):
        if cand:
            if not Path(cand).exists():
                raise CurationError(
                    f"{cand}: no such interpreter for vLLM; run `make vllm` or fix backend.vllm_python / "
                    "SYNTH_VLLM_PYTHON"
                )
            return cand
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    for root in (Path(sys.prefix), Path(__file__).resolve().parents[2] / ".venv"):
        cand = root / "vllm" / "bin" / "python"
        if cand.exists():
            return str(cand)
    return None


def worker_env(cfg: BackendConfig) -> dict:
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.kv_cache_gb))
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{ncpu - 1}")
    env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.pop("PYTHONPATH", None)
    return env


class VLLMGenerator:
    def __init__(self, cfg: BackendConfig, log_dir: str | None = None, start_timeout_s: float = 900.0):
        from curation.lm.loading import hf_directory, resolve

        self.cfg = cfg
        self.python = vllm_python(cfg.vllm_python)
        if self.python is None:
            raise CurationError(
                "vLLM is not installed: run `make vllm` (builds .venv/vllm), set SYNTH_VLLM_PYTHON, "
                "or use --backend transformers / --backend openai"
            )
        self.model_dir = str(hf_directory(cfg.model))  # vLLM cannot read GGUF on CPU: the converted safetensors dir
        self.model_id = resolve(cfg.model).model_id
        self.log_dir = log_dir
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def start(self) -> None:
        """Starts the worker now rather than on the first batch (benchmarks time the start-up apart)."""
        if self.proc is None:
            self._start()

    def _start(self) -> None:
        log_dir = Path(self.log_dir or tempfile.gettempdir())
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"vllm-worker-{os.getpid()}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [self.python, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=worker_env(self.cfg),
            bufsize=1,
        )
        self._send(
            {
                "config": {
                    "model": self.model_dir,
                    "max_model_len": self.cfg.max_model_len,
                    "dtype": self.cfg.dtype,
                    "gpu_memory_utilization": self.cfg.gpu_memory_utilization,
                }
            }
        )
        reply = self._recv(self.start_timeout_s)
        if "error" in reply:
            raise CurationError(f"{self.model_dir}: {reply['error']}; see {self.log_path}")

    def _send(self, obj: dict) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def _recv(self, timeout: float) -> dict:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([self.proc.stdout], [], [], 1.0)
            if ready:
                line = self.proc.stdout.readline()
                if line:
                    return json.loads(line)
            if self.proc.poll() is not None or (ready and not line):
                tail = self._log_tail()
                raise CurationError(
                    f"vLLM worker ({self.python}) exited with code {self.proc.poll()}: {tail}; full log {self.log_path}"
                )
            if time.monotonic() > deadline:
                self.close()
                raise CurationError(f"vLLM worker gave no answer in {timeout:.0f} s; see {self.log_path}")

    def _log_tail(self) -> str:
        try:
            lines = [ln.strip() for ln in Path(self.log_path).read_text().splitlines() if ln.strip()]
        except OSError:
            return "no log"
        errs = [ln for ln in lines if "Error" in ln or "error" in ln]
        return (errs or lines or ["no output"])[-1][:300]

    def generate(self, requests: list[Request], sampling: Sampling, force_length: bool = False) -> list[Completion]:
        if not requests:
            return []
        if self.proc is None:
            self._start()
        self._send(
            {
                "messages": [r.messages for r in requests],
                "seeds": [r.seed for r in requests],
                "sampling": sampling.model_dump(),
                "force_length": force_length,
            }
        )
        reply = self._recv(max(600.0, 2.0 * len(requests) * sampling.max_tokens / 10))
        if "error" in reply:
            raise CurationError(f"vLLM generation failed: {reply['error']}; see {self.log_path}")
        return [Completion(o["text"].strip(), o["n_tokens"], o["finish_reason"]) for o in reply["outputs"]]

    def score_last_tokens(self, token_lists: list[list[int]]) -> list[float]:
        """log P(last token | preceding tokens) for each list (vLLM prompt_logprobs); used by evals' vLLM scorer."""
        if not token_lists:
            return []
        if self.proc is None:
            self._start()
        self._send({"score": token_lists})
        reply = self._recv(max(600.0, len(token_lists) / 2))
        if "error" in reply:
            raise CurationError(f"vLLM scoring failed: {reply['error']}; see {self.log_path}")
        return reply["logprobs"]

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except Exception:  # noqa: BLE001
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            self._log.close()
