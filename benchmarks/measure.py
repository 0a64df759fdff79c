"""Shared by the benchmarks: run one configuration in its own process and measure its peak memory."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time


def run_measured(cmd: list[str], env: dict | None = None) -> tuple[str, float]:
    """stdout and the peak summed RSS (MB) of the process tree, sampled every 20 ms.

    (ru_maxrss would report the parent's size, since it survives fork and exec.)
    """
    import psutil

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        root, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            try:
                peak = max(peak, sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]))
            except psutil.Error:
                pass
            time.sleep(0.02)
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            sys.exit(f"{' '.join(cmd[-4:])} failed:\n{err.read()[-3000:]}")
        return out.read(), peak / 2**20
