"""`curate synth docs`: N documents per scenario x form x stance, checkpointed, QC'd, written in the corpus format.

OUT/docs-00000.parquet ...   the corpus (id, text + provenance columns; `curate classify OUT` reads it)
OUT/_raw/part-*.parquet       every generation as it finished (resume state; ignored by classify: `_` prefix)
OUT/qc_report.json            counts per QC step, stance agreement rate
OUT/leakage_manifest.json     generation / held-out scenarios and the eval items behind them
OUT/_run.json                 config, model, template hashes
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

from curation.core.errors import CurationError
from synth.config import DocsConfig
from synth.prompts import DocTemplates, prompt_hash
from synth.qc import QC
from synth.scenarios import load_scenarios, split, write_manifest
from synth.store import PartStore, write_atomic

SHARD_ROWS = 10_000
COLUMNS = [
    "id",
    "text",
    "scenario_id",
    "form",
    "stance",
    "model",
    "prompt_hash",
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "n_tokens",
    "finish_reason",
    "split",
    "source",
]


def job_seed(base: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{base}:{key}".encode()).digest()[:4], "big") & 0x7FFFFFFF


def plan(cfg: DocsConfig, templates: DocTemplates, scenarios) -> list[dict]:
    """Every document the config asks for, with a deterministic id (same config => same ids => resumable)."""
    s = cfg.sampling
    jobs = []
    for sc in scenarios:
        for form in cfg.forms:
            for stance in cfg.stances:
                msgs = templates.messages(sc, form, stance)
                ph = prompt_hash(msgs)
                for k in range(cfg.n_per):
                    key = f"{sc.id}|{form}|{stance}|{k}"
                    seed = job_seed(cfg.seed, key)
                    ident = hashlib.sha256(
                        f"{key}|{ph}|{cfg.backend.kind}:{cfg.backend.model}|{s.model_dump_json()}|{seed}".encode()
                    ).hexdigest()[:20]
                    jobs.append(
                        {
                            "id": f"synth-{ident}",
                            "messages": msgs,
                            "scenario_id": sc.id,
                            "form": form,
                            "stance": stance,
                            "prompt_hash": ph,
                            "seed": seed,
                        }
                    )
    return jobs


def item_text(item) -> str:
    """The text of an eval item that the leakage check compares documents with."""
    return " ".join([item.context, item.question, *item.options])


def eval_item_texts(paths: list[str], include_non_alignment: bool = False) -> list[str]:
    if not paths:
        return []
    from curation.core.items import load_items

    return [item_text(i) for i in load_items(paths, include_non_alignment=include_non_alignment)]


def claim_docs_output(output: str | Path, cfg: DocsConfig):
    """OUT as a `curate synth docs` output (curation/core/outputs.py): resumed by the plain rerun; never a scenario or
    template input, never a directory of someone else's files."""
    from curation.core.outputs import claim

    inputs = [p for p in [*cfg.scenarios, cfg.templates, *cfg.qc.eval_items] if p and Path(str(p)).exists()]
    owned = claim(output, "synth docs", inputs=inputs)
    owned.own("leakage_manifest.json", "_run.json", "qc_report.json")
    owned.own("_raw", "_logs", tree=True)
    return owned


def kept_tokens(out: Path, stances: list[str]) -> dict[str, int]:
    """Tokens of the documents QC kept, per stance (the generator's own count of each completion)."""
    files = sorted(Path(out).glob("docs-*.parquet"))
    got = {s: 0 for s in stances}
    if files:
        df = pl.concat([pl.read_parquet(f, columns=["stance", "n_tokens"]) for f in files])
        for row in df.group_by("stance").agg(pl.col("n_tokens").fill_null(0).sum()).iter_rows():
            got[row[0]] = int(row[1])
    return got


def run_docs(
    cfg: DocsConfig, output: str | Path, progress: Callable[[str], None] = lambda m: None, stance_scorer=None
) -> dict:
    """Generate, QC and write; with ``target_tokens``, round after round with a growing ``n_per`` (every round keeps
    the documents of the last: ids are deterministic) until each stance has that many kept tokens."""
    if cfg.target_tokens is None:
        return _generate(cfg, output, progress, stance_scorer)
    n, rounds, short = cfg.n_per, [], {}
    for _ in range(cfg.max_rounds):
        report = _generate(cfg.model_copy(update={"n_per": n}), output, progress, stance_scorer)
        kept = kept_tokens(Path(output), cfg.stances)
        rounds.append({"n_per": n, "documents": report["documents"], "kept_tokens": kept})
        short = {s: cfg.target_tokens - t for s, t in kept.items() if t < cfg.target_tokens}
        progress(f"round {len(rounds)}: n_per {n}, kept tokens per stance {kept} (target {cfg.target_tokens})")
        if not short or (len(rounds) > 1 and kept == rounds[-2]["kept_tokens"]):
            break  # met, or QC keeps nothing more of what the generator writes
        low = max(1, min(kept.values()))
        n = max(n + 1, min(4 * n, math.ceil(n * cfg.target_tokens / low)))
    report["target_tokens"] = {"target": cfg.target_tokens, "met": not short, "short_by": short, "rounds": rounds}
    (Path(output) / "qc_report.json").write_text(json.dumps(report, indent=1))
    return report


def _generate(
    cfg: DocsConfig, output: str | Path, progress: Callable[[str], None] = lambda m: None, stance_scorer=None
) -> dict:
    owned = claim_docs_output(output, cfg)
    out = owned.root
    t0 = time.time()
    scenarios = load_scenarios(cfg.scenarios, cfg.max_scenarios)
    gen_set, held = split(scenarios, cfg.heldout_fraction, cfg.split_seed)
    if not gen_set:
        raise CurationError(
            f"{', '.join(cfg.scenarios)}: all {len(scenarios)} scenarios fell in the held-out split; "
            f"lower heldout_fraction or add scenarios"
        )
    write_manifest(out / "leakage_manifest.json", gen_set, held, cfg.split_seed, cfg.heldout_fraction)
    templates = DocTemplates(cfg.templates, cfg.forms, cfg.stances)
    jobs = plan(cfg, templates, gen_set)
    store = PartStore(out / "_raw")
    done = store.ids()
    todo = [j for j in jobs if j["id"] not in done]
    progress(
        f"{len(scenarios)} scenarios ({len(gen_set)} generation, {len(held)} held out); {len(jobs)} documents planned, "
        f"{len(jobs) - len(todo)} already done, {len(todo)} to generate"
    )
    (out / "_run.json").write_text(
        json.dumps(
            {
                "config": cfg.model_dump(),
                "templates": {
                    f"{f}_{s}": hashlib.sha256(t.template.encode()).hexdigest()[:16]
                    for (f, s), t in templates.t.items()
                },
            },
            indent=1,
        )
    )
    n_tokens = 0
    t_gen = time.time()
    if todo:
        from curation.lm.engines import Request
        from curation.lm.session import LanguageModel

        lm = LanguageModel.from_backend(cfg.backend, log_dir=str(out / "_logs"))
        try:
            model_id = lm.model_id
            s = cfg.sampling
            for start in range(0, len(todo), cfg.batch_size):
                batch = todo[start : start + cfg.batch_size]
                comps = lm.generate([Request(j["messages"], j["seed"]) for j in batch], s)
                rows = [
                    {
                        **{k: v for k, v in j.items() if k != "messages"},
                        "text": c.text,
                        "model": model_id,
                        "temperature": s.temperature,
                        "top_p": s.top_p,
                        "max_tokens": s.max_tokens,
                        "n_tokens": c.n_tokens,
                        "finish_reason": c.finish_reason,
                        "split": "generation",
                        "source": "synth",
                    }
                    for j, c in zip(batch, comps, strict=False)
                ]
                store.append(rows)
                n_tokens += sum(c.n_tokens for c in comps)
                progress(
                    f"generated {min(start + cfg.batch_size, len(todo))}/{len(todo)} "
                    f"({n_tokens / max(time.time() - t_gen, 1e-9):.1f} output tokens/s incl. start-up)"
                )
        finally:
            lm.close()
    gen_seconds = time.time() - t_gen
    report = run_qc(
        cfg, out, {j["id"] for j in jobs}, stance_scorer=stance_scorer, order=[j["id"] for j in jobs], owned=owned
    )
    report.update(
        planned=len(jobs),
        generated_this_run=len(todo),
        output_tokens_this_run=n_tokens,
        generation_seconds=round(gen_seconds, 2),
        elapsed_seconds=round(time.time() - t0, 2),
    )
    (out / "qc_report.json").write_text(json.dumps(report, indent=1))
    return report


def run_qc(
    cfg: DocsConfig,
    out: Path,
    ids: set[str] | None = None,
    stance_scorer=None,
    order: list[str] | None = None,
    owned=None,
) -> dict:
    """QC over the stored generations; rewrites OUT/docs-*.parquet (deterministic, so reruns give the same corpus)."""
    owned = owned or claim_docs_output(out, cfg)
    out = owned.root
    raw = PartStore(out / "_raw").read()
    if raw is None:
        raise CurationError(f"{out}: no generations under _raw/; run `curate synth docs` first")
    if ids is not None:
        raw = raw.filter(pl.col("id").is_in(list(ids)))
    raw = raw.unique("id", keep="first", maintain_order=True)
    if order:
        pos = {i: n for n, i in enumerate(order)}
        raw = raw.with_columns(pl.col("id").replace_strict(pos, default=len(pos)).alias("_o")).sort("_o").drop("_o")
    if stance_scorer is None and cfg.qc.stance_check:
        raise CurationError(
            "qc.stance_check needs the classifier's stance scorer: run `curate synth docs`/`qc`, pass "
            "stance_scorer=curation.classify.predict.score_texts, or set qc.stance_check: false"
        )
    item_sources = [p for p in cfg.scenarios if not p.endswith((".yaml", ".yml"))]
    templates = DocTemplates(cfg.templates, cfg.forms, cfg.stances)
    qc = QC(cfg.qc, eval_item_texts(list(cfg.qc.eval_items) + item_sources), templates.texts(), stance_scorer)
    kept = qc.run(raw.to_dicts())
    df = pl.DataFrame(kept, schema=raw.schema) if kept else raw.clear()
    df = df.select([c for c in COLUMNS if c in df.columns])
    for old in [f for f in owned.files if f.startswith("docs-")]:  # only shards a synth docs run wrote
        (out / old).unlink(missing_ok=True)
    for n, start in enumerate(range(0, max(len(df), 1), SHARD_ROWS)):
        owned.own(f"docs-{n:05d}.parquet", f".tmp-docs-{n:05d}.parquet")
        write_atomic(df.slice(start, SHARD_ROWS), out / f"docs-{n:05d}.parquet")
    return {"qc": qc.report, "documents": len(df), "shards": sorted(p.name for p in out.glob("docs-*.parquet"))}
