"""`curate experiment init | plan | run | report | export | run-pack | import` (mounted in curate/cli.py): a thin
layer over curate.experiment."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from curation.core.cli import fail as _fail
from curation.core.cli import write_rendered
from curation.core.errors import CurationError

experiment_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Run the experiment (conditions x stages: mix, tokens, train, convert, post-train, evals, "
    "report) as one resumable command.",
)
err = Console(stderr=True)


@experiment_app.command()
def init(
    preset: str = typer.Option(..., "--preset", "-p", help="tice2026 | spp | timing | poisoning | demo"),
    output: Path | None = typer.Option(None, "--output", "-o", help="Experiment file to write (default: print it)"),
    corpus: str | None = typer.Option(None, help="Corpus root (demo: the shipped demo corpus)"),
    attributes: str | None = typer.Option(
        None, help="`curate classify` output for the corpus (unset: classified by the experiment)"
    ),
    synthetic: str | None = typer.Option(None, help="`curate synth docs` output"),
    poison: str | None = typer.Option(None, help="`curate synth poison` output (the poisoning preset)"),
    reflected: str | None = typer.Option(None, help="`curate synth reflect` output of the corpus (the spp preset)"),
    force: bool = typer.Option(False, help="Replace an existing file"),
):
    """Write a commented experiment file for the paper's conditions (tice2026), persona reflections (spp), the
    timing ablation (timing: end-to-end, midtraining, continued pretraining), poisoning, or the demo."""
    from curate.experiment.presets import render_experiment

    try:
        text = render_experiment(
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
    write_rendered(text, output, force, f"preset {preset}", f"curate experiment plan {output}")


def _print_plan(plan, out: Path | None) -> None:
    console = Console() if Console().is_terminal else Console(width=160)
    table = Table(
        title=f"experiment '{plan.name}': {len(plan.nodes)} nodes, {len(plan.nodes) - len(plan.to_run)} "
        f"finished, {len(plan.to_run)} to run" + (f" (in {out})" if out else ""),
        title_justify="left",
    )
    for col in ("node", "kind", "after", "status", "key"):
        table.add_column(col)
    for node in plan.nodes:
        after = ", ".join(d.split("/")[-1] for d in node.deps) if node.kind != "report" else f"{len(node.deps)} evals"
        status = "finished" if plan.done[node.id] else "[bold]to run[/bold]"
        table.add_row(node.id, node.kind, after, status, node.key[:10])
    console.print(table)
    for note in plan.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)


def _print_power(rows: list[dict], notes: list[str], effect: float | None) -> None:
    if not rows:
        return
    con = Console() if Console().is_terminal else Console(width=200)
    t = Table(
        title="Power: the minimum detectable effect of each contrast (difference in mean P(misaligned); seed-level "
        "t-test, 80% power, alpha 0.05)",
        title_justify="left",
    )
    for col in (
        "contrast",
        "metric",
        "seeds",
        "items",
        "sd of a seed's difference",
        "seed share",
        "minimum detectable effect",
    ) + (("seeds for " + format(effect, "g"),) if effect is not None else ()):
        t.add_column(col)
    for r in rows:
        mde = "needs 2+ seeds" if r["mde"] == float("inf") else f"{r['mde']:.4f}"
        cells = [
            r["contrast"],
            r["metric"],
            str(r["seeds"]),
            str(r["items"]),
            f"{r['sd_per_seed']:.4f}",
            "" if r["seed_share"] is None else f"{r['seed_share']:.0%}",
            mde,
        ]
        if effect is not None:
            cells.append(str(r["seeds_needed"]) if r["seeds_needed"] is not None else "over 10,000")
        t.add_row(*cells)
    con.print(t)
    for src in dict.fromkeys(r["from"] for r in rows if r["from"] != "assumed"):
        con.print(f"variance components: {src}", highlight=False, soft_wrap=True)
    for note in notes:
        con.print(f"note: {note}", highlight=False, soft_wrap=True)


@experiment_app.command()
def plan(
    experiment: Path = typer.Argument(..., help="Experiment YAML (`curate experiment init` writes one)"),
    output: Path | None = typer.Option(None, "--output", "-o", help="Output directory of a run: mark what is finished"),
    check: bool = typer.Option(True, "--check/--no-check", help="Check every unbuilt mix's budget (a fast scan)"),
    seeds: str | None = typer.Option(None, help="Only these of the file's seeds, comma-separated (as `run --seeds`)"),
    pilot: Path | None = typer.Option(
        None,
        help="results.json of an earlier run (per_item.parquet beside it): variance components for the power table",
    ),
    effect: float | None = typer.Option(
        None, help="A difference in P(misaligned) (e.g. 0.03): the seeds needed to detect it with 80% power"
    ),
):
    """Print the graph (condition x stage), what is finished and what will run, and the minimum detectable effect of
    each contrast for the planned seeds and items; refuse impossible budgets."""
    from curate.experiment.plan import make_plan
    from curate.experiment.power import power_table
    from curate.experiment.run import parse_seeds

    try:
        p = make_plan(experiment, output, check_budgets=check, seeds=parse_seeds(seeds))
        rows, notes = power_table(p.experiment_file, p.experiment_file.exp.seeds, pilot, effect)
    except CurationError as e:
        _fail(e)
    _print_plan(p, output)
    _print_power(rows, notes, effect)
    if p.problems:
        for prob in p.problems:
            err.print(f"[red]error:[/red] {prob}", highlight=False, soft_wrap=True)
        err.print("impossible budget: fix the experiment file before `curate experiment run`", highlight=False)
        raise typer.Exit(2)


@experiment_app.command()
def run(
    experiment: Path = typer.Argument(..., help="Experiment YAML"),
    output: Path = typer.Option(..., "--output", "-o", help="Output directory (nodes/, logs/, results.json, report/)"),
    executor: str = typer.Option("local", help="local | slurm (one sbatch job per node, --dependency=afterok)"),
    jobs: int = typer.Option(1, help="local: nodes run at once"),
    only: str | None = typer.Option(
        None,
        help="Run only nodes of these kinds, comma-separated (e.g. "
        "classify,mix,tokens: the data side here, training on another machine)",
    ),
    seeds: str | None = typer.Option(
        None,
        help="Only these of the file's seeds, comma-separated (e.g. 0: every "
        "condition's first seed and its report now; a later run without it adds the rest)",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="One line per node on stderr"),
):
    """Run every unfinished node (a rerun skips finished ones; a killed run resumes), then write the report."""
    from curate.experiment.run import parse_seeds, run_experiment

    log = (lambda m: err.print(m, highlight=False, soft_wrap=True)) if progress else (lambda m: None)
    kinds = {k.strip() for k in only.split(",") if k.strip()} if only else None
    try:
        res = run_experiment(
            experiment, output, executor=executor, jobs=jobs, log=log, only=kinds, seeds=parse_seeds(seeds)
        )
    except CurationError as e:
        _fail(e)
    if res.submitted is not None:
        err.print(
            f"submitted {len(res.submitted)} Slurm jobs (one per node, chained with --dependency=afterok); "
            f"scripts in {res.output / 'slurm'}; rerun the same command after they finish to see what is left",
            highlight=False,
            soft_wrap=True,
        )
        print(res.output / "results.json")
        return
    err.print(
        f"{len(res.ran)} nodes ran, {len(res.cached)} were finished; record {res.record}",
        highlight=False,
        soft_wrap=True,
    )
    if res.report is None:
        err.print(
            f"--only {only}: nodes of other kinds are left; the same command without --only runs them and the report",
            highlight=False,
            soft_wrap=True,
        )
        return
    print(f"results  {res.results}")
    print(f"report   {res.report}")


@experiment_app.command()
def report(
    directory: Path = typer.Argument(..., help="Output directory of `curate experiment run` (holds per_item.parquet)"),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write results.json and report/ here instead of into DIRECTORY"
    ),
):
    """Rebuild results.json and report/ from the per-item outputs alone (per_item.parquet)."""
    from curate.experiment.report import rebuild

    try:
        res = rebuild(directory, output)
    except CurationError as e:
        _fail(e)
    print(f"results  {res}")
    print(f"report   {res.parent / 'report' / 'report.md'}")


def _kinds(only: str) -> set[str]:
    return {k.strip() for k in only.split(",") if k.strip()}


@experiment_app.command()
def export(
    experiment: Path = typer.Argument(..., help="Experiment YAML"),
    directory: Path = typer.Option(
        ..., "--dir", "-d", help="The experiment's output directory (`run -o`), its data side finished"
    ),
    only: str = typer.Option(..., help="The kinds to run elsewhere, comma-separated (e.g. init,train,convert,eval)"),
    output: Path = typer.Option(..., "--output", "-o", help="The pack directory to write (a new or earlier pack)"),
    label: str = typer.Option("export", help="Where the logs come back to: DIR/logs/LABEL"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress lines on stderr"),
):
    """Pack the unfinished nodes of some kinds, with the finished nodes and inputs they read, for another machine
    (`curate experiment run-pack` there, `curate experiment import` back here)."""
    from curate.experiment.export import ExportExecutor
    from curate.experiment.run import run_experiment

    log = (lambda m: err.print(m, highlight=False, soft_wrap=True)) if progress else (lambda m: None)
    try:
        res = run_experiment(experiment, directory, executor=ExportExecutor(_kinds(only), output, label), log=log)
    except CurationError as e:
        _fail(e)
    err.print(
        f"there: curate experiment run-pack {res.pack} -o WORK --results RESULTS; "
        f"back here: curate experiment import RESULTS --into {res.output}",
        highlight=False,
        soft_wrap=True,
    )
    print(res.pack)


@experiment_app.command("run-pack")
def run_pack(
    pack: Path = typer.Argument(..., help="A pack `curate experiment export` wrote"),
    output: Path = typer.Option(..., "--output", "-o", help="Working directory: a copy of the pack the nodes run in"),
    results: Path = typer.Option(..., help="Where results.tar.gz and summary.json go (for `curate experiment import`)"),
    jobs: int = typer.Option(1, help="Nodes run at once"),
    fresh: bool = typer.Option(False, help="Start over instead of keeping the nodes an earlier call finished"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="One line per node on stderr"),
):
    """Run an exported pack's nodes here (the machine the pack was carried to), then write its results."""
    from curate.experiment.export import run_pack as run

    log = (lambda m: err.print(m, highlight=False, soft_wrap=True)) if progress else (lambda m: None)
    try:
        res = run(pack, output, results, jobs=jobs, fresh=fresh, log=log)
    except CurationError as e:
        _fail(e)
    print(f"results  {res.results}")


@experiment_app.command("import")
def import_(
    results: Path = typer.Argument(..., help="The --results folder of `curate experiment run-pack` (or its tarball)"),
    into: Path = typer.Option(..., "--into", help="The experiment directory the pack was exported from"),
    seeds: str | None = typer.Option(
        None, help="Require only these seeds finished, comma-separated (a run cut short: its first seeds)"
    ),
):
    """Check a pack's results against the experiment directory's graph and bring its finished nodes in; then
    `curate experiment run EXP -o DIR` writes the report."""
    from curate.experiment.export import import_results
    from curate.experiment.run import parse_seeds

    try:
        res = import_results(results, into, parse_seeds(seeds), log=lambda m: err.print(m, highlight=False))
    except CurationError as e:
        _fail(e)
    again = f"curate experiment run {res.experiment or 'EXP'} -o {res.into}" + (f" --seeds {seeds}" if seeds else "")
    print(f"imported {len(res.imported)} nodes; the report: {again}")
