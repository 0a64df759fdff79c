"""Post-training data from JSONL, Parquet or a saved `datasets` directory, normalised to TRL's conversational formats.

SFT rows: ``messages`` (a list of ``{role, content}``), or ``prompt`` + ``completion`` strings (one user turn, one
assistant turn). DPO rows: ``prompt``, ``chosen``, ``rejected``, each a string or a list of messages (the prompt's
turns; the answer's assistant turn). Either may carry a ``system`` string. ``demo`` names the shipped demo sets
(``train/posttrain/data/{sft,dpo}_demo.jsonl``, written by ``scripts/write_posttrain_data.py``).

Anthropic HH-RLHF rows (``chosen`` and ``rejected`` whole dialogues, "\n\nHuman: ...\n\nAssistant: ...", no
``prompt``) are read as they are published: DPO takes the turns before the last assistant turn as the prompt and the
two last assistant turns as the answers; SFT trains on the chosen dialogue. ``split: posttrain`` keeps only rows whose
first user turn falls in the post-training half of `curation.core.splits` (the half `curate eval attacks` never asks).

`build_dataset` streams the rows into an Arrow file under the run's output (`Dataset.from_generator`), so a set of any
size trains in bounded memory; `load_examples` returns the same examples, in the same order, as a list (small sets,
tests).
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path

from curation.core.errors import CurationError
from curation.core.records import read_records
from curation.core.splits import half_of, hh_dialogue

DATA_DIR = Path(__file__).parent / "data"
DEMO = {"sft": DATA_DIR / "sft_demo.jsonl", "dpo": DATA_DIR / "dpo_demo.jsonl"}
ROLES = {"system", "user", "assistant"}
NEEDS = {
    "sft": "`messages` (list of {role, content}), `prompt` and `completion`, or HH-RLHF `chosen` dialogues",
    "dpo": "`prompt`, `chosen` and `rejected`, or HH-RLHF `chosen` and `rejected` dialogues",
}


def is_data_file(p: Path) -> bool:
    return p.suffix in (".jsonl", ".parquet") or p.name.endswith(".jsonl.gz")


def is_saved_dataset(p: Path) -> bool:
    """A directory written by `Dataset.save_to_disk` (or `DatasetDict.save_to_disk`)."""
    return p.is_dir() and (
        ((p / "state.json").is_file() and (p / "dataset_info.json").is_file()) or (p / "dataset_dict.json").is_file()
    )


def _is_hh(cols: set, row: dict) -> bool:
    return "prompt" not in cols and "messages" not in cols and hh_dialogue(row.get("chosen")) is not None


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
        if is_saved_dataset(p):
            out.append(p)
        elif p.is_dir():
            files = sorted(q for q in p.rglob("*") if is_data_file(q) and q.is_file())
            if not files:
                raise CurationError(
                    f"{spec}: directory has no .jsonl or .parquet files and is no saved `datasets` directory "
                    f"(state.json, dataset_info.json); point {kind}.data at the data"
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
        if not (is_data_file(p) or is_saved_dataset(p)):
            raise CurationError(
                f"{p}: {kind} data must be .jsonl, .jsonl.gz, .parquet or a `save_to_disk` directory; convert it or "
                f"drop it from {kind}.data"
            )
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


def _from_hh(row: dict, kind: str, where: str) -> dict | None:
    """One HH-RLHF row as a conversational example; None for a pair whose dialogues differ before the answers."""
    chosen = hh_dialogue(row.get("chosen"))
    if not chosen or chosen[-1]["role"] != "assistant":
        raise CurationError(f"{where}: `chosen` is not a Human/Assistant dialogue ending in an Assistant turn")
    if kind == "sft":
        return {"messages": chosen}
    rejected = hh_dialogue(row.get("rejected"))
    if not rejected or rejected[-1]["role"] != "assistant":
        raise CurationError(f"{where}: `rejected` is not a Human/Assistant dialogue ending in an Assistant turn")
    if rejected[:-1] != chosen[:-1]:
        return None
    return {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}


def _first_user(example: dict) -> str:
    msgs = example.get("messages") or example.get("prompt") or []
    return next((m["content"] for m in msgs if m["role"] == "user"), "")


def _saved_rows(path: Path, kind: str) -> Iterator[tuple[int, dict]]:
    """Rows of a `save_to_disk` directory, read a batch at a time from its memory-mapped Arrow files."""
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 - datasets raises several types for a damaged directory
        raise CurationError(
            f"{path}: not a readable saved dataset ({str(e).splitlines()[0]}); save it again with save_to_disk"
        ) from None
    if isinstance(ds, DatasetDict):
        if "train" not in ds:
            raise CurationError(
                f"{path}: a DatasetDict without a `train` split (has {', '.join(ds)}); point {kind}.data at "
                f"{path}/SPLIT"
            )
        ds = ds["train"]
    n = 0
    for batch in ds.iter(batch_size=512):
        for values in zip(*batch.values(), strict=True):
            n += 1
            yield n, dict(zip(batch, values, strict=True))


def _rows(path: Path, kind: str) -> Iterator[tuple[int, dict]]:
    return _saved_rows(path, kind) if is_saved_dataset(path) else read_records(path)


def iter_examples(
    specs: list[str],
    kind: str,
    system_prompt: str | None = None,
    limit: int | None = None,
    split: str | None = None,
    split_eval_share: float = 0.5,
    split_seed: int = 0,
) -> Iterator[dict]:
    """Rows as TRL conversational examples, one at a time: {"messages": [...]} for sft, {"prompt", "chosen",
    "rejected"} for dpo. ``split``: keep only examples whose first user turn is in that half of
    `curation.core.splits.half_of`; ``limit``: stop after that many kept examples."""
    kept = 0
    for path in expand(specs, kind):
        seen = hh = False
        for n, row in _rows(path, kind):
            where = f"{path}:{n}"
            if not seen:
                seen = True
                cols = set(row)
                hh = _is_hh(cols, row) and (kind == "sft" or "rejected" in cols)
                ok = hh or (
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
            if hh:
                example = _from_hh(row, kind, where)
                if example is None:
                    continue
                key = "messages" if kind == "sft" else "prompt"
                example[key] = _with_system(example[key], system)
            elif kind == "sft":
                if row.get("messages") is not None:
                    msgs = _turns(row["messages"], where, "messages", "user")
                else:
                    msgs = _turns(row.get("prompt"), where, "prompt", "user") + _turns(
                        row.get("completion"), where, "completion", "assistant"
                    )
                if not any(m["role"] == "assistant" for m in msgs):
                    raise CurationError(f"{where}: no assistant message to train on; add one or drop the row")
                example = {"messages": _with_system(msgs, system)}
            else:
                prompt = _turns(row.get("prompt"), where, "prompt", "user")
                chosen = _turns(row.get("chosen"), where, "chosen", "assistant")
                rejected = _turns(row.get("rejected"), where, "rejected", "assistant")
                for what, turns in (("chosen", chosen), ("rejected", rejected)):
                    if any(m["role"] != "assistant" for m in turns):
                        raise CurationError(
                            f"{where}: `{what}` must hold assistant messages only; move other turns into `prompt`"
                        )
                example = {"prompt": _with_system(prompt, system), "chosen": chosen, "rejected": rejected}
            if split is None or half_of(_first_user(example), split_eval_share, split_seed) == split:
                kept += 1
                yield example
            if limit and kept >= limit:
                return
        if not seen:
            raise CurationError(f"{path}: no rows; remove it from {kind}.data or fill it")


def load_examples(
    specs: list[str],
    kind: str,
    system_prompt: str | None = None,
    limit: int | None = None,
    split: str | None = None,
    split_eval_share: float = 0.5,
    split_seed: int = 0,
) -> list[dict]:
    """`iter_examples` as a list (small sets and tests; training uses `build_dataset`)."""
    return list(iter_examples(specs, kind, system_prompt, limit, split, split_eval_share, split_seed))


def _stamp(paths: list[Path]) -> list[tuple]:
    """(path, size, mtime) of every input file: part of the cached dataset's fingerprint, so an edited file rebuilds."""
    files = [q for p in paths for q in (sorted(p.rglob("*")) if p.is_dir() else [p]) if q.is_file()]
    return [(str(q.resolve()), q.stat().st_size, q.stat().st_mtime_ns) for q in files]


def _generate(specs, kind, system_prompt, limit, split, split_eval_share, split_seed, stamp):
    yield from iter_examples(list(specs), kind, system_prompt, limit, split, split_eval_share, split_seed)


def build_dataset(
    specs: list[str],
    kind: str,
    cache_dir: str | Path,
    system_prompt: str | None = None,
    limit: int | None = None,
    split: str | None = None,
    split_eval_share: float = 0.5,
    split_seed: int = 0,
    progress: bool = True,
):
    """The examples of `iter_examples` as a `datasets.Dataset` backed by an Arrow file in ``cache_dir``: rows are
    written as they are parsed (a writer batch at a time), so memory does not grow with the set. Cached by the
    arguments and the input files' size and mtime (a resumed run reuses it)."""
    from datasets import Dataset
    from datasets.exceptions import DatasetGenerationError
    from datasets.utils import logging as ds_logging

    kw = dict(
        specs=tuple(specs),  # tuples: datasets would take a list as shards (limit and order per shard)
        kind=kind,
        system_prompt=system_prompt,
        limit=limit,
        split=split,
        split_eval_share=split_eval_share,
        split_seed=split_seed,
        stamp=tuple(_stamp(expand(specs, kind))),
    )
    bars = ds_logging.is_progress_bar_enabled()
    if not progress:
        ds_logging.disable_progress_bar()
    try:
        ds = Dataset.from_generator(_generate, gen_kwargs=kw, cache_dir=str(cache_dir))
    except DatasetGenerationError as e:
        cause = e.__cause__ or e.__context__
        while cause is not None and not isinstance(cause, CurationError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise cause from None
        raise
    finally:
        if bars:
            ds_logging.enable_progress_bar()
    if len(ds) == 0:
        raise CurationError(f"{kind}.data: no examples left after `split: {split}`; use more data or another split")
    return ds
