"""The `curate` command: a thin typer layer over the Python API (curation.classify.pipeline, curation.classify.fit,
...)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from curation.core.cli import fail as _fail
from curation.core.errors import CurationError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Alignment-pretraining toolkit: tag, mix, train, evaluate."
)
console = Console(stderr=True)


@app.callback()
def _services(ctx: typer.Context):
    """Hands stages what they use from another stage without importing it: synth QC's stance check uses the
    classifier."""
    ctx.obj = {"stance_scorer": _classifier_scores}


def _classifier_scores(texts: list[str]) -> list[dict]:
    from curation.classify.predict import score_texts  # imported when QC runs, not by every command

    return score_texts(texts)


@app.command()
def classify(
    corpus: str = typer.Argument(..., help="Directory or glob of Parquet/JSONL(.gz) shards"),
    output: Path = typer.Option(..., "--output", "-o", help="Attribute directory (mirrors the corpus layout)"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML ClassifyConfig"),
    model: str | None = typer.Option(None, help="Model set name or directory (default: the shipped one)"),
    id_key: str | None = typer.Option(None, "--id-key"),
    text_key: str | None = typer.Option(None, "--text-key"),
    executor: str | None = typer.Option(None, help="local | slurm | ray"),
    tasks: int | None = typer.Option(None, help="datatrove tasks (default: one per shard)"),
    workers: int | None = typer.Option(None, help="tasks run at once"),
    cascade: bool | None = typer.Option(
        None, "--cascade/--no-cascade", help="fastText only on keyword candidates (faster; default: every document)"
    ),
    embedding: bool | None = typer.Option(None, "--embedding/--no-embedding", help="sentence-transformers stage"),
    llm_judge: str | None = typer.Option(
        None, "--llm-judge", help="enable the LLM-judge stage with this model (HF directory, .gguf or 'smollm2')"
    ),
    on_bad_doc: str | None = typer.Option(
        None, "--on-bad-doc", help="error (fail the shard) | tag (keep row, `error` column)"
    ),
    max_doc_chars: int | None = typer.Option(None, "--max-doc-chars"),
    overwrite: bool = typer.Option(
        False, help="Replace an earlier classify run in the output directory (removes only the files it wrote)"
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
):
    """Tag every document with AI-discourse and stance scores; writes one attribute file per shard + summary.json."""
    from curation.classify.config import ClassifyConfig
    from curation.classify.pipeline import classify as run_classify

    try:
        raw = ClassifyConfig.from_yaml(config).model_dump() if config else {}
        for key, val in (
            ("model", model),
            ("id_key", id_key),
            ("text_key", text_key),
            ("on_bad_doc", on_bad_doc),
            ("max_doc_chars", max_doc_chars),
        ):
            if val is not None:
                raw[key] = val
        for section, key, val in (
            ("executor", "kind", executor),
            ("executor", "tasks", tasks),
            ("executor", "workers", workers),
            ("fasttext", "only_candidates", cascade),
            ("embedding", "enabled", embedding),
            ("llm_judge", "enabled", True if llm_judge else None),
            ("llm_judge", "model", llm_judge),
        ):
            if val is not None:
                raw.setdefault(section, {})[key] = val
        cfg = ClassifyConfig.validated(raw, str(config or "command line"))
        result = run_classify(corpus, output, cfg, overwrite=overwrite, progress=progress)
    except CurationError as e:
        _fail(e)
    s = result.summary
    if result.changed:
        console.print(
            f"redid {len(result.changed)} shard(s) whose input changed since its attributes were written: "
            f"{', '.join(result.changed[:5])}{' ...' if len(result.changed) > 5 else ''}",
            highlight=False,
            soft_wrap=True,
        )
    if result.regenerated:
        console.print(
            f"regenerated {len(result.regenerated)} missing attribute file(s): "
            f"{', '.join(result.regenerated[:5])}{' ...' if len(result.regenerated) > 5 else ''}",
            highlight=False,
            soft_wrap=True,
        )
    dup = s.get("duplicate_ids") or {}
    if dup.get("ids"):
        console.print(
            f"[yellow]warning:[/yellow] {dup['ids']:,} id(s) occur more than once ({dup['rows']:,} rows; e.g. "
            f"{', '.join(map(str, dup['examples'][:3]))}); `curate mix build` joins attributes on id and "
            "refuses them: make ids unique",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"{result.done}/{result.shards} shards, {s.get('docs', 0):,} docs, "
        f"{s.get('share_flagged_at_0.5', 0):.2%} AI discourse at 0.5 -> {result.output}",
        highlight=False,
    )
    for err in result.errors:
        console.print(f"[red]error:[/red] {err}", highlight=False, soft_wrap=True)
    if result.submitted and not result.errors:
        console.print(
            f"submitted to Slurm (job {result.submitted}; logs in {result.output}/_logs). When it has finished, "
            "rerun the same command: it launches only unfinished shards and rewrites summary.json.",
            highlight=False,
        )
        return
    if not result.ok:
        console.print(
            f"{len(result.errors)} shard(s) failed; fix them and rerun the same command: finished shards are kept."
        )
        raise typer.Exit(1)


@app.command()
def stats(
    attrs: Path = typer.Argument(..., help="Attribute directory or its summary.json"),
    as_json: bool = typer.Option(False, "--json", help="Print the raw summary JSON"),
):
    """Print the summary of a classify run."""
    from curation.classify.summary import load_summary

    try:
        s = load_summary(attrs)
    except CurationError as e:
        _fail(e)
    if as_json:
        print(json.dumps(s, indent=1))
        return
    out = Console()
    t = Table(title=f"curate classify: {attrs}", show_header=False)
    rows = [
        ("shards done / total", f"{s['shards_done']} / {s['shards']}"),
        ("shards failed", str(s["shards_failed"])),
        ("documents", f"{s.get('docs', 0):,}"),
        ("bytes", f"{s.get('bytes', 0):,}"),
        ("AI discourse at 0.5", f"{s.get('flagged_at_0.5', 0):,} ({s.get('share_flagged_at_0.5', 0):.2%})"),
        ("stance of flagged", ", ".join(f"{k} {v}" for k, v in s.get("stance_of_flagged", {}).items())),
        ("scored by stage", ", ".join(f"{k} {v}" for k, v in sorted(s.get("stage_counts", {}).items()))),
        ("model", f"{s['model']['name']} ({s['model']['id']})"),
        ("seed", str(s["seed"])),
        ("elapsed", f"{s['elapsed_s']:.1f} s"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    out.print(t)
    h = s.get("histograms", {}).get("ai_discourse")
    if h:
        peak = max(h["counts"]) or 1
        out.print("ai_discourse histogram")
        for lo, c in zip(h["edges"], h["counts"], strict=False):
            out.print(f"  {lo:4.2f} {'#' * max(int(40 * c / peak), 1 if c else 0)} {c}")


@app.command()
def fit(
    labelled: list[str] = typer.Argument(..., help="Labelled Parquet/JSONL: text, ai_discourse (0/1), stance"),
    output: Path = typer.Option(..., "--output", "-o", help="Model directory to write"),
    seed: int = typer.Option(0),
    epoch: int = typer.Option(25),
    embedding: bool = typer.Option(True, "--embedding/--no-embedding"),
    valid_fraction: float = typer.Option(0.15),
    stance_class_weights: str = typer.Option(
        "",
        help="Multipliers on the stance probabilities, e.g. aligned=2,misaligned=1.5 "
        "(a prior shift for target text unlike the training data)",
    ),
    ai_combiner: Path | None = typer.Option(
        None,
        help="JSON combiner of the stage probabilities (written by "
        "scripts/classifier/crossval_real.py --write-combiner); default: their mean",
    ),
):
    """Train the fastText models and the embedding head; writes a model card with validation metrics."""
    from curation.classify.combiner import AICombiner
    from curation.classify.fit import FitParams, parse_class_weights
    from curation.classify.fit import fit as run_fit

    try:
        params = FitParams(
            seed=seed,
            epoch=epoch,
            embedding=embedding,
            valid_fraction=valid_fraction,
            stance_class_weights=parse_class_weights(stance_class_weights),
            ai_combiner=AICombiner.load(ai_combiner).to_dict() if ai_combiner else None,
        )
        card = run_fit(
            labelled, output, params, progress=lambda m: console.print(f"[dim]fit:[/dim] {m}", highlight=False)
        )
    except CurationError as e:
        _fail(e)
    v = card["metrics"]["validation"]
    console.print(
        f"AI discourse F1 {v['final']['f1']:.3f} (P {v['final']['precision']:.3f} R {v['final']['recall']:.3f}); "
        f"stance macro-F1 {v.get('stance_final', {}).get('macro_f1', float('nan')):.3f} -> {output}/card.json"
    )


@app.command()
def models(as_json: bool = typer.Option(False, "--json")):
    """List the shipped and installed classifier model sets."""
    from curation.classify.models import installed_root, list_models

    ms = list_models()
    if as_json:
        print(json.dumps(ms, indent=1))
        return
    t = Table(title=f"model sets (installed ones under {installed_root()})")
    for col in ("name", "origin", "kind", "path"):
        t.add_column(col)
    for m in ms:
        t.add_row(m["name"], m["origin"], str(m["kind"]), m["path"])
    Console().print(t)


from evals.cli import eval_app  # noqa: E402

app.add_typer(eval_app, name="eval")

from synth.cli import synth_app  # noqa: E402

app.add_typer(synth_app, name="synth")

from curation.mix.cli import mix_app  # noqa: E402

app.add_typer(mix_app, name="mix")

from curate.workflows import posttrain_and_evaluate  # noqa: E402
from train.cli import train_app  # noqa: E402
from train.posttrain.cli import register as _register_posttrain  # noqa: E402

_register_posttrain(train_app, run_posttrain=posttrain_and_evaluate)  # sft, dpo, posttrain: docs/posttrain.md
app.add_typer(train_app, name="train")

from curate.experiment.cli import experiment_app  # noqa: E402

app.add_typer(experiment_app, name="experiment")


def main():  # pragma: no cover
    sys.exit(app())
