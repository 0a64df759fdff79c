"""What every `curate` command does with a `ToolkitError`: one red line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import typer
from rich.console import Console

from curation.core.errors import ToolkitError

err_console = Console(stderr=True)


def fail(e: ToolkitError | str, code: int = 2):
    err_console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True, markup=True)
    raise typer.Exit(code)
