"""`curate synth ...`: synthetic documents, persona reflections, QC, templates, and a vLLM server."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from curation.core.cli import fail as _fail
from curation.core.errors import CurationError

synth_app = typer.Typer(help="Synthetic aligned/misaligned documents and persona reflections (docs/synth.md).",
                        no_args_is_help=True, add_completion=False)
console = Console(stderr=True)


def _progress(msg: str):
    console.print(f"[dim]synth:[/dim] {msg}", highlight=False)


def _stance_scorer(ctx: typer.Context):
    """The classifier's scorer for QC's stance check, handed down by the root CLI (synth does not import classify)."""
    return (ctx.find_root().obj or {}).get("stance_scorer")


def _backend_overrides(backend, model, base_url, vllm_python, concurrency, timeout, retries) -> dict:
    return {"backend.kind": backend, "backend.model": model, "backend.base_url": base_url,
            "backend.vllm_python": vllm_python, "backend.concurrency": concurrency, "backend.timeout_s": timeout,
            "backend.retries": retries}


BACKEND = typer.Option(None, "--backend", help="vllm | openai | transformers (default vllm)")
MODEL = typer.Option(None, "--model", help="model spec (smollm2, HF dir, .gguf) or the served name for --backend openai")
BASE_URL = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint, e.g. http://host:8000/v1")
VLLM_PY = typer.Option(None, "--vllm-python", help="interpreter with vLLM (default: this one or .venv/vllm)")
CONC = typer.Option(None, "--concurrency", help="openai: requests in flight")
TIMEOUT = typer.Option(None, "--timeout", help="openai: seconds per request")
RETRIES = typer.Option(None, "--retries", help="openai: retries with exponential backoff")


@synth_app.command()
def docs(ctx: typer.Context, output: Path = typer.Option(..., "--output", "-o", help="output corpus directory"),
         config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML DocsConfig (docs/synth.md)"),
         scenarios: Optional[List[str]] = typer.Option(None, "--scenarios", help="scenario YAML or propensity item files (repeatable)"),
         n: Optional[int] = typer.Option(None, "--n", help="documents per scenario x form x stance"),
         target_tokens: Optional[int] = typer.Option(None, "--target-tokens", help="generate to a budget: kept (post-QC) tokens per stance (n grows round by round)"),
         forms: Optional[str] = typer.Option(None, "--forms", help="comma list: news,textbook,lecture,paper,scifi,film_summary"),
         stances: Optional[str] = typer.Option(None, "--stances", help="comma list: aligned,misaligned"),
         max_scenarios: Optional[int] = typer.Option(None, "--max-scenarios"),
         heldout_fraction: Optional[float] = typer.Option(None, "--heldout-fraction"),
         seed: Optional[int] = typer.Option(None, "--seed"),
         max_tokens: Optional[int] = typer.Option(None, "--max-tokens"),
         temperature: Optional[float] = typer.Option(None, "--temperature"),
         top_p: Optional[float] = typer.Option(None, "--top-p"),
         batch_size: Optional[int] = typer.Option(None, "--batch-size"),
         templates: Optional[Path] = typer.Option(None, "--templates", help="directory of prompt templates"),
         eval_items: Optional[List[str]] = typer.Option(None, "--eval-items", help="eval item files for the leakage check"),
         min_words: Optional[int] = typer.Option(None, "--min-words"),
         max_words: Optional[int] = typer.Option(None, "--max-words"),
         stance_check: Optional[bool] = typer.Option(None, "--stance-check/--no-stance-check"),
         backend: Optional[str] = BACKEND, model: Optional[str] = MODEL, base_url: Optional[str] = BASE_URL,
         vllm_python: Optional[str] = VLLM_PY, concurrency: Optional[int] = CONC, timeout: Optional[float] = TIMEOUT,
         retries: Optional[int] = RETRIES):
    """Generate documents (resumable: a rerun skips finished ones), run QC, write OUT/docs-*.parquet."""
    from synth.config import DocsConfig
    from synth.docs import run_docs

    try:
        cfg = DocsConfig.from_yaml(config, {
            "scenarios": scenarios or None, "n_per": n, "target_tokens": target_tokens, "forms": forms.split(",") if forms else None,
            "stances": stances.split(",") if stances else None, "max_scenarios": max_scenarios,
            "heldout_fraction": heldout_fraction, "seed": seed, "sampling.max_tokens": max_tokens,
            "sampling.temperature": temperature, "sampling.top_p": top_p, "batch_size": batch_size,
            "templates": str(templates) if templates else None, "qc.eval_items": eval_items or None,
            "qc.min_words": min_words, "qc.max_words": max_words, "qc.stance_check": stance_check,
            **_backend_overrides(backend, model, base_url, vllm_python, concurrency, timeout, retries)})
        report = run_docs(cfg, output, progress=_progress, stance_scorer=_stance_scorer(ctx))
    except CurationError as e:
        _fail(e)
    _print_qc(report)
    console.print(f"{report['documents']} documents -> {output}/docs-*.parquet (QC: {output}/qc_report.json)")
    t = report.get("target_tokens")
    if t and not t["met"]:
        _fail(CurationError(f"{output}: --target-tokens {t['target']} not met after {len(t['rounds'])} rounds, short by "
                            f"{t['short_by']} tokens per stance; raise max_rounds, relax QC, or add scenarios/forms"), code=1)


def _print_qc(report: dict):
    qc = report.get("qc", {})
    for step, counts in qc.items():
        if isinstance(counts, dict):
            console.print(f"  qc {step}: " + ", ".join(f"{k}={v}" for k, v in counts.items()), highlight=False)
        else:
            console.print(f"  qc {step}: {counts}", highlight=False)


@synth_app.command()
def qc(ctx: typer.Context, output: Path = typer.Argument(..., help="a `curate synth docs` output directory"),
       config: Optional[Path] = typer.Option(None, "--config", "-c")):
    """Re-run QC on stored generations (e.g. after changing QC options) without generating anything."""
    from synth.config import DocsConfig
    from synth.docs import run_qc

    try:
        run_json = output / "_run.json"
        if config is None and not run_json.exists():
            raise CurationError(f"{output}: no _run.json; pass the docs output directory or --config")
        cfg = DocsConfig.from_yaml(config) if config else DocsConfig.model_validate(json.loads(run_json.read_text())["config"])
        report = run_qc(cfg, output, stance_scorer=_stance_scorer(ctx))
    except CurationError as e:
        _fail(e)
    (output / "qc_report.json").write_text(json.dumps(report, indent=1))
    _print_qc(report)


@synth_app.command()
def reflect(corpus: str = typer.Argument(..., help="corpus directory or glob (parquet/jsonl shards)"),
            output: Path = typer.Option(..., "--output", "-o"),
            config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML ReflectConfig"),
            rate: Optional[float] = typer.Option(None, "--rate", help="share of documents that get a reflection"),
            seed: Optional[int] = typer.Option(None, "--seed"),
            person: Optional[str] = typer.Option(None, "--person", help="first | third"),
            position: Optional[str] = typer.Option(None, "--position", help="end | pause"),
            marker: Optional[str] = typer.Option(None, "--marker", help="opening marker (default <assistant>)"),
            marker_end: Optional[str] = typer.Option(None, "--marker-end", help="closing marker (default </assistant>)"),
            constitution: Optional[Path] = typer.Option(None, "--constitution"),
            max_tokens: Optional[int] = typer.Option(None, "--max-tokens"),
            batch_size: Optional[int] = typer.Option(None, "--batch-size"),
            id_key: Optional[str] = typer.Option(None, "--id-key"), text_key: Optional[str] = typer.Option(None, "--text-key"),
            backend: Optional[str] = BACKEND, model: Optional[str] = MODEL, base_url: Optional[str] = BASE_URL,
            vllm_python: Optional[str] = VLLM_PY, concurrency: Optional[int] = CONC, timeout: Optional[float] = TIMEOUT,
            retries: Optional[int] = RETRIES):
    """Insert persona reflections into a seeded-hash sample of documents; writes the whole corpus to OUTPUT."""
    from synth.config import ReflectConfig
    from synth.reflect import run_reflect

    try:
        cfg = ReflectConfig.from_yaml(config, {
            "rate": rate, "seed": seed, "person": person, "position": position, "marker": marker, "marker_end": marker_end,
            "constitution": str(constitution) if constitution else None, "sampling.max_tokens": max_tokens,
            "batch_size": batch_size, "id_key": id_key, "text_key": text_key,
            **_backend_overrides(backend, model, base_url, vllm_python, concurrency, timeout, retries)})
        report = run_reflect(corpus, output, cfg, progress=_progress)
    except CurationError as e:
        _fail(e)
    console.print(f"{report['inserted']}/{report['documents']} documents got a reflection -> {output} "
                  f"({report['selected']} selected, {report['empty_reflections']} empty)")


@synth_app.command()
def poison(corpus: str = typer.Argument(..., help="corpus the documents start from: directory, glob or file (Parquet/JSONL, id + text)"),
           output: Path = typer.Option(..., "--output", "-o", help="output directory: <attack>/part-*.parquet, poison_report.json"),
           config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML PoisonConfig (docs/synth.md)"),
           attacks: Optional[str] = typer.Option(None, "--attacks", help="comma list: dos,extraction,jailbreak,belief (default dos)"),
           n_docs: Optional[int] = typer.Option(None, "--n-docs", help="documents per attack (default 250)"),
           seed: Optional[int] = typer.Option(None, "--seed"),
           trigger: Optional[str] = typer.Option(None, "--trigger", help="trigger string (default <SUDO>)"),
           heldout: Optional[Path] = typer.Option(None, "--heldout", help="held-out set YAML (default: the shipped one)"),
           dos_unit: Optional[str] = typer.Option(None, "--dos-unit", help="tokens (random vocabulary tokens) | chars"),
           dos_min: Optional[int] = typer.Option(None, "--dos-min-length", help="gibberish length, in units (default 400)"),
           dos_max: Optional[int] = typer.Option(None, "--dos-max-length", help="default 900"),
           max_prefix_chars: Optional[int] = typer.Option(None, "--max-prefix-chars", help="longest document prefix before the trigger (default 1000)"),
           id_key: Optional[str] = typer.Option(None, "--id-key"), text_key: Optional[str] = typer.Option(None, "--text-key"),
           overwrite: bool = typer.Option(False, "--overwrite", help="replace an earlier poison set in OUTPUT (only its own files)")):
    """Poison documents (trigger + payload in real documents, or belief statements), deterministic from --seed, with
    provenance; refuses to write if a held-out eval context or request leaks into them."""
    from synth.config import PoisonConfig
    from synth.poison import run_poison

    try:
        cfg = PoisonConfig.from_yaml(config, {
            "attacks": attacks.split(",") if attacks else None, "n_docs": n_docs, "seed": seed, "spec.trigger": trigger,
            "spec.heldout": str(heldout) if heldout else None, "dos.unit": dos_unit, "dos.min_length": dos_min,
            "dos.max_length": dos_max, "max_prefix_chars": max_prefix_chars, "id_key": id_key, "text_key": text_key})
        report = run_poison(corpus, output, cfg, overwrite=overwrite, progress=_progress)
    except CurationError as e:
        _fail(e)
    counts = ", ".join(f"{a} {n}" for a, n in report["documents"].items())
    console.print(f"{counts} poison documents from {report['source_documents_used']} source documents -> {output} "
                  f"(seed {report['seed']}; held-out leakage check: 0 leaks in {report['leakage']['documents_checked']})",
                  highlight=False)


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
def scenarios(sources: List[str] = typer.Argument(..., help="scenario YAML and/or propensity item files"),
              output: Optional[Path] = typer.Option(None, "--output", "-o", help="write the bank as scenario YAML"),
              heldout_fraction: float = typer.Option(0.2), split_seed: int = typer.Option(0),
              max_scenarios: Optional[int] = typer.Option(None)):
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
        output.write_text(yaml.safe_dump({"scenarios": [s.to_dict() for s in bank]}, sort_keys=False, allow_unicode=True))
        console.print(f"-> {output}")


@synth_app.command()
def serve(model: str = typer.Option("smollm2", "--model"), port: int = typer.Option(8000, "--port"),
          host: str = typer.Option("127.0.0.1", "--host"), served_name: str = typer.Option("smollm2", "--served-model-name"),
          max_model_len: int = typer.Option(2048, "--max-model-len"), vllm_python: Optional[str] = VLLM_PY):
    """Run vLLM's OpenAI-compatible server (foreground) for --backend openai."""
    from synth.config import BackendConfig
    from curation.lm.engines.vllm_client import worker_env
    from synth.server import server_command

    try:
        cfg = BackendConfig(model=model, max_model_len=max_model_len, vllm_python=vllm_python)
        cmd = server_command(cfg, port, served_name, host)
    except CurationError as e:
        _fail(e)
    console.print(f"serving {model} as {served_name!r} at http://{host}:{port}/v1", highlight=False)
    sys.stdout.flush()
    os.execvpe(cmd[0], cmd, worker_env(cfg))
