"""Datatrove executors for `curate classify`, tuned so one bad shard neither stops the others nor floods the console.

Importing this module (which every worker does, to unpickle these classes) installs a console log sink that shows
warnings and errors as single lines; full logs, tracebacks included, still go to `<output>/_logs/logs/`.
"""

from __future__ import annotations

import sys

import datatrove.executor.base as _dt_base
import datatrove.executor.ray as _dt_ray
from datatrove.executor.local import LocalPipelineExecutor
from datatrove.utils.logging import logger
from datatrove.utils.stats import PipelineStats

from curation.errors import ShardsFailed

_FILE_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line} - {message}"
_console_level = "WARNING"


def _one_line(record) -> str:
    return "{level}: " + record["message"].replace("{", "{{").replace("}", "}}") + "\n"


def console_sink(level: str = "WARNING"):
    """Console shows `level` and above as single lines (no tracebacks)."""
    global _console_level
    _console_level = level
    logger.remove()
    logger.add(sys.stderr, level=level, format=_one_line)


def _add_task_logger(logging_dir, rank, local_rank=0, node_rank=-1):
    logger.remove()
    logfile = logging_dir.open(f"logs/task_{rank:05d}.log", "w")
    logger.add(sys.stderr, level=_console_level if local_rank == 0 else "ERROR", format=_one_line)
    logger.add(logfile, level="DEBUG", format=_FILE_FORMAT, colorize=False)
    logger.info(f"Launching pipeline for {rank=}")
    return logfile


def _close_task_logger(logfile):
    logger.complete()
    console_sink(_console_level)
    logfile.close()


for _mod in (_dt_base, _dt_ray):
    _mod.add_task_logger, _mod.close_task_logger = _add_task_logger, _close_task_logger


class ShardTolerantLocalExecutor(LocalPipelineExecutor):
    """A task whose shards failed validation is left incomplete (so a rerun retries it) while the others go on."""

    def _launch_run_for_rank(self, rank, ranks_q, completed=None, completed_lock=None):
        try:
            return super()._launch_run_for_rank(rank, ranks_q, completed, completed_lock)
        except ShardsFailed:
            return PipelineStats()


def make_executor(kind: str, pipeline: list, tasks: int, workers: int, logging_dir: str, extra: dict):
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
            ray.init(address=extra.pop("address", None), include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        extra.pop("address", None)
        extra.setdefault("mem_per_cpu_gb", 1)
        return RayPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=logging_dir, **extra)
    raise ValueError(kind)
