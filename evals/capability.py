"""`curate eval capability`: what a data condition costs in general capability, scored as lm-evaluation-harness does.

Multiple-choice suites are cloze-scored: each choice's own text is the continuation of the prompt
("Question: ...\\nAnswer:" + " " + choice), ``acc`` takes the highest log-likelihood, ``acc_norm`` the highest per
character of the choice and ``acc_bytes`` per UTF-8 byte (lm-eval's definitions). LAMBADA: the last word's
log-likelihood, accuracy = the word is the greedy continuation, perplexity = exp(-mean log-likelihood). Held-out
text (``--perplexity``): bits per byte and word/token perplexity over lm-eval-style rolling windows. Every metric
carries a seeded bootstrap CI over items (documents for perplexity).

Writes ``RUN/items/<suite>.jsonl`` (per item), ``RUN/items/<suite>.json`` (the suite's metrics and the fingerprint
of what produced them: a rerun reuses a suite whose fingerprint matches and rescores the rest), ``RUN/summary.json``
and ``RUN/summary.md``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from curation.core.errors import CurationError
from curation.core.items import data_dir, file_sha256
from curation.core.records import read_records
from evals.perplexity import read_texts, score_perplexity
from evals.runfiles import write_rows, write_summary, write_text
from evals.stats import bootstrap_ci, bootstrap_ratio_ci

QA = "Question: {question}\nAnswer:"
DATA_ENV = "CURATE_CAPABILITY_DATA"
DEFAULT_DATA = "../shared/data/capability"


@dataclass(frozen=True)
class SuiteSpec:
    file: str  # relative to the data directory
    fewshot: str | None = None  # pool for --shots (else the suite's own items, the scored one left out)
    template: str = QA  # {question} or {context} is the item's text
    kind: str = "choice"  # choice | lambada


SUITES = {
    "arc_easy": SuiteSpec("arc_easy/test.jsonl", "arc_easy/dev.jsonl"),
    "arc_challenge": SuiteSpec("arc_challenge/test.jsonl", "arc_challenge/dev.jsonl"),
    "piqa": SuiteSpec("piqa/valid.jsonl"),
    "hellaswag": SuiteSpec("hellaswag/val.jsonl", template="{question}"),
    "lambada": SuiteSpec("lambada/test.jsonl", template="{context}", kind="lambada"),
    "mmlu": SuiteSpec("mmlu/test.jsonl", "mmlu/dev.jsonl"),
    "boolq": SuiteSpec("boolq/val.jsonl", template="{question}\nAnswer:"),
}
# the paper's capability set that has a published split here (GSM8K, IFEval, PopQA need generation: not scored)
NAMED = {"core": ["arc_easy", "piqa", "hellaswag", "lambada", "mmlu"], "all": list(SUITES)}
_GENERIC_STEMS = {"test", "val", "valid", "validation", "dev", "train"}


@dataclass
class CapabilityConfig:
    model: str = "smollm2"
    suites: list[str] = field(default_factory=lambda: list(NAMED["core"]))
    perplexity: list[str] = field(default_factory=list)  # Parquet files or directories with a `text` column
    data_dir: str | None = None
    limit: int | None = None  # a seeded random subset of N items per suite (documents for perplexity)
    seed: int = 0
    shots: int = 0
    batch_size: int = 16
    max_tokens: int = 2048  # left-truncate longer prompts (lm-eval's rule)
    window: int = 1024  # rolling-window length for held-out perplexity
    text_column: str = "text"
    n_boot: int = 2000
    tag: str | None = None
    condition: str | None = None
    device: str | None = None
    dtype: str = "auto"


@dataclass
class Suite:
    name: str
    kind: str  # choice | lambada | perplexity
    files: list[Path]
    template: str = QA
    fewshot: Path | None = None
    root: Path | None = None  # the directory it was resolved in: an input, so no output may land inside it


@dataclass
class CapItem:
    id: str
    text: str  # the prompt's item text (template applied), before any few-shot prefix
    choices: list[str]  # continuations (without the leading space); LAMBADA: [target]
    answer: int = 0
    subject: str = ""


# ---------------------------------------------------------------- suites and items


def resolve_suites(names: list[str], data: str | None, perplexity: list[str] = ()) -> list[Suite]:
    """Suite names (resolved in the data directory), ``core``/``all``, or JSONL paths in the capability schema."""
    wanted: list[str] = []
    for n in names:
        for part in (p.strip() for p in str(n).split(",")):
            if part:
                wanted += NAMED.get(part, [part])
    out, seen, root = [], set(), None
    for name in wanted:
        if name in SUITES:
            root = root or data_dir(data, DATA_ENV, DEFAULT_DATA, "capability suites", "--data-dir")
            spec = SUITES[name]
            path = root / spec.file
            if not path.exists():
                raise CurationError(
                    f"{path}: suite {name!r} is missing from the data directory; point --data-dir "
                    f"(or ${DATA_ENV}) at a copy of shared/data/capability"
                )
            pool = root / spec.fewshot if spec.fewshot and (root / spec.fewshot).exists() else None
            suite = Suite(name, spec.kind, [path], spec.template, pool, root)
        elif name.endswith((".jsonl", ".json")) or Path(name).exists():
            path = Path(name)
            if not path.is_file():
                raise CurationError(
                    f"{name}: no such suite file; pass a suite name ({', '.join(SUITES)}, core, all) "
                    "or a JSONL file in the capability schema"
                )
            first = next(iter(read_records(path)), (0, {}))[1]
            kind = "lambada" if {"context", "target"} <= first.keys() else "choice"
            label = path.parent.name if path.stem in _GENERIC_STEMS else path.stem
            suite = Suite(label, kind, [path], "{context}" if kind == "lambada" else QA)
        else:
            raise CurationError(f"unknown suite {name!r}; use one of {', '.join(SUITES)}, core, all, or a JSONL path")
        if suite.name in seen:
            continue
        seen.add(suite.name)
        out.append(suite)
    for p in perplexity:
        path = Path(p)
        files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
        if not files or not all(f.is_file() and f.suffix == ".parquet" for f in files):
            raise CurationError(f"{p}: --perplexity takes Parquet files or a directory of them")
        name = f"ppl:{path.name if path.is_dir() else path.stem}"
        if name not in seen:
            seen.add(name)
            out.append(Suite(name, "perplexity", files, root=path if path.is_dir() else None))
    if not out:
        raise CurationError("no suites to score; pass --suites core (or names / JSONL paths) or --perplexity PARQUET")
    return out


_MMLU_SUBJECT = re.compile(r"^mmlu-[a-z]+-(.+)-\d+$")


def load_suite_items(path: Path, suite: Suite) -> list[CapItem]:
    items = []
    for n, row in read_records(path):
        rid = str(row.get("id", f"{path.stem}-{n}"))
        if suite.kind == "lambada":
            if not isinstance(row.get("context"), str) or not isinstance(row.get("target"), str) or not row["target"]:
                raise CurationError(
                    f"{path}:{n}: a LAMBADA row needs string `context` and non-empty `target`; fix that row"
                )
            items.append(CapItem(rid, suite.template.replace("{context}", row["context"]), [row["target"]]))
            continue
        q, ch, ans = row.get("question"), row.get("choices"), row.get("answer")
        if (
            not isinstance(q, str)
            or not isinstance(ch, list)
            or len(ch) < 2
            or not isinstance(ans, int)
            or not 0 <= ans < len(ch)
        ):
            raise CurationError(
                f"{path}:{n}: expected question (str), choices (list of >= 2) and answer (0-based int "
                "in range); fix that row"
            )
        m = _MMLU_SUBJECT.match(rid)
        items.append(
            CapItem(
                rid,
                suite.template.replace("{question}", q),
                [str(c) for c in ch],
                ans,
                str(row.get("subject") or (m.group(1) if m else "")),
            )
        )
    if not items:
        raise CurationError(f"{path}: no items")
    return items


def seeded_subset(n: int, limit: int | None, seed: int) -> list[int]:
    """Indices of a seeded random subset (kept in file order), not the first N."""
    if limit is None or limit >= n:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(n, size=limit, replace=False).tolist())


def _gold(item: CapItem) -> str:
    return item.choices[item.answer]


def fewshot_prefix(item: CapItem, pool: list[CapItem], shots: int, rng: np.random.Generator) -> str:
    """K solved examples (same subject where the pool has enough), never the item itself, "\\n\\n"-separated."""
    if shots <= 0:
        return ""
    cands = [p for p in pool if p.id != item.id]
    same = [p for p in cands if item.subject and p.subject == item.subject]
    cands = same if len(same) >= shots else cands
    if len(cands) < shots:
        raise CurationError(f"--shots {shots}: only {len(cands)} examples in the few-shot pool")
    picked = [cands[i] for i in rng.choice(len(cands), size=shots, replace=False)]
    return "".join(f"{p.text} {_gold(p)}\n\n" for p in picked)


# ---------------------------------------------------------------- scoring


def score_choice_suite(items: list[CapItem], prefixes: list[str], scorer, progress=None) -> list[dict]:
    reqs, groups = [], []
    for k, (it, pre) in enumerate(zip(items, prefixes, strict=False)):
        for c in it.choices:
            reqs.append((pre + it.text, " " + c))
            groups.append(k)
    res = scorer.loglikelihoods(reqs, groups=groups, progress=progress)
    rows, j = [], 0
    for it in items:
        got = res[j : j + len(it.choices)]
        j += len(it.choices)
        ll = np.array([r[0] for r in got])
        chars = np.array([len(c) for c in it.choices], dtype=float)
        nbytes = np.array([len(c.encode("utf-8")) for c in it.choices], dtype=float)
        pred, pred_norm, pred_bytes = int(ll.argmax()), int((ll / chars).argmax()), int((ll / nbytes).argmax())
        rows.append(
            {
                "id": it.id,
                "subject": it.subject,
                "answer": it.answer,
                "loglik": ll.tolist(),
                "greedy": [r[1] for r in got],
                "n_tokens": [r[2] for r in got],
                "pred": pred,
                "pred_norm": pred_norm,
                "acc": float(pred == it.answer),
                "acc_norm": float(pred_norm == it.answer),
                "acc_bytes": float(pred_bytes == it.answer),
            }
        )
    return rows


def score_lambada_suite(items: list[CapItem], prefixes: list[str], scorer, progress=None) -> list[dict]:
    res = scorer.loglikelihoods(
        [(pre + it.text, " " + it.choices[0]) for it, pre in zip(items, prefixes, strict=False)], progress=progress
    )
    return [
        {"id": it.id, "target": it.choices[0], "loglik": r[0], "greedy": r[1], "n_tokens": r[2], "acc": float(r[1])}
        for it, r in zip(items, res, strict=False)
    ]


# ---------------------------------------------------------------- metrics


def _metric(values, seed: int, n_boot: int) -> dict:
    v = np.asarray(values, dtype=float)
    return {"value": float(v.mean()), "ci": list(bootstrap_ci(v, seed, n_boot))}


def suite_metrics(suite: Suite, rows: list[dict], seed: int, n_boot: int) -> dict:
    out: dict = {"n": len(rows)}
    if suite.kind == "choice":
        for k, name in enumerate(("acc", "acc_norm", "acc_bytes")):
            out[name] = _metric([r[name] for r in rows], seed + k, n_boot)
        subjects = sorted({r["subject"] for r in rows if r["subject"]})
        if len(subjects) > 1:
            out["by_subject"] = {
                s: {
                    "n": len(g),
                    "acc": float(np.mean([r["acc"] for r in g])),
                    "acc_norm": float(np.mean([r["acc_norm"] for r in g])),
                }
                for s in subjects
                for g in [[r for r in rows if r["subject"] == s]]
            }
    elif suite.kind == "lambada":
        out["acc"] = _metric([r["acc"] for r in rows], seed, n_boot)
        ll = [r["loglik"] for r in rows]
        lo, hi = bootstrap_ci(ll, seed + 1, n_boot)
        out["perplexity"] = {"value": math.exp(-float(np.mean(ll))), "ci": [math.exp(-hi), math.exp(-lo)]}
    else:
        nll = np.array([-r["loglik"] for r in rows])
        for name, den, f in (
            ("bits_per_byte", "n_bytes", lambda x: x / math.log(2)),
            ("byte_perplexity", "n_bytes", math.exp),
            ("word_perplexity", "n_words", math.exp),
            ("token_perplexity", "n_tokens", math.exp),
        ):
            d = np.array([r[den] for r in rows], dtype=float)
            lo, hi = bootstrap_ratio_ci(nll, d, seed, n_boot)
            out[name] = {"value": f(nll.sum() / d.sum()), "ci": [f(lo), f(hi)]}
        out["tokens"] = int(sum(r["n_tokens"] for r in rows))
    return out


MAIN_METRIC = {"choice": "acc_norm", "lambada": "acc", "perplexity": "bits_per_byte"}


# ---------------------------------------------------------------- run


def model_fingerprint(spec: str) -> str:
    """Model identity for resuming: the spec plus the size and content digest of its weight files (a retrained model
    rescores, whatever its files' times say)."""
    from curation.core.digests import cached_sha256
    from curation.lm.loading import resolve

    src = resolve(spec)
    files = (
        [src.gguf]
        if src.gguf
        else sorted(p for p in src.path.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf"))
    )
    return hashlib.sha256(
        "|".join(
            [str(src.path)] + [f"{f.name}:{f.stat().st_size}:{cached_sha256(f, full=True)}" for f in files]
        ).encode()
    ).hexdigest()[:16]


def _legacy_run(root: Path) -> dict | None:
    """A run written before ownership records (its summary.json says capability) is adopted, so it resumes."""
    try:
        ok = json.loads((root / "summary.json").read_text()).get("kind") == "capability"
    except (OSError, ValueError):
        return None
    return {"files": ["summary.json", "summary.md"], "trees": ["items"]} if ok else None


def run_capability(cfg: CapabilityConfig, output: str | Path, progress: bool = True, lm=None) -> dict:
    """``lm``: an open `LanguageModel` (curation.lm.session) of ``cfg.model``, so an experiment, a test or a benchmark
    scores several runs on one load; without it the model loads here."""
    from curation.core.outputs import claim
    from curation.core.provenance import package_versions
    from curation.lm.loading import resolve
    from curation.lm.session import LanguageModel

    suites = resolve_suites(cfg.suites, cfg.data_dir, cfg.perplexity)
    model_path = cfg.model if os.path.exists(cfg.model) else None
    # resumable (a suite whose fingerprint matches is reused): the same command adds to its own run, nothing else's
    owned = claim(
        output,
        "eval capability",
        inputs=[f for s in suites for f in s.files] + [s.root for s in suites] + [model_path],
        legacy=_legacy_run,
    )
    owned.own("summary.json", "summary.md")
    owned.own("items", tree=True)
    out = owned.root
    if cfg.limit is not None and cfg.limit < 1:
        raise CurationError("--limit must be at least 1")
    source = resolve(cfg.model)
    t0 = time.time()
    if lm is None:
        lm = LanguageModel.open(cfg.model, "hf", cfg.dtype, cfg.device, cfg.batch_size)
    lm.serves(cfg.model, "hf")
    load_s = time.time() - t0
    scorer = lm.batched(cfg.batch_size).continuation_scorer(max_tokens=cfg.max_tokens)
    model_fp = model_fingerprint(cfg.model)
    (out / "items").mkdir(parents=True, exist_ok=True)
    results, hashes = {}, {}
    for suite in suites:
        files = suite.files + ([suite.fewshot] if suite.fewshot and cfg.shots else [])
        for f in files:
            hashes[str(f)] = file_sha256(f)
        slug = suite.name.replace(":", "_").replace("/", "_")
        fp = {
            "model": model_fp,
            "files": [hashes[str(f)] for f in files],
            "seed": cfg.seed,
            "limit": cfg.limit,
            "shots": cfg.shots if suite.kind != "perplexity" else 0,
            "template": suite.template,
            "max_tokens": cfg.max_tokens,
            "window": cfg.window if suite.kind == "perplexity" else None,
            "text_column": cfg.text_column if suite.kind == "perplexity" else None,
            "n_boot": cfg.n_boot,
        }
        meta_path, rows_path = out / "items" / f"{slug}.json", out / "items" / f"{slug}.jsonl"
        if meta_path.exists() and rows_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta.get("fingerprint") == fp:
                results[suite.name] = {
                    **meta["metrics"],
                    "seconds": meta["seconds"],
                    "items_per_s": meta["items_per_s"],
                    "reused": True,
                }
                continue
        t1 = time.time()
        if suite.kind == "perplexity":
            docs = read_texts(suite.files, None, cfg.text_column)
            if not docs:
                raise CurationError(f"{suite.files[0]}: no non-empty `{cfg.text_column}` values; pass --text-column")
            docs = [docs[i] for i in seeded_subset(len(docs), cfg.limit, cfg.seed)]
            n_units = len(docs)
            # every position goes through the vocabulary projection here: batch ~2k tokens, not 16 windows
            ppl_lm = lm.batched(max(1, 2048 // cfg.window))
            work = lambda cb, docs=docs, ppl_lm=ppl_lm: score_perplexity(docs, ppl_lm, cfg.window, progress=cb)  # noqa: E731
            total = None
        else:
            items = load_suite_items(suite.files[0], suite)
            items = [items[i] for i in seeded_subset(len(items), cfg.limit, cfg.seed)]
            pool = [] if not cfg.shots else load_suite_items(suite.fewshot or suite.files[0], suite)
            rng = np.random.default_rng(cfg.seed + 1)
            prefixes = [fewshot_prefix(it, pool, cfg.shots, rng) for it in items]
            n_units = len(items)
            fn = score_lambada_suite if suite.kind == "lambada" else score_choice_suite
            work = lambda cb, fn=fn, items=items, prefixes=prefixes: fn(items, prefixes, scorer, cb)  # noqa: E731
            total = sum(len(it.choices) for it in items)
        rows = _with_progress(work, f"{suite.name}: {n_units} items", total, progress)
        seconds = time.time() - t1
        metrics = suite_metrics(suite, rows, cfg.seed, cfg.n_boot)
        write_rows(rows_path, rows)
        write_text(
            meta_path,
            json.dumps(
                {
                    "suite": suite.name,
                    "kind": suite.kind,
                    "fingerprint": fp,
                    "metrics": metrics,
                    "seconds": round(seconds, 2),
                    "items_per_s": round(n_units / max(seconds, 1e-9), 2),
                },
                indent=1,
            ),
        )
        results[suite.name] = {
            **metrics,
            "seconds": round(seconds, 2),
            "items_per_s": round(n_units / max(seconds, 1e-9), 2),
        }
    for suite in suites:
        results[suite.name]["kind"] = suite.kind
    summary = {
        "kind": "capability",
        "model": source.model_id,
        "condition": cfg.condition,
        "tag": cfg.tag,
        "suites": results,
        "seed": cfg.seed,
        "limit": cfg.limit,
        "shots": cfg.shots,
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("tag", "condition")},
        "files_sha256": hashes,
        "versions": package_versions(),
        "load_s": round(load_s, 2),
        "seconds": round(sum(r["seconds"] for r in results.values()), 2),
    }
    write_summary(out, summary, summary_markdown(summary))
    return summary


def _with_progress(work, label: str, total: int | None, progress: bool):
    if not progress:
        return work(None)
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(label, total=total)
        return work(lambda n: bar.advance(task, n))


def fmt_metric(m: dict) -> str:
    return f"{m['value']:.4f} [{m['ci'][0]:.4f}, {m['ci'][1]:.4f}]"


def summary_markdown(s: dict) -> str:
    lines = [
        f"# Capability: {s['model']}",
        "",
        f"seed {s['seed']}, limit {s['limit']}, {s['shots']}-shot; 95% bootstrap CIs",
        "",
        "| suite | n | acc | acc_norm | other | s | items/s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in s["suites"].items():
        other = ""
        if "perplexity" in r:
            other = f"perplexity {fmt_metric(r['perplexity'])}"
        elif "bits_per_byte" in r:
            other = f"bits/byte {fmt_metric(r['bits_per_byte'])}; word ppl {r['word_perplexity']['value']:.2f}"
        lines.append(
            f"| {name} | {r['n']} | {fmt_metric(r['acc']) if 'acc' in r else ''} | "
            f"{fmt_metric(r['acc_norm']) if 'acc_norm' in r else ''} | {other} | {r['seconds']} | {r['items_per_s']} |"
        )
    return "\n".join(lines) + "\n"
