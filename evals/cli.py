"""`curate eval ...`: a thin typer layer over evals.propensity, evals.report and evals.priming."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from curation.errors import CurationError

eval_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Alignment-propensity evaluation and reports.")
console = Console(stderr=True)


def _fail(e: CurationError):
    console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@eval_app.command()
def propensity(
    items: List[str] = typer.Option(..., "--items", help="Item files or directories (JSONL, JSON arrays, Parquet)"),
    output: Path = typer.Option(..., "--output", "-o", help="Run directory"),
    model: str = typer.Option("smollm2", help="HF model directory, .gguf file, or 'smollm2'"),
    mode: str = typer.Option("base", help="base (\"Answer: (\"), chat (chat template), generate (free answer, parsed)"),
    system_prompt: Optional[str] = typer.Option(None, help="none | ai-assistant | hhh | a file | the text (chat/generate)"),
    assistant_prefix: Optional[str] = typer.Option(None, help="Text after the prompt, ending in '('"),
    batch_size: int = typer.Option(16),
    seed: int = typer.Option(0),
    limit_per_file: Optional[int] = typer.Option(None, help="First N items of each file"),
    matching_is: Optional[str] = typer.Option(None, help="For Anthropic-style files the polarity table does not know: misaligned | aligned"),
    include_non_alignment: bool = typer.Option(False, help="Also score files marked not_alignment (self-awareness, one-box)"),
    tag: Optional[str] = typer.Option(None, help="base | posttrained (the report pairs them)"),
    condition: Optional[str] = typer.Option(None, help="Training condition name, for reports"),
    device: Optional[str] = typer.Option(None),
    backend: str = typer.Option("hf", help="hf (transformers) | vllm (prompt_logprobs; `make vllm`)"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
):
    """Score how often a model picks the misaligned option; writes items.jsonl, summary.json, summary.md."""
    from curation.quiet import quiet_third_party
    from evals.propensity import PropensityConfig, run_propensity

    quiet_third_party(progress)
    cfg = PropensityConfig(model=model, items=items, mode=mode, system_prompt=system_prompt, assistant_prefix=assistant_prefix,
                           batch_size=batch_size, seed=seed, limit_per_file=limit_per_file, matching_is=matching_is,
                           include_non_alignment=include_non_alignment, tag=tag, condition=condition, device=device, backend=backend)
    try:
        s = run_propensity(cfg, output, progress=progress)
    except CurationError as e:
        _fail(e)
    o = s["overall"]
    console.print(f"{o['n']} items: mean P(misaligned) {o['mean_p_misaligned']:.3f} "
                  f"[{o['mean_p_misaligned_ci'][0]:.3f}, {o['mean_p_misaligned_ci'][1]:.3f}], "
                  f"share > 0.5 {o['share_misaligned']:.3f} -> {output}/summary.md", highlight=False)


@eval_app.command()
def report(runs: List[Path] = typer.Argument(..., help="Run directories from `curate eval propensity`"),
           output: Path = typer.Option(..., "--output", "-o"), seed: int = typer.Option(0)):
    """Markdown report and PNG bar charts (95% CI) comparing runs; paired differences; base vs post-trained."""
    from evals.report import make_report

    try:
        path = make_report(runs, output, seed=seed)
    except CurationError as e:
        _fail(e)
    console.print(f"report -> {path}", highlight=False)


@eval_app.command()
def priming(
    docs: List[str] = typer.Option(..., "--docs", help="Corpus shards (dir or glob)"),
    output: Path = typer.Option(..., "--output", "-o"),
    model: str = typer.Option("smollm2"),
    phrase: Optional[str] = typer.Option(None, help="One key phrase for every document"),
    phrase_column: str = typer.Option("key_phrase"),
    topic_column: str = typer.Option("topic"),
    threshold: float = typer.Option(1e-3, help="Flag phrases whose probability is below this"),
    limit: Optional[int] = typer.Option(None),
    seed: int = typer.Option(0),
):
    """P(key phrase) after neutral prefixes; phrases under the threshold are flagged as high priming risk."""
    from evals.priming import PrimingConfig, run_priming

    cfg = PrimingConfig(model=model, phrase=phrase, phrase_column=phrase_column, topic_column=topic_column,
                        threshold=threshold, limit=limit, seed=seed)
    try:
        s = run_priming(docs, output, cfg)
    except CurationError as e:
        _fail(e)
    console.print(f"{s['docs']} docs, {s['flagged']} flagged below {s['threshold']:g} -> {output}/priming.jsonl", highlight=False)
