"""blend.json: what a trainer needs to blend the mix without re-deciding proportions (docs/mix.md, "Hand-off")."""

from __future__ import annotations

import json
from pathlib import Path

BLEND_NAME = "blend.json"
BLEND_FORMAT = "curate-mix-blend/1"


def write_blend(root: Path, plan_dict: dict, layout: str, realised: dict[str, dict], outputs: list[dict]) -> Path:
    """realised: source -> {"docs", "tokens"}; outputs: lock output entries (paths relative to root)."""
    total = sum(r["tokens"] for r in realised.values()) or 1
    sources = [
        {
            "name": s["name"],
            "kind": s["kind"],
            "weight": realised[s["name"]]["tokens"] / total,
            "tokens": realised[s["name"]]["tokens"],
            "documents": realised[s["name"]]["docs"],
            "repetition": s["repetition"],
        }
        for s in plan_dict["sources"]
    ]
    if layout == "mixed":
        datasets = [
            {
                "name": "mix",
                "weight": 1.0,
                "tokens": total if realised else 0,
                "documents": sum(r["docs"] for r in realised.values()),
                "shards": [o["path"] for o in outputs],
            }
        ]
    else:
        datasets = []
        for s in sources:
            prefix = f"shards/{s['name']}/"
            datasets.append(
                {
                    "name": s["name"],
                    "weight": s["weight"],
                    "tokens": s["tokens"],
                    "documents": s["documents"],
                    "shards": [o["path"] for o in outputs if o["path"].startswith(prefix)],
                }
            )
    blend = {
        "format": BLEND_FORMAT,
        "name": plan_dict["name"],
        "stage": plan_dict["stage"],
        "seed": plan_dict["seed"],
        "layout": layout,
        "text_key": "text",
        "tokenizer": plan_dict["tokenizer"],
        "total_tokens": sum(d["tokens"] for d in datasets),
        "total_documents": sum(d["documents"] for d in datasets),
        "datasets": datasets,
        "sources": sources,
        "megatron": {
            "data_path": [x for d in datasets if d["weight"] > 0 for x in (d["weight"], d["name"])],
            "note": "tokenize each dataset's shards, in order, into an indexed dataset and replace its name "
            "by that prefix; documents are already shuffled and repeated, so read each once",
        },
    }
    p = root / BLEND_NAME
    p.write_text(json.dumps(blend, indent=1) + "\n")
    return p
