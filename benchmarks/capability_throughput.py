"""Parity and items/s of `curate eval capability` vs lm-evaluation-harness on the same items and model, in one run.

lm-eval (hf backend) gets each suite's seeded subset as a local task over the same JSONL rows (our prompt text as
the query, the choices with lm-eval's " " target delimiter; LAMBADA as a loglikelihood task scoring " " + target),
so both compute the same log-likelihoods. Checks: acc / acc_norm within 0.5 points, per-item log-likelihoods within
1e-4; prints our items/s over lm-eval's (target >= 2x).

    .venv/bin/pip install 'lm-eval>=0.4.8'   # (make bench does this)
    .venv/bin/python benchmarks/capability_throughput.py [--n 500] [--suites arc_easy,piqa,lambada] [--batch-size 16]
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
DATA = ROOT.parent / "shared" / "data" / "capability"


def lm_eval_task(tmp: Path, name: str, kind: str, items) -> None:
    """A local lm-eval task over the suite's items, fields named so no template can alter the text."""
    data = tmp / f"{name}.jsonl"
    with open(data, "w") as f:
        for it in items:
            row = (
                {"query": it.text, "cont": " " + it.choices[0]}
                if kind == "lambada"
                else {"query": it.text, "choices": it.choices, "gold": it.answer}
            )
            f.write(json.dumps(row) + "\n")
    common = (
        f"task: bench_{name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\ndoc_to_text: query\n"
    )
    if kind == "lambada":
        spec = common + (
            "output_type: loglikelihood\ndoc_to_target: cont\nmetric_list:\n"
            "  - metric: perplexity\n    aggregation: perplexity\n    higher_is_better: false\n"
            "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        )
    else:
        spec = common + (
            "output_type: multiple_choice\ndoc_to_choice: choices\ndoc_to_target: gold\nmetric_list:\n"
            "  - metric: acc\n  - metric: acc_norm\n"
        )
    (tmp / "tasks").mkdir(exist_ok=True)
    (tmp / "tasks" / f"bench_{name}.yaml").write_text(spec)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500, help="items per suite (a seeded random subset)")
    ap.add_argument("--suites", default="arc_easy,piqa,lambada")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--data-dir", default=str(DATA))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument(
        "--noise-floor",
        action="store_true",
        help="also score each suite with lm-eval at batch size 1: how far lm-eval's own per-item "
        "log-likelihoods move with the batch (float32 summation order), beside the 1e-4 criterion",
    )
    ap.add_argument(
        "--ceiling",
        action="store_true",
        help="also profile our run: the seconds in matrix products (float32, the model's weights) and the "
        "ratio to lm-eval if every other operation took no time, the most any float32 scorer reaches",
    )
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from curation.lm.session import LanguageModel
    from evals.capability import CapabilityConfig, load_suite_items, resolve_suites, run_capability, seeded_subset

    ours_lm = LanguageModel.open(args.model)  # one load, shared with lm-eval's HFLM
    model, tok = ours_lm.model, ours_lm.tokenizer
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=args.batch_size)
    names = args.suites.split(",")
    print(
        f"model {args.model}, batch {args.batch_size}, torch threads {torch.get_num_threads()}, "
        f"lm-eval {lm_eval.__version__ if hasattr(lm_eval, '__version__') else '?'}, {args.n} items per suite"
    )
    totals = {"ours": 0.0, "theirs": 0.0, "n": 0}
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        chosen = {}
        for name in names:
            (suite,) = resolve_suites([name], args.data_dir)
            items = load_suite_items(suite.files[0], suite)
            chosen[name] = (suite, [items[i] for i in seeded_subset(len(items), args.n, args.seed)])
            lm_eval_task(tmp, name, suite.kind, chosen[name][1])
        # lm-eval indexes its thousands of built-in task files once here, outside the timed runs
        tasks = TaskManager(include_path=str(tmp / "tasks"))
        with torch.inference_mode():  # warm both code paths' kernels up before timing
            model(torch.tensor([tok("warm up", add_special_tokens=False)["input_ids"]]))
        for name in names:
            suite, items = chosen[name]
            cfg = CapabilityConfig(
                model=args.model,
                suites=[name],
                data_dir=args.data_dir,
                limit=args.n,
                seed=args.seed,
                batch_size=args.batch_size,
                n_boot=200,
            )
            t = time.perf_counter()
            ours = run_capability(cfg, tmp / f"ours_{name}", progress=False, lm=ours_lm)["suites"][name]
            ours_s = time.perf_counter() - t
            t = time.perf_counter()
            res = lm_eval.simple_evaluate(
                model=lm, tasks=[f"bench_{name}"], num_fewshot=0, log_samples=True, task_manager=tasks
            )
            theirs_s = time.perf_counter() - t
            theirs = res["results"][f"bench_{name}"]
            rows = [json.loads(x) for x in (tmp / f"ours_{name}" / "items" / f"{name}.jsonl").read_text().splitlines()]
            diffs = []
            for smp in res["samples"][f"bench_{name}"]:
                lls = (
                    [x[0] for x in smp["filtered_resps"]] if suite.kind != "lambada" else [smp["filtered_resps"][0][0]]
                )
                mine = rows[smp["doc_id"]]["loglik"]
                mine = mine if isinstance(mine, list) else [mine]
                diffs += [abs(a - b) for a, b in zip(lls, mine, strict=False)]
            metrics = ["acc"] + (["acc_norm"] if suite.kind == "choice" else [])
            print(f"\n{name}: {len(items)} items")
            for m in metrics:
                a, b = ours[m]["value"], theirs[f"{m},none"]
                good = abs(a - b) <= 0.005
                ok &= good
                verdict = "ok" if good else "FAIL"
                print(f"  {m:9s} ours {a:.4f}  lm-eval {b:.4f}  diff {100 * (a - b):+.2f} points {verdict}")
            if suite.kind == "lambada":
                print(f"  perplexity ours {ours['perplexity']['value']:.3f}  lm-eval {theirs['perplexity,none']:.3f}")
            good = max(diffs) <= 1e-4
            ok &= good
            print(f"  max |loglik diff| {max(diffs):.2e} over {len(diffs)} continuations {'ok' if good else 'FAIL'}")
            if args.noise_floor:
                lm.batch_size_per_gpu = 1
                alone = lm_eval.simple_evaluate(
                    model=lm, tasks=[f"bench_{name}"], num_fewshot=0, log_samples=True, task_manager=tasks
                )["samples"][f"bench_{name}"]
                lm.batch_size_per_gpu = args.batch_size
                first = {x["doc_id"]: x for x in res["samples"][f"bench_{name}"]}
                own = [
                    abs(a[0] - b[0])
                    for smp in alone
                    for a, b in zip(smp["filtered_resps"], first[smp["doc_id"]]["filtered_resps"], strict=False)
                ]
                print(
                    f"  lm-eval batch 1 vs batch {args.batch_size}: max |loglik diff| {max(own):.2e} "
                    "(its own noise floor)"
                )
            print(
                f"  ours {ours_s:6.1f} s ({len(items) / ours_s:5.2f} items/s)  lm-eval {theirs_s:6.1f} s "
                f"({len(items) / theirs_s:5.2f} items/s)  ratio {theirs_s / ours_s:.2f}x"
            )
            if args.ceiling:
                from torch.profiler import ProfilerActivity, profile

                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    run_capability(cfg, tmp / f"prof_{name}", progress=False, lm=ours_lm)
                mm = (
                    sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in ("aten::mm", "aten::addmm"))
                    / 1e6
                )
                print(
                    f"  ceiling: our matrix products take {mm:.1f} s of {ours_s:.1f} s ({mm / ours_s:.0%}); with every "
                    f"other operation free, ours would reach {theirs_s / mm:.2f}x lm-eval"
                )
            totals["ours"] += ours_s
            totals["theirs"] += theirs_s
            totals["n"] += len(items)
    print(
        f"\nall suites: ours {totals['n'] / totals['ours']:.2f} items/s, lm-eval {totals['n'] / totals['theirs']:.2f} "
        f"items/s, ratio {totals['theirs'] / totals['ours']:.2f}x (target >= 2x); parity {'ok' if ok else 'FAILED'}"
    )


if __name__ == "__main__":
    main()
