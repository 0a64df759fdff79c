"""The files of one eval run: per-item rows as JSONL, the summary as JSON and as markdown (one writer for every eval
that produces all three)."""

from __future__ import annotations

import json
from pathlib import Path


def write_run(out: Path, rows: list[dict], summary: dict, markdown: str, rows_name: str = "items.jsonl") -> None:
    with open(out / rows_name, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "summary.md").write_text(markdown)
