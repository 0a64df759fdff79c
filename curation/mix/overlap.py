"""Overlap Arrow I/O with the work around it: Parquet decoding and zstd encoding release the GIL, so on two cores
a reader thread one batch ahead (or a writer thread one bucket behind) hides most of it. Order is unchanged, so
outputs stay byte-identical; memory grows by one batch or bucket, whatever the corpus size."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
_END = object()


def prefetch(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """The same items in the same order, produced by a background thread at most `depth` ahead."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def run():
        try:
            for x in items:
                if stop.is_set():
                    return
                q.put((x, None))
            q.put((_END, None))
        except BaseException as e:  # re-raised in the consumer, with its own traceback
            q.put((_END, e))

    t = threading.Thread(target=run, daemon=True, name="mix-prefetch")
    t.start()
    try:
        while True:
            x, err = q.get()
            if err is not None:
                raise err
            if x is _END:
                return
            yield x
    finally:
        stop.set()
        while t.is_alive():  # unblock a producer waiting on a full queue, then let it finish
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.01)


class Behind:
    """Runs calls in order on one background thread, at most one call pending: `submit` waits for the previous."""

    def __init__(self):
        self._ex = ThreadPoolExecutor(1, thread_name_prefix="mix-write")
        self._last: Future | None = None

    def submit(self, fn: Callable, *args) -> None:
        self.wait()
        self._last = self._ex.submit(fn, *args)

    def wait(self) -> None:
        if self._last is not None:
            last, self._last = self._last, None
            last.result()  # re-raises the call's error here

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._ex.shutdown(wait=True)
