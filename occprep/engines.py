"""Where map tasks run: this process, a pool of local processes, or a Dask cluster (`--engine`).

An engine maps a module-level function over descriptors (small and picklable: paths and names, never
data) and yields the results in input order. A task whose worker process dies is run again, up to
`RETRIES` times; a task that raises fails the map with its error. Ray, or any other engine, is one more
class with the same `map`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import signal
import threading
from concurrent.futures import FIRST_EXCEPTION, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Dict, Iterator, Optional, Sequence, TypeVar

from occprep.errors import OccprepError
from occprep.reporting import Reporter
from occprep.workers import cores, process_pool

T = TypeVar("T")
R = TypeVar("R")

ENGINES = ("local", "dask")
RETRIES = 2
"""How many times a task whose worker process died is run again."""


class LocalEngine:
    """Tasks in this process (`workers` 1) or in up to `workers` worker processes of this machine
    (`workers.process_pool`; default: its cores); `reporter` shows progress."""

    def __init__(self, workers: Optional[int] = None, reporter: Optional[Reporter] = None) -> None:
        self.workers, self.reporter = workers or cores(), reporter or Reporter("engine", quiet=True)

    def __enter__(self) -> "LocalEngine":
        return self

    def __exit__(self, *exc) -> None:
        """Nothing to stop: each map's processes end with it."""

    def map(self, function: Callable[[T], R], items: Sequence[T], desc: str) -> Iterator[R]:
        with self.reporter.progress(total=len(items), desc=desc, unit="task") as progress:
            if self.workers <= 1 or len(items) <= 1:
                for item in items:
                    yield function(item)
                    progress.update()
                return
            results: Dict[int, R] = {}
            for attempt in range(RETRIES + 1):
                try:
                    self._run(function, items, results, progress)
                    break
                except BrokenProcessPool:
                    if attempt == RETRIES:
                        raise OccprepError(f"{desc}: a worker process died {RETRIES + 1} times (out of memory?); "
                                           "use fewer --workers") from None
                    self.reporter.info(f"{desc}: a worker process died; running its unfinished tasks again")
            for i in range(len(items)):
                yield results.pop(i)

    def _run(self, function: Callable[[T], R], items: Sequence[T], results: Dict[int, R], progress) -> None:
        """Run the items without a result into `results` (raises BrokenProcessPool when a worker dies)."""
        pending = [i for i in range(len(items)) if i not in results]
        pool = process_pool(min(self.workers, len(pending)))
        try:
            futures = {pool.submit(function, items[i]): i for i in pending}
            while futures:
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                for future in done:
                    results[futures.pop(future)] = future.result()
                    progress.update()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class DaskEngine:
    """Tasks on a Dask cluster: the one at `scheduler` (an address such as tcp://host:8786), a LocalCluster
    of `workers` processes (default: the cores) with a memory limit each (no address), or this process
    ('synchronous', for debugging and tests); `reporter` shows progress. Used as a context manager, it
    connects (or starts the cluster) once for all its maps; otherwise once per map. Needs
    `pip install 'occprep[dask]'`."""

    def __init__(self, scheduler: Optional[str] = None, workers: Optional[int] = None,
                 reporter: Optional[Reporter] = None) -> None:
        if importlib.util.find_spec("distributed") is None:
            raise OccprepError("--engine dask needs the dask extra: pip install 'occprep[dask]'")
        self.scheduler, self.workers = scheduler, workers or cores()
        self.reporter = reporter or Reporter("engine", quiet=True)
        self._connection = contextlib.ExitStack()
        self._client = None

    def __enter__(self) -> "DaskEngine":
        if self.scheduler != "synchronous":
            self._client = self._connection.enter_context(self._connect())
        return self

    def __exit__(self, *exc) -> None:
        self._client = None
        self._connection.close()

    def map(self, function: Callable[[T], R], items: Sequence[T], desc: str) -> Iterator[R]:
        import dask

        with self.reporter.progress(total=len(items), desc=desc, unit="task") as progress:
            if self.scheduler == "synchronous":
                for item in items:
                    yield dask.compute(dask.delayed(function, pure=False)(item), scheduler="synchronous")[0]
                    progress.update()
                return
            with contextlib.ExitStack() as stack:
                client = self._client or stack.enter_context(self._connect())
                results = _run_on(client, function, items, progress)
            for i in range(len(items)):
                yield results.pop(i)

    @contextlib.contextmanager
    def _connect(self):
        from distributed import Client, LocalCluster

        if self.scheduler is not None:
            try:
                client = Client(self.scheduler, timeout="20s")
            except (OSError, ValueError, TypeError) as exc:
                raise OccprepError(f"--scheduler {self.scheduler}: no Dask scheduler reached there ({exc}); give "
                                   "its address (tcp://HOST:8786), 'synchronous', or no --scheduler for a local "
                                   "cluster") from None
            with client:
                yield client
            return
        with _interrupts_here_only():
            cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True, memory_limit="auto",
                                   dashboard_address=":0", silence_logs=logging.CRITICAL)
        with cluster, Client(cluster) as client:
            yield client


@contextlib.contextmanager
def _interrupts_here_only() -> Iterator[None]:
    """Processes started in the block ignore Ctrl-C (they inherit the ignored SIGINT): it reaches this process
    alone, which stops them, instead of every worker printing its own traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_on(client, function: Callable[[T], R], items: Sequence[T], progress) -> Dict[int, R]:
    """Position -> result of every item, run on a Dask `client`. Each result leaves its worker's memory as soon
    as it is here; tasks still pending when this fails or is interrupted are cancelled."""
    from distributed import as_completed

    futures = client.map(function, items, pure=False, retries=RETRIES)
    position = {future.key: i for i, future in enumerate(futures)}
    pending = set(futures)
    completed = as_completed(futures, with_results=True)
    del futures
    results: Dict[int, R] = {}
    try:
        for future, result in completed:
            pending.discard(future)
            results[position[future.key]] = result
            progress.update()
    finally:
        if pending:
            client.cancel(list(pending))
    return results


def make_engine(name: str, scheduler: Optional[str], workers: Optional[int], reporter: Reporter):
    """The engine `--engine name` names (`workers`: default this machine's cores)."""
    if name not in ENGINES:
        raise OccprepError(f"--engine {name}: use one of {', '.join(ENGINES)}")
    if scheduler is not None and name != "dask":
        raise OccprepError("--scheduler needs --engine dask")
    return DaskEngine(scheduler, workers, reporter) if name == "dask" else LocalEngine(workers, reporter)
