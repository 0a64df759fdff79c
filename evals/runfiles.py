"""The files of an eval run: per-item rows as JSONL, the summary as JSON and as markdown. One writer for every eval
(propensity, capability, perplexity, poisoning, priming, attacks), each file replaced atomically so a run killed while
writing leaves the previous file or the new one, never half of one."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_rows(path: Path, rows: list[dict]) -> None:
    write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def write_summary(out: Path, summary: dict, markdown: str | None = None) -> None:
    write_text(out / "summary.json", json.dumps(summary, indent=1))
    if markdown is not None:
        write_text(out / "summary.md", markdown)


def write_run(
    out: Path, rows: list[dict], summary: dict, markdown: str | None = None, rows_name: str = "items.jsonl"
) -> None:
    write_rows(out / rows_name, rows)
    write_summary(out, summary, markdown)
