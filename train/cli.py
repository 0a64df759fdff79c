"""`curate train ...`: tokenize, pretrain, convert (mounted by curate/cli.py, which also adds sft, dpo and
posttrain)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.console import Console

from curation.core.cli import fail as _fail
from curation.core.config import parse_set, parse_weights
from curation.core.errors import CurationError

train_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Tokenise mixes into Megatron datasets, pretrain / midtrain / continue-pretrain, convert checkpoints.",
)
console = Console(stderr=True)


def _quiet(progress: bool = True):
    """megatron-core warns at import time that Transformer Engine / Apex are absent; on CPU that is expected."""
    from curation.core.quiet import quiet_third_party

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    quiet_third_party(progress)


@train_app.command()
def tokenize(
    mix_dir: Path = typer.Argument(
        ..., help="Output directory of `curate mix build` (or any directory of Parquet shards with `text`)"
    ),
    tokenizer: str = typer.Option(
        "smollm2", "--tokenizer", "-t", help="Model spec: smollm2, a .gguf, or an HF directory"
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Directory for <source>.bin/.idx and blend.json"),
    workers: int = typer.Option(2, help="Worker processes (one shard each at a time)"),
    text_key: str = typer.Option("text", "--text-key"),
    weights: list[str] = typer.Option([], "--weights", help="SOURCE=W[,SOURCE=W...]: overrides the mix's weights"),
    overwrite: bool = typer.Option(
        False,
        help="Replace tokens of another mix or tokenizer in OUTPUT (removes only what `curate train tokenize` wrote)",
    ),
    max_tokens: int | None = typer.Option(
        None,
        "--max-tokens",
        help="Only what a run reads: each dataset's share of N tokens, from its first shards (the mix is shuffled)",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
):
    """Tokenise a mix into Megatron indexed datasets (EOD after every document), one per source, plus blend.json."""
    _quiet(progress)
    from train.tokenize import tokenize_mix

    try:
        source_weights = parse_weights(weights, "--weights", "SOURCE=WEIGHT", "arbital=0.3,wikipedia=0.7")
        if progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            with Progress(
                TextColumn("[bold]tokenize[/bold] shards"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as bar:
                task = bar.add_task("shards", total=None)
                res = tokenize_mix(
                    mix_dir,
                    tokenizer,
                    output,
                    workers=workers,
                    text_key=text_key,
                    weights=source_weights,
                    overwrite=overwrite,
                    max_tokens=max_tokens,
                    progress=lambda d, n: bar.update(task, completed=d, total=n),
                )
        else:
            res = tokenize_mix(
                mix_dir,
                tokenizer,
                output,
                workers=workers,
                text_key=text_key,
                weights=source_weights,
                overwrite=overwrite,
                max_tokens=max_tokens,
            )
    except CurationError as e:
        _fail(e)
    if res.changed:
        console.print(
            f"redid {len(res.changed)} shard(s) that changed since they were tokenised: {', '.join(res.changed[:5])}",
            highlight=False,
            soft_wrap=True,
        )
    if res.regenerated:
        console.print(
            f"regenerated {len(res.regenerated)} shard(s) whose part files were missing: "
            f"{', '.join(res.regenerated[:5])}",
            highlight=False,
            soft_wrap=True,
        )
    for s in res.blend["sources"]:
        console.print(
            f"  {s['name']:<24} {s['documents']:>9,} docs {s['tokens']:>13,} tokens  weight {s['weight']:.4f}",
            highlight=False,
        )
    console.print(
        f"{res.tokens:,} tokens from {res.documents:,} documents in {res.seconds:.1f}s "
        f"({res.tokens_per_s:,.0f} tokens/s; {res.shards_skipped} shards already done) -> {res.output}/blend.json",
        highlight=False,
    )


@train_app.command()
def pretrain(
    config: Path = typer.Argument(..., help="YAML config (see train/configs/ and docs/train.md)"),
    init_from: str | None = typer.Option(
        None, "--init-from", help="Checkpoint whose weights start this run, with a fresh optimizer and schedule (CPT)"
    ),
    continue_from: str | None = typer.Option(
        None,
        "--continue-from",
        help="A base run whose weights, optimizer state and LR schedule this run continues on its own data "
        "(midtraining; train.continue_iteration picks the checkpoint)",
    ),
    save_dir: str | None = typer.Option(None, "--save-dir", help="Overrides train.save_dir"),
    steps: int | None = typer.Option(None, "--steps", help="Overrides train.steps"),
    sets: list[str] = typer.Option([], "--set", help="SECTION.KEY=VALUE overrides, repeatable"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
):
    """Train a Megatron-core GPT model (resumes from <save_dir>/checkpoints when present). Multi-GPU: torchrun -m
    train."""
    _quiet(progress)
    from train.config import PretrainConfig
    from train.pretrain import pretrain as run

    try:
        ov = parse_set(sets, "train.steps=100")
        for key, val in (
            ("train.init_from", init_from),
            ("train.continue_from", continue_from),
            ("train.save_dir", save_dir),
            ("train.steps", steps),
        ):
            if val is not None:
                ov[key] = val
        cfg = PretrainConfig.from_yaml(config, ov)
        res = run(cfg, str(config), progress=progress)
    except CurationError as e:
        _fail(e)
    if int(os.environ.get("RANK", "0")) == 0:  # the result on stdout; diagnostics stay on stderr
        print(
            json.dumps(
                {k: res.get(k) for k in ("save_dir", "start_iteration", "iteration", "loss", "tokens_per_s", "mfu")}
            )
        )


@train_app.command()
def convert(
    source: str = typer.Argument(
        ..., help="HF Llama directory / smollm2 / .gguf (with --to megatron), or a checkpoint (with --to hf)"
    ),
    output: Path = typer.Option(..., "--output", "-o"),
    to: str = typer.Option(..., "--to", help="megatron | hf"),
    tokenizer: str | None = typer.Option(
        None, "--tokenizer", help="With --to hf: tokenizer to save alongside (default: the checkpoint's)"
    ),
    overwrite: bool = typer.Option(
        False, help="Replace an earlier conversion in OUTPUT (removes only what `curate train convert` wrote)"
    ),
):
    """Convert between Hugging Face Llama checkpoints and this trainer's checkpoints, in either direction."""
    _quiet()
    from train.convert import hf_to_megatron, megatron_to_hf

    try:
        if to == "megatron":
            out = hf_to_megatron(source, output, overwrite=overwrite)
        elif to == "hf":
            out = megatron_to_hf(source, output, tokenizer=tokenizer, overwrite=overwrite)
        else:
            raise CurationError(f"--to {to}: expected `megatron` or `hf`")
    except CurationError as e:
        _fail(e)
    console.print(f"wrote {out}", highlight=False)


@train_app.command()
def plan(
    config: Path = typer.Argument(..., help="YAML config or shipped config name (see train/configs/)"),
    gpus: int = typer.Option(8, "--gpus", help="GPUs per node"),
    nodes: int = typer.Option(1, "--nodes", help="Nodes"),
    gpu: str = typer.Option("H100", "--gpu", help="H100 | H200 | A100 (its memory), unless --gpu-memory is given"),
    gpu_memory: float | None = typer.Option(None, "--gpu-memory", help="GiB per GPU, for another device"),
    vocab_size: int | None = typer.Option(
        None, "--vocab-size", help="Tokenizer vocabulary, when the config has no model.vocab_size (default: SmolLM2's)"
    ),
    sets: list[str] = typer.Option([], "--set", help="SECTION.KEY=VALUE overrides, repeatable"),
):
    """Parameter count, per-GPU memory (weights, gradients, optimizer, activations) and estimated tokens/s of a config
    on NODES x GPUS devices, without a GPU; exit 2 with one line naming the fix when it cannot fit (train/sizing.py)."""
    from rich.table import Table

    from train.config import PretrainConfig
    from train.sizing import estimate_config, table_rows

    try:
        cfg = PretrainConfig.from_yaml(config, parse_set(sets, "train.micro_batch_size=2"))
        s = estimate_config(
            cfg, str(config), gpus=gpus, nodes=nodes, gpu=gpu, gpu_memory=gpu_memory, vocab_size=vocab_size
        )
        table = Table(title=f"{config}: {s.params['total'] / 1e9:.3f}B parameters on {nodes} x {gpus} {gpu}")
        table.add_column("quantity")
        table.add_column("value", justify="right")
        for k, v in table_rows(cfg, s):
            table.add_row(k, v)
        Console().print(table)
        s.check()
    except CurationError as e:
        _fail(e)
