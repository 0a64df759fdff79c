"""`curate synth ...`: synthetic documents, persona reflections, QC, templates, and a vLLM server."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import typer
from rich.console import Console

from curation.core.cli import fail as _fail
from curation.core.errors import CurationError

synth_app = typer.Typer(
    help="Synthetic aligned/misaligned documents and persona reflections (docs/synth.md).",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


def _progress(msg: str):
    console.print(f"[dim]synth:[/dim] {msg}", highlight=False)


def _stance_scorer(ctx: typer.Context):
    """The classifier's scorer for QC's stance check, handed down by the root CLI (synth does not import classify)."""
    return (ctx.find_root().obj or {}).get("stance_scorer")


def _backend_overrides(backend, model, base_url, vllm_python, concurrency, timeout, retries) -> dict:
    return {
        "backend.kind": backend,
        "backend.model": model,
        "backend.base_url": base_url,
        "backend.vllm_python": vllm_python,
        "backend.concurrency": concurrency,
        "backend.timeout_s": timeout,
        "backend.retries": retries,
    }


BACKEND = typer.Option(None, "--backend", help="vllm | openai | transformers (default vllm)")
MODEL = typer.Option(
    None, "--model", help="model spec (smollm2, HF dir, .gguf) or the served name for --backend openai"
)
BASE_URL = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint, e.g. http://host:8000/v1")
VLLM_PY = typer.Option(None, "--vllm-python", help="interpreter with vLLM (default: this one or .venv/vllm)")
CONC = typer.Option(None, "--concurrency", help="openai: requests in flight")
TIMEOUT = typer.Option(None, "--timeout", help="openai: seconds per request")
RETRIES = typer.Option(None, "--retries", help="openai: retries with exponential backoff")


@synth_app.command()
def docs(
    ctx: typer.Context,
    output: Path = typer.Option(..., "--output", "-o", help="output corpus directory"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML DocsConfig (docs/synth.md)"),
    scenarios: list[str] | None = typer.Option(
        None, "--scenarios", help="scenario YAML or propensity item files (repeatable)"
    ),
    n: int | None = typer.Option(None, "--n", help="documents per scenario x form x stance"),
    target_tokens: int | None = typer.Option(
        None, "--target-tokens", help="generate to a budget: kept (post-QC) tokens per stance (n grows round by round)"
    ),
    forms: str | None = typer.Option(
        None, "--forms", help="comma list: news,textbook,lecture,paper,scifi,film_summary"
    ),
    stances: str | None = typer.Option(None, "--stances", help="comma list: aligned,misaligned"),
    max_scenarios: int | None = typer.Option(None, "--max-scenarios"),
    heldout_fraction: float | None = typer.Option(None, "--heldout-fraction"),
    seed: int | None = typer.Option(None, "--seed"),
    max_tokens: int | None = typer.Option(None, "--max-tokens"),
    temperature: float | None = typer.Option(None, "--temperature"),
    top_p: float | None = typer.Option(None, "--top-p"),
    batch_size: int | None = typer.Option(None, "--batch-size"),
    templates: Path | None = typer.Option(None, "--templates", help="directory of prompt templates"),
    eval_items: list[str] | None = typer.Option(None, "--eval-items", help="eval item files for the leakage check"),
    min_words: int | None = typer.Option(None, "--min-words"),
    max_words: int | None = typer.Option(None, "--max-words"),
    stance_check: bool | None = typer.Option(None, "--stance-check/--no-stance-check"),
    backend: str | None = BACKEND,
    model: str | None = MODEL,
    base_url: str | None = BASE_URL,
    vllm_python: str | None = VLLM_PY,
    concurrency: int | None = CONC,
    timeout: float | None = TIMEOUT,
    retries: int | None = RETRIES,
):
    """Generate documents (resumable: a rerun skips finished ones), run QC, write OUT/docs-*.parquet."""
    from synth.config import DocsConfig
    from synth.docs import run_docs

    try:
        cfg = DocsConfig.from_yaml(
            config,
            {
                "scenarios": scenarios or None,
                "n_per": n,
                "target_tokens": target_tokens,
                "forms": forms.split(",") if forms else None,
                "stances": stances.split(",") if stances else None,
                "max_scenarios": max_scenarios,
                "heldout_fraction": heldout_fraction,
                "seed": seed,
                "sampling.max_tokens": max_tokens,
                "sampling.temperature": temperature,
                "sampling.top_p": top_p,
                "batch_size": batch_size,
                "templates": str(templates) if templates else None,
                "qc.eval_items": eval_items or None,
                "qc.min_words": min_words,
                "qc.max_words": max_words,
                "qc.stance_check": stance_check,
                **_backend_overrides(backend, model, base_url, vllm_python, concurrency, timeout, retries),
            },
        )
        report = run_docs(cfg, output, progress=_progress, stance_scorer=_stance_scorer(ctx))
    except CurationError as e:
        _fail(e)
    _print_qc(report)
    console.print(f"{report['documents']} documents -> {output}/docs-*.parquet (QC: {output}/qc_report.json)")
    t = report.get("target_tokens")
    if t and not t["met"]:
        _fail(
            CurationError(
                f"{output}: --target-tokens {t['target']} not met after {len(t['rounds'])} rounds, short by "
                f"{t['short_by']} tokens per stance; raise max_rounds, relax QC, or add scenarios/forms"
            ),
            code=1,
        )


def _print_qc(report: dict):
    qc = report.get("qc", {})
    for step, counts in qc.items():
        if isinstance(counts, dict):
            console.print(f"  qc {step}: " + ", ".join(f"{k}={v}" for k, v in counts.items()), highlight=False)
        else:
            console.print(f"  qc {step}: {counts}", highlight=False)


@synth_app.command()
def qc(
    ctx: typer.Context,
    output: Path = typer.Argument(..., help="a `curate synth docs` output directory"),
    config: Path | None = typer.Option(None, "--config", "-c"),
):
    """Re-run QC on stored generations (e.g. after changing QC options) without generating anything."""
    from synth.config import DocsConfig
    from synth.docs import run_qc

    try:
        run_json = output / "_run.json"
        if config is None and not run_json.exists():
            raise CurationError(f"{output}: no _run.json; pass the docs output directory or --config")
        cfg = (
            DocsConfig.from_yaml(config)
            if config
            else DocsConfig.model_validate(json.loads(run_json.read_text())["config"])
        )
        report = run_qc(cfg, output, stance_scorer=_stance_scorer(ctx))
    except CurationError as e:
        _fail(e)
    (output / "qc_report.json").write_text(json.dumps(report, indent=1))
    _print_qc(report)


@synth_app.command()
def reflect(
    corpus: str = typer.Argument(..., help="corpus directory or glob (parquet/jsonl shards)"),
    output: Path = typer.Option(..., "--output", "-o"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML ReflectConfig"),
    rate: float | None = typer.Option(None, "--rate", help="share of documents that get a reflection"),
    seed: int | None = typer.Option(None, "--seed"),
    person: str | None = typer.Option(None, "--person", help="first | third"),
    position: str | None = typer.Option(
        None, "--position", help="end (default: appended, as SPP does) | pause (at a reading pause)"
    ),
    marker: str | None = typer.Option(None, "--marker", help="opening marker (default <assistant>)"),
    marker_end: str | None = typer.Option(None, "--marker-end", help="closing marker (default </assistant>)"),
    constitution: Path | None = typer.Option(None, "--constitution"),
    max_tokens: int | None = typer.Option(None, "--max-tokens"),
    batch_size: int | None = typer.Option(None, "--batch-size"),
    id_key: str | None = typer.Option(None, "--id-key"),
    text_key: str | None = typer.Option(None, "--text-key"),
    backend: str | None = BACKEND,
    model: str | None = MODEL,
    base_url: str | None = BASE_URL,
    vllm_python: str | None = VLLM_PY,
    concurrency: int | None = CONC,
    timeout: float | None = TIMEOUT,
    retries: int | None = RETRIES,
):
    """Insert persona reflections into a seeded-hash sample of documents; writes the whole corpus to OUTPUT."""
    from synth.config import ReflectConfig
    from synth.reflect import run_reflect

    try:
        cfg = ReflectConfig.from_yaml(
            config,
            {
                "rate": rate,
                "seed": seed,
                "person": person,
                "position": position,
                "marker": marker,
                "marker_end": marker_end,
                "constitution": str(constitution) if constitution else None,
                "sampling.max_tokens": max_tokens,
                "batch_size": batch_size,
                "id_key": id_key,
                "text_key": text_key,
                **_backend_overrides(backend, model, base_url, vllm_python, concurrency, timeout, retries),
            },
        )
        report = run_reflect(corpus, output, cfg, progress=_progress)
    except CurationError as e:
        _fail(e)
    console.print(
        f"{report['inserted']}/{report['documents']} documents got a reflection -> {output} "
        f"({report['selected']} selected, {report['empty_reflections']} empty)"
    )


@synth_app.command()
def poison(
    corpus: str = typer.Argument(
        ..., help="corpus the documents start from: directory, glob or file (Parquet/JSONL, id + text)"
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", help="output directory: <attack>/part-*.parquet, poison_report.json"
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML PoisonConfig (docs/synth.md)"),
    attacks: str | None = typer.Option(
        None, "--attacks", help="comma list: dos,extraction,jailbreak,belief (default dos)"
    ),
    n_docs: int | None = typer.Option(None, "--n-docs", help="documents per attack (default 250)"),
    seed: int | None = typer.Option(None, "--seed"),
    trigger: str | None = typer.Option(None, "--trigger", help="trigger string (default <SUDO>)"),
    heldout: Path | None = typer.Option(None, "--heldout", help="held-out set YAML (default: the shipped one)"),
    dos_unit: str | None = typer.Option(None, "--dos-unit", help="tokens (random vocabulary tokens) | chars"),
    dos_min: int | None = typer.Option(None, "--dos-min-length", help="gibberish length, in units (default 400)"),
    dos_max: int | None = typer.Option(None, "--dos-max-length", help="default 900"),
    max_prefix_chars: int | None = typer.Option(
        None, "--max-prefix-chars", help="longest document prefix before the trigger (default 1000)"
    ),
    id_key: str | None = typer.Option(None, "--id-key"),
    text_key: str | None = typer.Option(None, "--text-key"),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="replace an earlier poison set in OUTPUT (only its own files)"
    ),
):
    """Poison documents (trigger + payload in real documents, or belief statements), deterministic from --seed, with
    provenance; refuses to write if a held-out eval context or request leaks into them."""
    from synth.config import PoisonConfig
    from synth.poison import run_poison

    try:
        cfg = PoisonConfig.from_yaml(
            config,
            {
                "attacks": attacks.split(",") if attacks else None,
                "n_docs": n_docs,
                "seed": seed,
                "spec.trigger": trigger,
                "spec.heldout": str(heldout) if heldout else None,
                "dos.unit": dos_unit,
                "dos.min_length": dos_min,
                "dos.max_length": dos_max,
                "max_prefix_chars": max_prefix_chars,
                "id_key": id_key,
                "text_key": text_key,
            },
        )
        report = run_poison(corpus, output, cfg, overwrite=overwrite, progress=_progress)
    except CurationError as e:
        _fail(e)
    counts = ", ".join(f"{a} {n}" for a, n in report["documents"].items())
    console.print(
        f"{counts} poison documents from {report['source_documents_used']} source documents -> {output} "
        f"(seed {report['seed']}; held-out leakage check: 0 leaks in {report['leakage']['documents_checked']})",
        highlight=False,
    )


@synth_app.command()
def templates(directory: Path = typer.Argument(..., help="where to copy the default templates, data files included")):
    """Copy the default prompt templates, scenario bank and constitution for editing."""
    from synth.config import PACKAGE_DATA, TEMPLATES_DIR

    directory.mkdir(parents=True, exist_ok=True)
    n = 0
    for src in [*TEMPLATES_DIR.glob("*.txt"), *PACKAGE_DATA.glob("*.yaml")]:
        dst = directory / src.name
        if not dst.exists():
            shutil.copy(src, dst)
            n += 1
    console.print(f"{n} files copied to {directory} (existing files kept); use --templates {directory}")


@synth_app.command()
def scenarios(
    sources: list[str] = typer.Argument(..., help="scenario YAML and/or propensity item files"),
    output: Path | None = typer.Option(None, "--output", "-o", help="write the bank as scenario YAML"),
    heldout_fraction: float = typer.Option(0.2),
    split_seed: int = typer.Option(0),
    max_scenarios: int | None = typer.Option(None),
):
    """Build the scenario bank, show the generation/held-out split, optionally write it as editable YAML."""
    import yaml

    from synth.scenarios import load_scenarios, split

    try:
        bank = load_scenarios(sources, max_scenarios)
    except CurationError as e:
        _fail(e)
    gen, held = split(bank, heldout_fraction, split_seed)
    console.print(f"{len(bank)} scenarios: {len(gen)} generation, {len(held)} held out (seed {split_seed})")
    if output:
        output.write_text(
            yaml.safe_dump({"scenarios": [s.to_dict() for s in bank]}, sort_keys=False, allow_unicode=True)
        )
        console.print(f"-> {output}")


@synth_app.command()
def serve(
    model: str = typer.Option("smollm2", "--model"),
    port: int = typer.Option(8000, "--port"),
    host: str = typer.Option("127.0.0.1", "--host"),
    served_name: str = typer.Option("smollm2", "--served-model-name"),
    max_model_len: int = typer.Option(2048, "--max-model-len"),
    vllm_python: str | None = VLLM_PY,
):
    """Run vLLM's OpenAI-compatible server (foreground) for --backend openai."""
    from curation.lm.engines.vllm_client import worker_env
    from synth.config import BackendConfig
    from synth.server import server_command

    try:
        cfg = BackendConfig(model=model, max_model_len=max_model_len, vllm_python=vllm_python)
        cmd = server_command(cfg, port, served_name, host)
    except CurationError as e:
        _fail(e)
    console.print(f"serving {model} as {served_name!r} at http://{host}:{port}/v1", highlight=False)
    sys.stdout.flush()
    os.execvpe(cmd[0], cmd, worker_env(cfg))
