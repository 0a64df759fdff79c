"""`curate mix`: init (commented preset manifests), build (plan, shuffle, lock, hand-off), verify."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from curation.core.cli import fail as _fail
from curation.core.cli import write_rendered
from curation.core.errors import CurationError

mix_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Build data mixtures from a manifest: shuffled Parquet shards, mix.lock.json, blend.json.",
)
err = Console(stderr=True)


def _out() -> Console:
    """stdout; wide enough for the plan table when piped (rich would fold it to 80 columns)."""
    c = Console()
    return c if c.is_terminal else Console(width=160)


def _fmt(n: float) -> str:
    n = float(n)
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def print_plan(pd: dict, console: Console, realised: bool = False) -> None:
    tok = pd["tokenizer"]
    t = Table(
        title=f"mix '{pd['name']}' ({pd['stage']}, seed {pd['seed']}): {_fmt(pd['total_tokens'])} tokens, "
        f"{pd['total_docs']:,} documents, tokens {tok['count']} ({tok['name']})",
        title_justify="left",
    )
    for col, just in (
        ("source", "left"),
        ("docs avail", "right"),
        ("tokens avail", "right"),
        ("docs kept", "right"),
        ("tokens kept", "right"),
        ("budget", "right"),
        ("repetition", "right"),
        ("docs in mix", "right"),
        ("share", "right"),
    ):
        t.add_column(col, justify=just)
    for s in pd["sources"]:
        docs = s.get("realised_docs", s["expected_docs"]) if realised else s["expected_docs"]
        t.add_row(
            s["name"],
            f"{s['docs_available']:,}",
            _fmt(s["tokens_available"]),
            f"{s['docs_selected']:,}",
            _fmt(s["tokens_selected"]),
            f"{_fmt(s['budget_tokens'])} {s['budget_kind']}",
            f"{s['repetition']:.2f}x",
            f"{docs:,}",
            f"{s['share']:.2%}",
        )
    console.print(t)
    for s in pd["sources"]:
        extra = []
        if s.get("filter"):
            extra.append(f"filter `{s['filter']}`")
        if s.get("bytes_per_token"):
            extra.append(f"{s['bytes_per_token']:.2f} bytes/token from {s['sample_docs']} sampled docs")
        extra += s.get("notes", [])
        if extra:
            console.print(f"  {s['name']}: " + "; ".join(extra), highlight=False)
    console.print(
        f"  output columns: {', '.join(pd['columns'])}; layout {pd['layout']}; shuffle buckets {pd['buckets']}",
        highlight=False,
    )


@mix_app.command()
def init(
    preset: str = typer.Option(
        ...,
        "--preset",
        "-p",
        help="unfiltered | filtered | alignment-upsampled | misalignment-upsampled | reflections | poisoned",
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="Manifest file to write (default: print it)"),
    corpus: str = typer.Option("data/corpus", help="Corpus root: one source per sub-directory with shards"),
    attributes: str = typer.Option("data/attributes", help="`curate classify` output for the corpus root"),
    synthetic: str = typer.Option("data/synthetic", help="Synthetic documents (synth output)"),
    poison: str = typer.Option("data/poison", help="`curate synth poison` output (the poisoned preset)"),
    reflected: str = typer.Option(
        "data/reflected", help="`curate synth reflect` output of the corpus (the reflections preset)"
    ),
    force: bool = typer.Option(False, help="Replace an existing file"),
):
    """Write a commented manifest for one of the paper's conditions (or persona reflections)."""
    from curation.mix.presets import render_preset

    try:
        text = render_preset(
            preset,
            corpus,
            attributes,
            synthetic,
            base=output.parent if output is not None else None,
            poison=poison,
            reflected=reflected,
        )
    except CurationError as e:
        _fail(e)
    write_rendered(text, output, force, f"preset {preset}", f"curate mix build {output} --output DIR --dry-run")


@mix_app.command()
def build(
    manifest: Path = typer.Argument(..., help="Manifest YAML"),
    output: Path = typer.Option(..., "--output", "-o", help="Output directory (shards/, mix.lock.json, blend.json)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan only; write nothing"),
    count: str | None = typer.Option(None, "--count", help="Override tokenizer.count: exact | estimate"),
    overwrite: bool = typer.Option(
        False, help="Replace a finished mix in the output directory (removes only what `curate mix build` wrote there)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON on stdout"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
):
    """Plan the mix (per source: documents and tokens available, kept, repetition, share) and build it."""
    from curation.mix.build import build as run_build

    if count not in (None, "exact", "estimate"):
        _fail(CurationError(f"--count {count}: choose exact or estimate"))
    try:
        res = run_build(manifest, output, dry_run=dry_run, overwrite=overwrite, progress=progress, count=count)
    except CurationError as e:
        _fail(e)
    if as_json:
        print(json.dumps(res.plan.to_dict() if dry_run else res.lock, indent=1))
        return
    out = _out()
    if dry_run:
        print_plan(res.plan.to_dict(), out)
        out.print("dry run: nothing written", highlight=False)
        return
    if res.restarted:
        err.print(
            f"{res.output}: an unfinished build (killed before it wrote mix.lock.json) was removed and rebuilt",
            highlight=False,
            soft_wrap=True,
        )
    plan = res.plan.to_dict()
    for s, ls in zip(plan["sources"], res.lock["sources"], strict=False):
        s.update(ls)
    print_plan(plan, out, realised=True)
    t = res.lock["totals"]
    out.print(
        f"built {len(res.lock['outputs'])} shards, {t['docs']:,} documents, {_fmt(t['tokens'])} tokens -> {res.output}"
        f" (mix.lock.json, blend.json)",
        highlight=False,
    )


@mix_app.command()
def verify(
    directory: Path = typer.Argument(..., help="A built mix (with mix.lock.json)"),
    no_manifest: bool = typer.Option(False, "--no-manifest", help="Do not compare the manifest file"),
):
    """Recheck the lock against the inputs, the manifest and the output shards; name whatever changed."""
    from curation.mix.verify import verify as run_verify

    try:
        problems = run_verify(directory, check_manifest=not no_manifest)
    except CurationError as e:
        _fail(e)
    for p in problems:
        err.print(f"[red]error:[/red] {p}", highlight=False, soft_wrap=True)
    if problems:
        err.print(
            f"{len(problems)} difference(s) from {directory / 'mix.lock.json'}; rebuild with `curate mix build`",
            highlight=False,
        )
        raise typer.Exit(1)
    lock = json.loads((directory / "mix.lock.json").read_text())
    injected = "".join(
        f", {i['documents']:,} injected {i['source']} documents at their recorded positions"
        for i in lock.get("injections", [])
    )
    Console().print(
        f"ok: {len(lock['inputs'])} inputs, {len(lock['outputs'])} output shards{injected} and the manifest "
        f"match {directory / 'mix.lock.json'}",
        highlight=False,
        soft_wrap=True,
    )
