"""What every `curate` command does with a `ToolkitError`: one red line on stderr, exit code 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from curation.core.errors import ToolkitError

err_console = Console(stderr=True)


def fail(e: ToolkitError | str, code: int = 2):
    err_console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True, markup=True)
    raise typer.Exit(code)


def write_rendered(text: str, output: Path | None, force: bool, label: str, next_step: str) -> None:
    """What `init` commands do with the file they render: print it, or write it (refusing to replace one without
    --force) and say what to run next."""
    if output is None:
        print(text, end="")
        return
    if output.exists() and not force:
        fail(ToolkitError(f"{output}: exists; pass --force to replace it"))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    err_console.print(f"wrote {output} ({label}); next: {next_step}", highlight=False, soft_wrap=True)
