"""Worker processes for work that splits across cores (reading big tables, CAN bus files, writing pickles).

Workers are forked where that is safe (`can_fork`): a fork starts at once, with the imports done and
the parent's records shared until written to. Elsewhere they are spawned, and code that starts them
from a script needs the usual `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import traceback
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterator, Optional

from occprep.errors import OccprepError

PARALLEL_BYTES = 64 << 20
"""Tables of at least this size are big enough that reading other files side by side in a worker
pays for the worker's start (about 0.5 s when spawned)."""


def cores() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def can_fork() -> bool:
    """Whether this process may fork a worker: on Linux (macOS's system libraries are not fork-safe), and
    while it runs no other thread (a fork copies only the calling one, and a lock another thread holds
    would never be released in the child)."""
    return sys.platform.startswith("linux") and threading.active_count() == 1


def process_pool(processes: int) -> ProcessPoolExecutor:
    """A pool of `processes` workers (use it as a context manager): forked when `can_fork`, else spawned
    (a fresh interpreter, about 0.5 s to start). Their cyclic garbage collector is off: they decode
    millions of acyclic records, and its passes over them cost a third of the time. Standard output and
    error are flushed first, so that no text waiting in their buffers is written again by a forked worker."""
    method = "fork" if can_fork() else "spawn"
    sys.stdout.flush()
    sys.stderr.flush()
    return ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context(method), initializer=gc.disable)


class Forked:
    """A function running in a forked child process (see `fork_call`)."""

    def __init__(self, pid: int, readable: int) -> None:
        self._pid: Optional[int] = pid
        self._readable = readable
        """The pipe that the child writes what it raised into."""

    def result(self) -> None:
        """Wait for the child to end; raise what it raised (caused by its `ChildTraceback`; a `RuntimeError`
        naming it when it could not be pickled), or an `OccprepError` if the child was killed."""
        if self._pid is None:
            return
        with os.fdopen(self._readable, "rb") as pipe:
            raised = pipe.read()
        _, status = os.waitpid(self._pid, 0)
        self._pid = None
        if raised:
            exc, text = pickle.loads(raised)  # what `_run_child` sent: our own child's bytes
            exc = exc if exc is not None else RuntimeError(f"in a forked worker: {text.strip().splitlines()[-1]}")
            raise exc from ChildTraceback(text)
        if status:
            raise OccprepError(f"a worker process died ({_exit_cause(status)}; out of memory?); nothing written")

    def cancel(self) -> None:
        """Kill the child, if it is still running, and wait for it to end."""
        if self._pid is None:
            return
        os.kill(self._pid, signal.SIGKILL)
        os.close(self._readable)
        os.waitpid(self._pid, 0)
        self._pid = None


class ChildTraceback(Exception):
    """The traceback of an exception raised in a forked child, as text: the cause of the exception that
    `Forked.result` raises again here, so that `--debug` shows where in the child it happened."""

    def __str__(self) -> str:
        return "\n" + self.args[0]


def fork_call(function: Callable[[], None]) -> Forked:
    """Run `function()` in a child forked from this process (only when `can_fork`): it sees this
    process's records as they are now, with nothing sent. Call `result()` or `cancel()`."""
    readable, writable = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(readable)
        _run_child(function, writable)
    os.close(writable)
    return Forked(pid, readable)


def _run_child(function: Callable[[], None], writable: int) -> None:
    """The forked child: run `function`, send back what it raised, and end without this process's
    exit handlers (they belong to the parent)."""
    raised, status = b"", 0
    try:
        function()
    except BaseException as exc:  # the parent re-raises it, whatever it is, with its traceback as the cause
        status = 1
        text = traceback.format_exc()
        try:
            raised = pickle.dumps((exc, text), protocol=4)
        except Exception:  # an exception that cannot be pickled arrives as its last line
            raised = pickle.dumps((None, text), protocol=4)
    try:
        with os.fdopen(writable, "wb") as pipe:
            pipe.write(raised)
    finally:
        os._exit(status)


def _exit_cause(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"


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
