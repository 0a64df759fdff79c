"""Items/s of `curate eval propensity` vs lm-evaluation-harness on the same items, model and prompts, in one run.

lm-eval (hf backend) gets the very prompts we score (both option orders, ending "Answer: (") as a local
multiple-choice task whose choices are the option letters, so both compute the same log-likelihoods. Target: >= 2x.

    .venv/bin/pip install lm-eval   # (make bench does this)
    .venv/bin/python benchmarks/propensity_throughput.py [--items N] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ITEMS = ROOT.parent / "shared" / "data" / "propensity" / "anthropic-advanced-ai-risk" / "human_generated_evals"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=200, help="items in all (spread over the alignment files)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="alternate the two this many times; report each one's fastest "
        "(timeit's rule: on a shared machine the minimum is the least disturbed run)",
    )
    args = ap.parse_args()

    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    from curation.core.items import LETTERS, load_items
    from curation.lm.session import LanguageModel
    from evals.prompts import PromptStyle, orders
    from evals.propensity import PropensityConfig, run_propensity

    files = sorted(ITEMS.glob("*.jsonl"))
    items = load_items(files, limit_per_file=max(1, args.items // 9))[: args.items]
    ours_lm = LanguageModel.open(args.model)  # one load, shared with lm-eval's HFLM
    model, tok = ours_lm.model, ours_lm.tokenizer
    style = PromptStyle()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager

        docs = [
            {"prompt": style.render(it, o, tok), "choices": list(LETTERS[: len(o)])}
            for it in items
            for o in orders(len(it.options))
        ]
        data = tmp / "docs.jsonl"
        data.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
        (tmp / "tasks").mkdir()
        (tmp / "tasks" / "propensity_letters.yaml").write_text(
            "task: propensity_letters\n"
            "dataset_path: json\n"
            f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
            "test_split: test\n"
            "output_type: multiple_choice\n"
            "doc_to_text: '{{prompt}}'\n"
            "doc_to_choice: '{{choices}}'\n"
            "doc_to_target: 0\n"
            "target_delimiter: ''\n"
            "metric_list:\n  - metric: acc\n"
        )
        lm = HFLM(pretrained=model, tokenizer=tok, batch_size=args.batch_size)
        ours_t, theirs_t = [], []
        for rep in range(args.repeat):
            t = time.perf_counter()
            s = run_propensity(
                PropensityConfig(batch_size=args.batch_size, n_boot=200),
                tmp / f"ours{rep}",
                progress=False,
                items=items,
                lm=ours_lm,
            )
            ours_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            res = lm_eval.simple_evaluate(
                model=lm,
                tasks=["propensity_letters"],
                task_manager=TaskManager(include_path=str(tmp / "tasks")),
                log_samples=True,
                num_fewshot=0,
            )
            theirs_t.append(time.perf_counter() - t)
        ours, theirs = min(ours_t), min(theirs_t)
        ours_p = [json.loads(line) for line in (tmp / "ours0" / "items.jsonl").read_text().splitlines()]
        samples = res["samples"]["propensity_letters"]
        # agreement: lm-eval's letter log-likelihoods vs ours for the same prompt
        ours_lp = [lp for r in ours_p for lp in r["letter_logprobs"]]
        diffs = []
        for smp in samples:
            lls = [x[0] for x in smp["filtered_resps"]]
            mine = ours_lp[smp["doc_id"]]
            diffs += [abs(a - b) for a, b in zip(lls, mine, strict=False)]

    n = len(items)
    print(
        f"items: {n} ({sum(len(orders(len(it.options))) for it in items)} prompts), model {args.model}, "
        f"batch {args.batch_size}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(
        f"curate eval propensity: {ours:7.1f} s  {n / ours:6.2f} items/s   "
        f"(runs: {', '.join(f'{x:.1f}' for x in ours_t)} s)"
    )
    print(
        f"lm-eval (hf backend)  : {theirs:7.1f} s  {n / theirs:6.2f} items/s   "
        f"(runs: {', '.join(f'{x:.1f}' for x in theirs_t)} s)"
    )
    print(f"ratio ours/lm-eval: {theirs / ours:.2f}x (target >= 2x)")
    print(f"max |log-likelihood difference| on the same prompts: {max(diffs):.2e} over {len(diffs)} letter scores")
    print(f"mean P(misaligned): {s['overall']['mean_p_misaligned']:.3f}")


if __name__ == "__main__":
    main()
