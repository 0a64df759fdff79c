"""Rich progress bars for the long passes (no-ops when progress is off)."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextmanager
def bar(enabled: bool, description: str, total: int, unit: str = ""):
    """Yields advance(n). Progress goes to stderr so plans and JSON on stdout stay clean."""
    if not enabled:
        yield lambda n: None
        return
    cols = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*cols, console=Console(stderr=True), transient=True) as p:
        task = p.add_task(description, total=total or None)
        yield lambda n: p.advance(task, n)
