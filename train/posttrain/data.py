"""Post-training data from JSONL or Parquet, normalised to TRL's conversational formats.

SFT rows: ``messages`` (a list of ``{role, content}``), or ``prompt`` + ``completion`` strings (one user turn, one
assistant turn). DPO rows: ``prompt``, ``chosen``, ``rejected``, each a string or a list of messages (the prompt's
turns; the answer's assistant turn). Either may carry a ``system`` string. ``demo`` names the shipped demo sets
(``train/posttrain/data/{sft,dpo}_demo.jsonl``, written by ``scripts/write_posttrain_data.py``).
"""

from __future__ import annotations

import glob
from pathlib import Path

from curation.core.errors import CurationError
from curation.core.records import read_records

DATA_DIR = Path(__file__).parent / "data"
DEMO = {"sft": DATA_DIR / "sft_demo.jsonl", "dpo": DATA_DIR / "dpo_demo.jsonl"}
ROLES = {"system", "user", "assistant"}
NEEDS = {
    "sft": "`messages` (list of {role, content}) or `prompt` and `completion`",
    "dpo": "`prompt`, `chosen` and `rejected`",
}


def expand(specs: list[str], kind: str) -> list[Path]:
    if not specs:
        raise CurationError(
            f"{kind}.data is empty; list JSONL/Parquet files or directories (or `demo`) under `{kind}: data:`"
        )
    out: list[Path] = []
    for spec in specs:
        if spec == "demo":
            out.append(DEMO[kind])
            continue
        p = Path(spec).expanduser()
        if p.is_dir():
            files = sorted(q for q in p.rglob("*") if q.suffix in (".jsonl", ".parquet") and q.is_file())
            if not files:
                raise CurationError(
                    f"{spec}: directory has no .jsonl or .parquet files; point {kind}.data at the data files"
                )
            out += files
        elif p.is_file():
            out.append(p)
        else:
            hits = sorted(Path(h) for h in glob.glob(spec))
            if not hits:
                raise CurationError(f"{spec}: no such file, directory or glob match; fix {kind}.data")
            out += hits
    for p in out:
        if p.suffix not in (".jsonl", ".parquet"):
            raise CurationError(f"{p}: {kind} data must be .jsonl or .parquet; convert it or drop it from {kind}.data")
    return out


def _turns(value, where: str, what: str, default_role: str) -> list[dict]:
    if isinstance(value, str):
        return [{"role": default_role, "content": value}]
    if not isinstance(value, list) or not value:
        raise CurationError(
            f"{where}: `{what}` must be a string or a non-empty list of {{role, content}} messages; fix the row"
        )
    out = []
    for m in value:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise CurationError(
                f"{where}: `{what}` has a message that is not {{role: system|user|assistant, content: str}} "
                f"({str(m)[:60]}); fix the row"
            )
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _with_system(msgs: list[dict], system: str | None) -> list[dict]:
    if system and msgs[0]["role"] != "system":
        return [{"role": "system", "content": system}, *msgs]
    return msgs


def load_examples(
    specs: list[str], kind: str, system_prompt: str | None = None, limit: int | None = None
) -> list[dict]:
    """Rows as TRL conversational examples: {"messages": [...]} for sft, {"prompt", "chosen", "rejected"} for dpo."""
    out: list[dict] = []
    for path in expand(specs, kind):
        seen = False
        for n, row in read_records(path):
            where = f"{path}:{n}"
            if not seen:
                seen = True
                cols = set(row)
                ok = (
                    ("messages" in cols or {"prompt", "completion"} <= cols)
                    if kind == "sft"
                    else {"prompt", "chosen", "rejected"} <= cols
                )
                if not ok:
                    raise CurationError(
                        f"{path}: missing column(s) for {kind} data (found {sorted(cols)}); "
                        f"{kind} data needs {NEEDS[kind]}"
                    )
            system = row.get("system") or system_prompt
            if kind == "sft":
                if row.get("messages") is not None:
                    msgs = _turns(row["messages"], where, "messages", "user")
                else:
                    msgs = _turns(row.get("prompt"), where, "prompt", "user") + _turns(
                        row.get("completion"), where, "completion", "assistant"
                    )
                if not any(m["role"] == "assistant" for m in msgs):
                    raise CurationError(f"{where}: no assistant message to train on; add one or drop the row")
                out.append({"messages": _with_system(msgs, system)})
            else:
                prompt = _turns(row.get("prompt"), where, "prompt", "user")
                chosen = _turns(row.get("chosen"), where, "chosen", "assistant")
                rejected = _turns(row.get("rejected"), where, "rejected", "assistant")
                for what, turns in (("chosen", chosen), ("rejected", rejected)):
                    if any(m["role"] != "assistant" for m in turns):
                        raise CurationError(
                            f"{where}: `{what}` must hold assistant messages only; move other turns into `prompt`"
                        )
                out.append({"prompt": _with_system(prompt, system), "chosen": chosen, "rejected": rejected})
            if limit and len(out) >= limit:
                return out
        if not seen:
            raise CurationError(f"{path}: no rows; remove it from {kind}.data or fill it")
    return out
