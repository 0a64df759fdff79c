"""The toolkit's coupling to datatrove's executors, in one module: `curate classify` runs through them, tuned so one
bad shard neither stops the others nor floods the console.

It overrides executor internals (`_launch_run_for_rank`, the task-logger hooks), so it checks that the installed
datatrove is a version it was tested with (`SUPPORTED`, the same range pyproject pins) before running anything.
`install_logging` (called by `make_executor` and again in every local worker) replaces datatrove's per-task log sinks
with a console sink that shows warnings and errors as single lines; full logs, tracebacks included, still go to
`<output>/_logs/logs/`.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from copy import copy, deepcopy

import datatrove.executor.base as _dt_base
import datatrove.executor.ray as _dt_ray
import multiprocess
from datatrove.executor.local import LocalPipelineExecutor
from datatrove.utils.logging import logger
from datatrove.utils.stats import PipelineStats

from curation.core.errors import CurationError, ShardsFailed
from curation.core.lifeline import die_with_parent

SUPPORTED = (">=0.10.1", "<0.11")  # keep in step with pyproject's datatrove pin


def check_datatrove_version(installed: str | None = None) -> None:
    """A one-line error, before any work, when datatrove is outside the tested range (its internals change)."""
    import importlib.metadata

    from packaging.specifiers import SpecifierSet

    installed = installed or importlib.metadata.version("datatrove")
    spec = SpecifierSet(",".join(SUPPORTED))
    if installed not in spec:
        raise CurationError(
            f"datatrove {installed} is installed; curate classify is tested with datatrove{spec}: "
            f"pip install 'datatrove[io,processing]{spec}'"
        )


_FILE_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line} - {message}"
_console_level = "WARNING"
# Two sinks per process, added once: the console (its threshold a filter, so a task can lower it) and the running
# task's log file (a callable writing to whichever file is open). Adding a loguru sink costs ~3 ms (it rescans the
# interpreter's paths); datatrove's default re-adds two per task plus one after it, a visible share of small shards.
_sinks = {"pid": None, "console_min": 30, "task_file": None}


def _one_line(record) -> str:
    return "{level}: " + record["message"].replace("{", "{{").replace("}", "}}") + "\n"


def _to_console(record) -> bool:
    return record["level"].no >= _sinks["console_min"]


def _to_task_file(message) -> None:
    f = _sinks["task_file"]
    if f is not None:
        f.write(message)
        f.flush()


def _install_sinks() -> None:
    logger.remove()
    logger.add(sys.stderr, level=0, format=_one_line, filter=_to_console)
    logger.add(_to_task_file, level="DEBUG", format=_FILE_FORMAT, colorize=False)
    _sinks["pid"] = os.getpid()


def console_sink(level: str = "WARNING"):
    """Console shows `level` and above as single lines (no tracebacks)."""
    global _console_level
    _console_level = level
    _sinks["console_min"] = logger.level(level).no
    _install_sinks()


def _add_task_logger(logging_dir, rank, local_rank=0, node_rank=-1):
    if _sinks["pid"] != os.getpid():  # a worker process starts with datatrove's default sink
        _install_sinks()
    logfile = logging_dir.open(f"logs/task_{rank:05d}.log", "w")
    _sinks["console_min"] = logger.level(_console_level if local_rank == 0 else "ERROR").no
    _sinks["task_file"] = logfile
    logger.info(f"Launching pipeline for {rank=}")
    return logfile


def _close_task_logger(logfile):
    logger.complete()
    _sinks["task_file"] = None
    _sinks["console_min"] = logger.level(_console_level).no
    logfile.close()


def install_logging() -> None:
    """Points datatrove's task-logger hooks at ours (idempotent; each local worker process calls it too)."""
    for mod in (_dt_base, _dt_ray):
        mod.add_task_logger, mod.close_task_logger = _add_task_logger, _close_task_logger


class ShardTolerantLocalExecutor(LocalPipelineExecutor):
    """A task whose shards failed validation is left incomplete (so a rerun retries it) while the others go on.

    With N workers this process is one of them, next to a pool of N - 1: it has everything imported and starts on
    the first task at once, while a pool process spends ~0.5 s importing before its first (datatrove's own local
    executor runs N pool processes and leaves this one waiting).
    """

    def _launch_run_for_rank(self, rank, ranks_q, completed=None, completed_lock=None):
        install_logging()  # this may be a pool process that has only unpickled the executor
        try:
            return super()._launch_run_for_rank(rank, ranks_q, completed, completed_lock)
        except ShardsFailed:
            return PipelineStats()

    def _drain(self, todo, ranks_q, completed, completed_lock) -> PipelineStats:
        """Runs tasks from the shared queue until it is empty, each on a fresh copy of the pipeline (as datatrove
        does), held by a copy of this executor: the pool may still be pickling this one for its processes."""
        runner, stats = copy(self), PipelineStats()
        while True:
            try:
                rank = todo.get_nowait()
            except queue.Empty:
                return stats
            runner.pipeline = deepcopy(self.pipeline)
            stats += runner._launch_run_for_rank(rank, ranks_q, completed, completed_lock)

    def _start_helpers(self, n: int, args: tuple):
        # forkserver: each pool process dies with the forkserver, which dies with this process (forkserver_guard), so
        # a killed `curate classify` leaves nothing writing (another start method forks from this thread: no lifeline)
        fs = self.start_method == "forkserver"
        pool = multiprocess.get_context(self.start_method).Pool(
            n, initializer=die_with_parent if fs else None, initargs=(_forkserver_pid(),) if fs else ()
        )
        return pool, [pool.apply_async(self._drain, args) for _ in range(n)]

    def run(self):
        if self.depends:
            return super().run()
        self._launched = True
        ranks = self.get_incomplete_ranks(range(self.local_rank_offset, self.local_rank_offset + self.local_tasks))
        if not ranks:
            logger.info(f"Not doing anything as all {self.local_tasks} tasks have already been completed.")
            return
        self.save_executor_as_json()
        if min(self.workers, len(ranks)) == 1:  # no pool: no manager process either (datatrove starts one regardless)
            ranks_q, todo = queue.Queue(), queue.Queue()
            ranks_q.put(0)
            for rank in ranks:
                todo.put(rank)
            stats = self._drain(todo, ranks_q, _Counter(self.local_tasks - len(ranks)), threading.Lock())
            return self._finish(stats)
        from multiprocess.managers import SyncManager

        mg = SyncManager(ctx=multiprocess.get_context())  # its server process dies with this one
        mg.start(die_with_parent, (os.getpid(),))
        try:
            ranks_q, todo = mg.Queue(), mg.Queue()
            for i in range(self.workers):
                ranks_q.put(i)
            for rank in ranks:
                todo.put(rank)
            args = (todo, ranks_q, mg.Value("i", self.local_tasks - len(ranks)), mg.Lock())
            helpers = min(self.workers, len(ranks)) - 1
            with ThreadPoolExecutor(1) as starter:
                # starting a pool process waits for the forkserver's imports: this process works meanwhile
                launched = starter.submit(self._start_helpers, helpers, args) if helpers else None
                try:
                    stats = self._drain(*args)
                except BaseException:
                    if launched:
                        launched.result()[0].terminate()
                    raise
            if launched:
                pool, pending = launched.result()
                with pool:
                    for p in pending:
                        stats += p.get()
            return self._finish(stats)
        finally:
            mg.shutdown()

    def _finish(self, stats: PipelineStats) -> PipelineStats:
        with self.logging_dir.open("stats.json", "wt") as statsfile:
            stats.save_to_disk(statsfile)
        logger.success(stats.get_repr(f"All {self.local_tasks} tasks"))
        return stats


class _Counter:
    """The completed-task counter of a run without a pool (a manager's Value otherwise)."""

    def __init__(self, value: int):
        self.value = value


def start_forkserver() -> None:
    """Starts the forkserver the local pool's processes fork from, importing there once what every task needs.

    Without this each pool process imports datatrove, pyarrow, polars and fastText itself (~0.5 s of CPU apiece)
    before its first task, while one worker runs everything in-process with all of it imported already: on the
    benchmark corpus that start-up alone kept two workers well short of twice one. Started first thing, the imports
    overlap this process's own set-up and work. A forkserver already running (an earlier run in this process) is
    reused as it is.
    """
    from multiprocess import forkserver

    # fastText and pyarrow.compute (Table.cast in the writer) are imported lazily, on a worker's first shard; the
    # guard first: the forkserver dies with this process (and the pool processes with it)
    forkserver.set_forkserver_preload(
        [
            "curation.classify.forkserver_guard",
            "__main__",
            "curation.classify.executors",
            "curation.classify.steps",
            "fasttext",
            "pyarrow.compute",
        ]
    )
    os.environ["CURATE_FORKSERVER_PARENT"] = str(os.getpid())
    try:
        forkserver.ensure_running()
    finally:
        os.environ.pop("CURATE_FORKSERVER_PARENT", None)


def _forkserver_pid() -> int | None:
    """The running forkserver's pid (the parent of the pool processes), None if there is none."""
    from multiprocess import forkserver

    return getattr(forkserver._forkserver, "_forkserver_pid", None)


def make_executor(kind: str, pipeline: list, tasks: int, workers: int, logging_dir: str, extra: dict):
    check_datatrove_version()
    install_logging()
    if kind == "local":
        return ShardTolerantLocalExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=logging_dir, **extra)
    if kind == "slurm":
        from datatrove.executor.slurm import SlurmPipelineExecutor

        extra = {"time": "24:00:00", "partition": "cpu", "job_name": "curate-classify", **extra}
        return SlurmPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=logging_dir, **extra)
    if kind == "ray":
        import ray
        from datatrove.executor.ray import RayPipelineExecutor

        extra = dict(extra)
        if not ray.is_initialized():  # address "auto" joins a running cluster; none starts a local instance
            ray.init(
                address=extra.pop("address", None),
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
            )
        extra.pop("address", None)
        extra.setdefault("mem_per_cpu_gb", 1)
        return RayPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=logging_dir, **extra)
    raise ValueError(kind)
