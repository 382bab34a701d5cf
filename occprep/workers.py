"""Worker processes for work that splits across cores (reading big tables, CAN bus files).

Workers are spawned, not forked: a fork would copy the parent's memory and threads. Code that
starts them from a script needs the usual `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Iterator

PARALLEL_BYTES = 64 << 20
"""Tables of at least this size are big enough that reading other files side by side in a worker
pays for the worker's start (about 0.5 s)."""


def cores() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def spawn_pool(processes: int) -> ProcessPoolExecutor:
    """A pool of `processes` spawned workers (use it as a context manager). Their cyclic garbage collector
    is off: they decode millions of acyclic records, and its passes over them cost a third of the time."""
    return ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"), initializer=gc.disable)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while decoding or building millions of acyclic objects (its
    passes over them would cost a third of the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
