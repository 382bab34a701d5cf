"""Worker processes for work that splits across cores (reading big tables, CAN bus files, writing pickles).

Workers are forked where that is safe (`can_fork`): a fork starts at once, with the imports done and
the parent's records shared until written to. Elsewhere they are spawned, and code that starts them
from a script needs the usual `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import multiprocessing
import os
import pickle
import shutil
import signal
import sys
import tempfile
import threading
import traceback
from concurrent.futures import Executor, ProcessPoolExecutor, wait
from typing import Callable, Dict, Generic, Iterator, List, Optional, Sequence, Tuple, TypeVar

from occprep.errors import OccprepError

T = TypeVar("T")

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


def portions(items: Sequence[T], count: int) -> List[List[T]]:
    """`items` in at most `count` contiguous portions of nearly equal length (none empty; one if there are
    no items)."""
    count = max(1, min(count, len(items)))
    bounds = [len(items) * part // count for part in range(count + 1)]
    return [list(items[start:end]) for start, end in zip(bounds, bounds[1:])]


class SharedJobs(Generic[T]):
    """Calls submitted to a pool that this process may take over and run itself (work stealing): whoever
    runs a call first claims it, by making its claim file (`O_EXCL`, atomic across processes): a worker in
    submission order, `help` from the other end; the side that finds a call claimed passes it by. No
    future is cancelled: a pool whose worker dies with cancelled calls pending raised on them in its own
    thread before Python 3.12 (CPython gh-107219), and stopped before cleaning up. Without a temporary
    folder for the claims, the pool runs every call.

    Use as a context manager (it removes the claims); submit the calls in the order the pool should run
    them."""

    def __init__(self, pool: Executor, calls: Sequence[Callable[[], T]]) -> None:
        self._calls = list(calls)
        try:
            self._claims: Optional[str] = tempfile.mkdtemp(prefix="occprep-jobs-")
        except OSError:
            self._claims = None
        self._futures = [pool.submit(_run_claimed, self._claim_file(index), call)
                         for index, call in enumerate(self._calls)]
        self._here: Dict[int, T] = {}
        """Index -> result of the calls run in this process."""

    def __enter__(self) -> "SharedJobs[T]":
        return self

    def __exit__(self, *exc_info: object) -> None:
        wait(self._futures)  # the pool passes the calls claimed here by: only then do their claims go
        if self._claims is not None:
            shutil.rmtree(self._claims, ignore_errors=True)

    def help(self, until: Callable[[], bool] = lambda: False) -> None:
        """Run here, one at a time from the last, the calls that no worker has claimed, until there are none
        left or `until()` holds (checked before each)."""
        for index in reversed(range(len(self._calls))):
            if index in self._here:
                continue
            if until() or self._claims is None or not _claim(self._claim_file(index)):
                return
            self._here[index] = self._calls[index]()

    def results(self) -> List[T]:
        """Every call's result, in submission order: those no worker claimed are run here, the others awaited.
        A call's exception is raised here."""
        self.help()
        results = []
        for index, future in enumerate(self._futures):
            if index in self._here:
                results.append(self._here[index])
                continue
            ran, value = future.result()
            results.append(value if ran else self._calls[index]())  # claimed by no one (no room for a claim)
        return results

    def _claim_file(self, index: int) -> Optional[str]:
        return None if self._claims is None else os.path.join(self._claims, str(index))


def _claim(path: str) -> bool:
    """Whether this process made claim file `path`: not if another had, nor where it cannot be made (its
    folder is gone once the `SharedJobs` has ended, or there is no room)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except OSError:
        return False
    return True


def _run_claimed(claim: Optional[str], call: Callable[[], T]) -> Tuple[bool, Optional[T]]:
    """In a worker: (True, `call()`), or (False, None) when the call is claimed elsewhere (no `claim`: the
    worker runs every call)."""
    if claim is not None and not _claim(claim):
        return False, None
    return True, call()


class FileResult(Generic[T]):
    """A call submitted to a pool whose result comes back through a temporary file instead of the pool's
    pipe: its arrays' data out of band (pickle protocol 5), written there at once and read here in one go.
    Through the pipe, hundreds of MB cross in 64 KiB pieces, each waiting for this process's lock (the GIL)
    while it works, which took seconds. The file is in the temporary folder (`TMPDIR`) and is removed once
    read; where it cannot be made or written (a read-only folder, no room), the result takes the pipe after
    all. Use it as a context manager, which removes the file if the result was never read."""

    def __init__(self, pool: Executor, function: Callable[..., T], *args: object) -> None:
        self._path: Optional[str] = None
        with contextlib.suppress(OSError):
            handle, self._path = tempfile.mkstemp(prefix="occprep-", suffix=".result")
            os.close(handle)
        self._future = pool.submit(_result_to_file, self._path, function, *args)

    def __enter__(self) -> "FileResult[T]":
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._path is None:
            return
        if not self._future.cancel():
            wait([self._future])  # a worker still writing the file would make it anew once it is removed
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)

    def done(self) -> bool:
        return self._future.done()

    def result(self) -> T:
        """The call's result (what it raised is raised here)."""
        meta, sizes = self._future.result()
        if sizes is None:
            return meta
        data = memoryview(bytearray(sum(sizes)))
        with open(self._path, "rb") as handle:
            handle.readinto(data)
        os.unlink(self._path)
        ends = list(itertools.accumulate(sizes))
        return pickle.loads(meta, buffers=[data[end - size:end] for size, end in zip(sizes, ends)])


def _result_to_file(path: Optional[str], function: Callable[..., T], *args: object
                    ) -> Tuple[object, Optional[List[int]]]:
    """(the pickled result, the sizes of its buffers, written in order into `path`), or (the result, None)
    when there is no `path` or it cannot take them."""
    result = function(*args)
    if path is None:
        return result, None
    buffers: List[pickle.PickleBuffer] = []
    meta = pickle.dumps(result, protocol=5, buffer_callback=buffers.append)
    try:
        with open(path, "wb") as handle:
            for buffer in buffers:
                handle.write(buffer.raw())
    except OSError:
        return result, None
    return meta, [buffer.raw().nbytes for buffer in buffers]


class Forked(Generic[T]):
    """A function running in a forked child process (see `fork_call`)."""

    def __init__(self, pid: int, readable: int) -> None:
        self._pid: Optional[int] = pid
        self._readable = readable
        """The pipe that the child writes what it returned or raised into."""

    def result(self) -> T:
        """Wait for the child to end and return what the function returned; raise what it raised (caused by
        its `ChildTraceback`; a `RuntimeError` naming it when it could not be pickled), or an `OccprepError`
        if the child was killed."""
        if self._pid is None:
            raise RuntimeError("the forked child's result was taken or cancelled already")
        with os.fdopen(self._readable, "rb") as pipe:
            sent = pipe.read()
        _, status = os.waitpid(self._pid, 0)
        self._pid = None
        if os.WIFSIGNALED(status) or not sent:
            raise worker_died(_exit_cause(status))
        returned, exc, text = pickle.loads(sent)  # what `_run_child` sent: our own child's bytes
        if not text:
            return returned
        exc = exc if exc is not None else RuntimeError(f"in a forked worker: {text.strip().splitlines()[-1]}")
        raise exc from ChildTraceback(text)

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


def fork_call(function: Callable[[], T]) -> Forked[T]:
    """Run `function()` in a child forked from this process (only when `can_fork`): it sees this
    process's records as they are now, with nothing sent; what it returns comes back pickled. Call
    `result()` or `cancel()`."""
    readable, writable = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(readable)
        _run_child(function, writable)
    os.close(writable)
    return Forked(pid, readable)


def _run_child(function: Callable[[], T], writable: int) -> None:
    """The forked child: run `function`, send back (what it returned, what it raised, its traceback), and
    end without this process's exit handlers (they belong to the parent)."""
    try:
        sent, status = pickle.dumps((function(), None, ""), protocol=4), 0
    except BaseException as exc:  # the parent re-raises it, whatever it is, with its traceback as the cause
        status = 1
        text = traceback.format_exc()
        try:
            sent = pickle.dumps((None, exc, text), protocol=4)
        except Exception:  # an exception that cannot be pickled arrives as its last line
            sent = pickle.dumps((None, None, text), protocol=4)
    try:
        with os.fdopen(writable, "wb") as pipe:
            pipe.write(sent)
    finally:
        os._exit(status)


def worker_died(cause: str) -> OccprepError:
    """The error for a worker process that ended before its work did (`cause`: "killed by signal 9"), which
    is most often the system ending it for want of memory; outputs are staged, so none was written."""
    return OccprepError(f"a worker process died ({cause}; out of memory?); nothing written")


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
