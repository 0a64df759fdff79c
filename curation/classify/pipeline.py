"""`curate classify` as a Python API: shards -> datatrove pipeline -> attribute files + summary.json."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from curation.classify.config import ClassifyConfig
from curation.classify.models import ModelSet, resolve
from curation.core.errors import CurationError
from curation.core.shards import attribute_path, list_shards

RUN_FILE = "_run.json"
SUMMARY_FILE = "summary.json"


@dataclass
class ClassifyResult:
    output: Path
    shards: int
    done: int
    errors: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    submitted: str | None = None  # a Slurm job id: the shards are being tagged by the cluster, not yet here
    changed: list[str] = field(default_factory=list)  # shards whose input changed since their attributes were written
    regenerated: list[str] = field(default_factory=list)  # shards a finished task had written whose file is gone

    @property
    def ok(self) -> bool:
        return not self.errors and self.done == self.shards


def build_pipeline(
    cfg: ClassifyConfig, models: ModelSet, corpus_root: str, paths_file: str, output: str, run_meta: dict
):
    """reader -> the tagging stages (`curation.classify.taggers.build_taggers`) -> attribute writer."""
    from curation.classify.steps import AttributeWriter, ShardReader
    from curation.classify.taggers import build_taggers

    steps = build_taggers(cfg, models)
    columns = {}
    for s in steps:
        columns.update(s.columns())
    reader = ShardReader(
        corpus_root,
        paths_file,
        output,
        text_key=cfg.text_key,
        id_key=cfg.id_key,
        on_bad_doc=cfg.on_bad_doc,
        max_doc_chars=cfg.max_doc_chars,
    )
    return [reader, *steps, AttributeWriter(output, columns, run_meta)]


def _legacy_entries(output: Path) -> dict | None:
    """A classify output written before ownership records: its _run.json names the shards it wrote."""
    try:
        old = json.loads((output / RUN_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    rels = old.get("shards") if isinstance(old, dict) else None
    if not isinstance(rels, list):
        return None
    return {
        "files": [
            RUN_FILE,
            SUMMARY_FILE,
            *[attribute_path(r) for r in rels],
            *[attribute_path(r) + ".tmp" for r in rels],
        ],
        "trees": ["_logs", "_errors"],
    }


def _claim_output(output: Path, run: dict, overwrite: bool, inputs: list[str]):
    """An output directory belongs to one run (same config, model and shard list); resuming it is fine, mixing is not.
    --overwrite replaces an earlier classify run there, removing only the files it recorded creating."""
    from curation.core.outputs import claim

    out = claim(output, "classify", inputs=inputs, overwrite=overwrite, legacy=_legacy_entries, lock=True)
    try:
        _settle_run(out, output, run, overwrite)
    except BaseException:
        out.release()
        raise
    return out


def _settle_run(out, output: Path, run: dict, overwrite: bool) -> None:
    run_file = output / RUN_FILE
    old = None
    if run_file.is_file():
        try:
            old = json.loads(run_file.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
    if out.previous and old != run:
        if not overwrite:
            diff = sorted(k for k in set(old or {}) | set(run) if (old or {}).get(k) != run.get(k))
            raise CurationError(
                f"{output}: holds a different classify run ({', '.join(diff)} differ); "
                "choose a new --output, or pass --overwrite to replace it (only the files that run "
                "wrote are removed)"
            )
        out.clear()
    rels = run["shards"]
    out.own(RUN_FILE, SUMMARY_FILE, *[attribute_path(r) for r in rels], *[attribute_path(r) + ".tmp" for r in rels])
    out.own("_logs", "_errors", "_progress", tree=True)
    run_file.write_text(json.dumps(run, indent=1, sort_keys=True))


def _shard_states(root: str, rels: list[str], output: Path) -> dict[str, str]:
    """Per shard: done (its attribute file was computed from the shard as it is now: same bytes), changed (from an
    earlier version of the shard, or recorded before content fingerprints), missing (never written, or removed) - the
    last two are redone."""
    from curation.core.digests import flush
    from curation.core.shards import input_fingerprint, stored_fingerprint

    states = {}
    for rel in rels:
        attr = output / attribute_path(rel)
        if not attr.is_file():
            states[rel] = "missing"
            continue
        stored = stored_fingerprint(str(attr))
        states[rel] = "done" if stored == input_fingerprint(os.path.join(root, rel), rel) else "changed"
    flush()  # the workers find these digests in the cache instead of hashing every shard again
    return states


def _reopen_tasks(logs: Path, rels: list[str], states: dict[str, str], tasks: int) -> None:
    """datatrove skips a task whose completion marker exists; a task holding a shard to redo must run again."""
    for i, rel in enumerate(rels):
        if states[rel] != "done":
            marker = logs / "completions" / f"{i % tasks:05d}"
            if marker.is_file():
                marker.unlink()


def shard_rows(root: str, rels: list[str]) -> dict[str, int | None]:
    """Rows of each shard where the format says so without reading the data (Parquet footers); None elsewhere."""
    import pyarrow.parquet as pq

    rows = {}
    for rel in rels:
        try:
            rows[rel] = pq.ParquetFile(os.path.join(root, rel)).metadata.num_rows if rel.endswith(".parquet") else None
        except Exception:  # a bad shard fails in the reader, with its own message
            rows[rel] = None
    return rows


def committed_rows(output: Path, rel: str, rows: dict[str, int | None], seen: dict[str, int]) -> int:
    """Documents of a committed shard: its input's row count where known, else its attribute file's footer (one row
    per document, whatever the input format), read once and kept in `seen`."""
    if rows.get(rel) is not None:
        return rows[rel]
    if rel not in seen:
        import pyarrow.parquet as pq

        try:
            seen[rel] = pq.ParquetFile(output / attribute_path(rel)).metadata.num_rows
        except Exception:  # being replaced by a rerun: counted on the next poll
            return 0
    return seen[rel]


def documents_done(output: Path, rows: dict[str, int | None], seen: dict[str, int] | None = None) -> tuple[int, int]:
    """(documents, shards) done so far: committed shards count whole, open ones by the writers' `_progress` files."""
    seen = {} if seen is None else seen
    committed = {r for r in rows if (output / attribute_path(r)).is_file()}
    docs = sum(committed_rows(output, r, rows, seen) for r in committed)
    for f in (output / "_progress").glob("rank-*.json") if (output / "_progress").is_dir() else ():
        try:
            p = json.loads(f.read_text())
        except (OSError, ValueError):  # being rewritten
            continue
        if p.get("shard") in rows and p["shard"] not in committed:
            docs += int(p.get("rows", 0))
    return docs, len(committed)


def estimated_total(
    root: str, rows: dict[str, int | None], done: dict[str, int], sizes: dict[str, int]
) -> tuple[int | None, bool]:
    """(documents in the run, exact?): exact where every shard's count is known (Parquet footers, or committed);
    otherwise the known counts plus the other shards' bytes at the documents per byte of the committed shards
    without a footer count (JSONL: compressed and plain alike). None until one such shard is committed."""
    unknown = [r for r, n in rows.items() if n is None and r not in done]
    known = sum(n for n in rows.values() if n is not None) + sum(done.values())
    if not unknown:
        return known, True
    measured = [r for r in done if rows.get(r) is None and sizes.get(r)]
    if not measured:
        return None, False
    per_byte = sum(done[r] for r in measured) / sum(sizes[r] for r in measured)
    return known + round(per_byte * sum(sizes.get(r, 0) for r in unknown)), False


def _progress_thread(output: Path, root: str, rels: list[str], stop: threading.Event, show: bool):
    """Polls committed attribute files and the writers' progress files; works whatever process does the work.

    Counts documents whatever the shard format (committed shards by their attribute file's row count), with docs/s
    and an ETA: the total is exact from Parquet footers, else estimated from the shards' bytes (shown as ~N).
    """
    if not show:
        return None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    rows = shard_rows(root, rels)
    sizes = {}
    for rel in rels:
        try:
            sizes[rel] = os.path.getsize(os.path.join(root, rel))
        except OSError:
            sizes[rel] = 0
    seen: dict[str, int] = {}  # committed shards without a footer count: their attribute files' row counts
    start_docs, _ = documents_done(output, rows, seen)  # a resumed run: what is already done does not count for speed
    t0 = time.monotonic()

    def loop():
        with Progress(
            TextColumn("classify"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.fields[total_text]} docs"),
            TextColumn("{task.fields[rate]} docs/s"),
            TextColumn("{task.fields[shards]} shards"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=False,
        ) as bar:
            task = bar.add_task("docs", total=None, total_text="?", rate="-", shards=f"0/{len(rels)}")

            def refresh():
                docs, shards = documents_done(output, rows, seen)
                total, exact = estimated_total(root, rows, seen, sizes)
                if total is not None:
                    total = max(total, docs)
                secs = time.monotonic() - t0
                rate = (docs - start_docs) / secs if secs > 0 else 0.0
                text = "?" if total is None else f"{total:,}" if exact else f"~{total:,}"
                bar.update(
                    task,
                    completed=docs,
                    total=total,
                    total_text=text,
                    rate=f"{rate:,.0f}",
                    shards=f"{shards}/{len(rels)}",
                )

            while True:
                refresh()
                if stop.wait(0.5):
                    refresh()
                    return

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def classify(
    corpus: str, output: str | Path, cfg: ClassifyConfig | None = None, overwrite: bool = False, progress: bool = True
) -> ClassifyResult:
    from curation.classify.executors import console_sink, make_executor, start_forkserver
    from curation.classify.steps.reader import error_path
    from curation.classify.summary import write_summary

    cfg = cfg or ClassifyConfig()
    started = time.time()
    if cfg.executor.kind == "local" and cfg.executor.workers > 1:
        start_forkserver()
    if not any(ch in corpus for ch in "*?[") and not os.path.exists(corpus):
        raise CurationError(f"{corpus}: does not exist; pass a directory, file or glob of shards")
    root, rels = list_shards(corpus)
    if not rels:
        raise CurationError(
            f"{corpus}: no shards found (expected *.parquet, *.jsonl or *.jsonl.gz); check the path or glob"
        )
    models = resolve(cfg.model)
    output = Path(output).absolute()
    run = {
        "corpus": root,
        "shards": rels,
        "config": cfg.fingerprint(),
        "model_card_sha256": hashlib.sha256(json.dumps(models.card, sort_keys=True).encode()).hexdigest(),
    }
    owned = _claim_output(output, run, overwrite, [corpus if os.path.isfile(corpus) else root])
    try:  # one writer at a time: a second classify into this output is refused until this one ends
        owned.remove_tree(
            "_progress"
        )  # the writers' progress files of an earlier attempt (its own; nothing else there)
        logs = output / "_logs"
        logs.mkdir(exist_ok=True)
        states = _shard_states(root, rels, output)
        paths_file = logs / "paths.txt"
        paths_file.write_text("".join(r + "\n" for r in rels))
        run_meta = {"model": models.name, "model_card": models.card.get("id"), "seed": cfg.seed}
        pipeline = build_pipeline(cfg, models, root, str(paths_file), str(output), run_meta)
        tasks = min(cfg.executor.tasks or len(rels), len(rels))
        completed = {
            f"{i % tasks:05d}" for i in range(len(rels)) if (logs / "completions" / f"{i % tasks:05d}").is_file()
        }
        changed = [r for r in rels if states[r] == "changed"]
        regenerated = [r for i, r in enumerate(rels) if states[r] == "missing" and f"{i % tasks:05d}" in completed]
        _reopen_tasks(logs, rels, states, tasks)
        extra = dict(
            cfg.executor.slurm
            if cfg.executor.kind == "slurm"
            else cfg.executor.ray
            if cfg.executor.kind == "ray"
            else {}
        )
        executor = make_executor(cfg.executor.kind, pipeline, tasks, min(cfg.executor.workers, tasks), str(logs), extra)
        if min(cfg.executor.workers, tasks) > 1:  # one core per task: polars would otherwise start a pool per task
            os.environ["POLARS_MAX_THREADS"] = "1"
        console_sink("WARNING")
        stop = threading.Event()
        thread = _progress_thread(output, root, rels, stop, progress and cfg.executor.kind != "slurm")
        crash = None
        try:
            executor.run()
        except Exception as e:  # failed shards are reported from _errors/; anything else is re-raised below
            crash = e
        finally:
            stop.set()
            if thread:
                thread.join()
        errors = sorted(e.read_text().strip() for e in (output / error_path(r) for r in rels) if e.is_file())
        if crash is not None and not errors:
            raise crash
        done = sum((output / attribute_path(r)).is_file() for r in rels)
        summary = write_summary(output, rels, cfg, models, elapsed=time.time() - started, errors=errors)
        job = getattr(executor, "job_id", None)  # Slurm: sbatch returned; -1 when nothing needed launching
        submitted = str(job) if cfg.executor.kind == "slurm" and job not in (None, -1) and done < len(rels) else None
        return ClassifyResult(
            output=output,
            shards=len(rels),
            done=done,
            errors=errors,
            summary=summary,
            submitted=submitted,
            changed=changed,
            regenerated=regenerated,
        )
    finally:
        owned.release()
