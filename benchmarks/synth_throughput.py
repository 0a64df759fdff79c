"""Output tokens/s of the vLLM backend vs transformers `generate`: same model, same prompts, same lengths, one run.

    .venv/bin/python benchmarks/synth_throughput.py [--model smollm2] [--prompts 32] [--max-tokens 64] [--json OUT]

Both generate exactly --max-tokens tokens per prompt (vLLM: ignore_eos; transformers: min_new_tokens), greedy-free
sampling at temperature 0.8, float32 weights in both; start-up and a warm-up batch are excluded from the timing. Both
are a `LanguageModel` (curation.lm.session): vLLM runs in its worker process (.venv/vllm on CPU, `make vllm`);
transformers runs in this process with the same thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curation.lm.engines import Request  # noqa: E402
from synth.config import FORMS, PACKAGE_DATA, STANCES, TEMPLATES_DIR, Sampling  # noqa: E402
from synth.prompts import DocTemplates  # noqa: E402
from synth.scenarios import load_scenarios  # noqa: E402


def prompts(n: int) -> list[Request]:
    scen = load_scenarios([PACKAGE_DATA / "scenarios.yaml"])
    t = DocTemplates(TEMPLATES_DIR, list(FORMS), list(STANCES))
    combos = [(s, f, st) for s in scen for f in FORMS for st in STANCES]
    # seed=None: per-request seeds cost vLLM on CPU ~4x (one torch generator per request in sampling); transformers
    # seeds per batch anyway. `curate synth docs` does use per-request seeds (reproducible documents).
    return [Request(t.messages(*combos[i % len(combos)]), seed=None) for i in range(n)]


def timed(gen, reqs, sampling) -> tuple[float, int]:
    gen.generate(reqs[:4], Sampling(temperature=sampling.temperature, max_tokens=8), force_length=True)  # warm-up
    t = time.perf_counter()
    outs = gen.generate(reqs, sampling, force_length=True)
    return time.perf_counter() - t, sum(o.n_tokens for o in outs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    reqs = prompts(a.prompts)
    sampling = Sampling(temperature=0.8, top_p=0.95, max_tokens=a.max_tokens)
    res = {
        "model": a.model,
        "prompts": a.prompts,
        "max_tokens": a.max_tokens,
        "threads": a.threads,
        "machine": f"{platform.machine()} {platform.processor()} cpus={os.cpu_count()}",
    }

    from curation.lm.session import LanguageModel

    t0 = time.perf_counter()
    v = LanguageModel.open(a.model, "vllm", dtype="float32")
    v.engine.start()
    res["vllm_startup_s"] = round(time.perf_counter() - t0, 1)
    secs, toks = timed(v, reqs, sampling)
    v.close()
    res.update(vllm_seconds=round(secs, 2), vllm_tokens=toks, vllm_tok_s=round(toks / secs, 1))
    print(
        f"vLLM:         {toks} tokens in {secs:.2f} s = {toks / secs:.1f} tok/s (start-up {res['vllm_startup_s']} s)",
        flush=True,
    )

    import torch

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    h = LanguageModel.open(a.model, "hf", dtype="float32", batch_size=a.prompts)
    secs, toks = timed(h, reqs, sampling)
    res.update(hf_seconds=round(secs, 2), hf_tokens=toks, hf_tok_s=round(toks / secs, 1))
    print(f"transformers: {toks} tokens in {secs:.2f} s = {toks / secs:.1f} tok/s", flush=True)
    res["ratio"] = round(res["vllm_tok_s"] / res["hf_tok_s"], 2)
    print(f"ratio vLLM / transformers: {res['ratio']}x (target >= 2x)")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
