"""Forked children (`workers.fork_call`): what they raise reaches the parent, and a killed one is named; jobs
shared with a pool (`SharedJobs`) and results through a file (`FileResult`)."""

import functools
import os
import shutil
import signal
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest

from occprep.errors import OccprepError
from occprep.workers import ChildTraceback, FileResult, SharedJobs, can_fork, fork_call, portions, process_pool

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="occprep forks on Linux only")


def _written_by_child(path):
    def write():
        path.write_text(str(os.getpid()))
    return write


def test_the_child_runs_in_another_process_and_its_work_is_seen_after_result(tmp_path):
    marker = tmp_path / "pid"
    fork_call(_written_by_child(marker)).result()
    assert int(marker.read_text()) != os.getpid()


def test_what_the_child_returns_comes_back():
    values = np.arange(1 << 20, dtype=np.float64)  # larger than a pipe holds at once
    returned = fork_call(lambda: {"values": values * 2, "pid": os.getpid()}).result()
    assert returned["pid"] != os.getpid()
    np.testing.assert_array_equal(returned["values"], values * 2)


def test_a_result_that_cannot_be_pickled_is_an_error_naming_it():
    with pytest.raises(Exception, match="Can't pickle|cannot pickle"):
        fork_call(lambda: (lambda: None)).result()


def test_what_the_child_raises_is_raised_here_caused_by_its_traceback_there():
    def fail():
        raise OccprepError("sample_annotation.visibility_token '' is not a visibility level")

    child = fork_call(fail)
    with pytest.raises(OccprepError, match="is not a visibility level") as raised:
        child.result()
    assert isinstance(raised.value.__cause__, ChildTraceback)
    assert "in fail\n" in str(raised.value.__cause__) and str(raised.value.__cause__).startswith("\nTraceback")


def test_an_exception_that_cannot_be_pickled_arrives_as_its_last_line_and_its_traceback():
    class Local(Exception):  # a local class cannot be pickled
        pass

    def fail():
        raise Local("deep inside")

    with pytest.raises(RuntimeError, match=r"in a forked worker: .*Local: deep inside$") as raised:
        fork_call(fail).result()
    assert "in fail\n" in str(raised.value.__cause__)


def test_a_killed_child_is_an_error_that_names_the_signal():
    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(OccprepError, match=r"a worker process died \(killed by signal 9; out of memory\?\)"):
        fork_call(die).result()


def test_cancel_ends_a_running_child_at_once():
    child = fork_call(lambda: time.sleep(60))
    started = time.perf_counter()
    child.cancel()
    assert time.perf_counter() - started < 5
    with pytest.raises(RuntimeError, match="cancelled"):
        child.result()


def test_no_fork_while_another_thread_runs(monkeypatch):
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert not can_fork()
    finally:
        stop.set()
        thread.join()
    monkeypatch.setattr(threading, "active_count", lambda: 1)  # an earlier test may have left one (dask's)
    assert can_fork()


def _job(index, gate):
    """(index, the process that ran it); job 0 waits until `gate` exists, holding the worker."""
    deadline = time.monotonic() + 30
    while index == 0 and not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return index, os.getpid()


def test_shared_jobs_run_here_those_no_worker_started_and_give_every_result_in_order(tmp_path):
    gate = tmp_path / "gate"
    calls = [functools.partial(_job, index, gate) for index in range(8)]
    with process_pool(1) as pool, SharedJobs(pool, calls) as jobs:
        deadline = time.monotonic() + 30
        while not os.path.exists(jobs._claim_file(0)) and time.monotonic() < deadline:  # the worker holds job 0
            time.sleep(0.01)
        jobs.help(until=lambda: True)
        assert not jobs._here  # `until` holds before the first: nothing taken
        jobs.help()
        gate.touch()
        results = jobs.results()
    assert [index for index, _ in results] == list(range(8)) and not os.path.exists(jobs._claims)
    ran_here = [index for index, pid in results if pid == os.getpid()]
    assert results[0][1] != os.getpid() and ran_here == list(range(8 - len(ran_here), 8)) and len(ran_here) >= 5


def test_without_a_temporary_folder_for_claims_the_pool_runs_every_job(tmp_path, monkeypatch):
    def no_folder(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("occprep.workers.tempfile.mkdtemp", no_folder)
    gate = tmp_path / "gate"
    gate.touch()
    calls = [functools.partial(_job, index, gate) for index in range(4)]
    with process_pool(1) as pool, SharedJobs(pool, calls) as jobs:
        jobs.help()
        results = jobs.results()
    assert [index for index, _ in results] == list(range(4)) and os.getpid() not in {pid for _, pid in results}


def test_jobs_no_one_could_claim_run_here(tmp_path):
    """A claim that cannot be made (its folder gone, no room): the worker passes the job by, and nothing is
    lost."""
    gate = tmp_path / "gate"
    calls = [functools.partial(_job, index, gate) for index in range(1, 5)]
    with process_pool(1) as pool:
        holding = pool.submit(_job, 0, gate)  # the worker waits for the gate
        with SharedJobs(pool, calls) as jobs:
            shutil.rmtree(jobs._claims)
            gate.touch()
            results = jobs.results()
        assert holding.result()[1] != os.getpid()
    assert results == [(index, os.getpid()) for index in range(1, 5)]


def _killed_when(gate):
    """Holds the worker until `gate` exists, then the system kills it (as for want of memory)."""
    deadline = time.monotonic() + 30
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_worker_that_dies_after_jobs_were_taken_over_leaves_no_thread_traceback_nor_thread(tmp_path):
    """Taking jobs over cancels no future: before Python 3.12 (CPython gh-107219) the pool's manager thread
    raised on cancelled ones when the worker died, printing a traceback after the one-line error, and
    stopped before ending the pool's other thread (this process could then no longer fork)."""
    gate, threads = tmp_path / "gate", threading.active_count()
    with process_pool(1) as pool:
        killed = pool.submit(_killed_when, gate)
        with SharedJobs(pool, [functools.partial(_job, index, gate) for index in range(1, 9)]) as jobs:
            deadline = time.monotonic() + 30
            while not jobs._futures[0].running() and time.monotonic() < deadline:  # queued for the worker
                time.sleep(0.01)
            jobs.help()  # takes over all: the worker holds the first job
            assert sorted(jobs._here) == list(range(8))
            gate.touch()
            with pytest.raises(BrokenProcessPool):
                killed.result()
    assert threading.active_count() <= threads


@pytest.mark.parametrize("count, parts", [(0, 1), (1, 1), (7, 3), (10, 32), (850, 32)])
def test_portions_keep_the_order_and_differ_by_at_most_one(count, parts):
    items = list(range(count))
    split = portions(items, parts)
    sizes = [len(part) for part in split]
    assert [item for part in split for item in part] == items and len(split) == max(1, min(parts, count))
    assert max(sizes) - min(sizes) <= 1 and (count == 0 or min(sizes) > 0)


def _columns(rows):
    """A result with big arrays and plain values, as `read_resolved_annotations` returns."""
    return {"sample": np.arange(rows, dtype=np.int64), "translation": np.ones((rows, 3)), "category": ["car"] * rows}


def _fails():
    raise OccprepError("sample_annotation.json: unexpected content")


def test_a_file_result_is_the_call_s_result_and_its_file_is_gone_afterwards():
    with process_pool(1) as pool:
        with FileResult(pool, _columns, 100_000) as result:
            path = result._path
            while not result.done():
                time.sleep(0.01)
            assert os.path.getsize(path) == 100_000 * 8 * 4  # the arrays' data, not through the pipe
            got = result.result()
            assert not os.path.exists(path)  # removed once read
        assert not os.path.exists(path)
    np.testing.assert_array_equal(got["sample"], np.arange(100_000))
    assert got["translation"].shape == (100_000, 3) and got["category"][-1] == "car"
    got["translation"][0] = 2.0  # writable, as an array unpickled from the pipe
    with process_pool(1) as pool, FileResult(pool, _fails) as failing:
        with pytest.raises(OccprepError, match="unexpected content"):
            failing.result()


def _columns_with_no_room(rows):
    """`_columns`, in a worker whose files can hold no more than 1 KiB (as a full disk)."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))
    return _columns(rows)


def test_a_file_result_that_finds_no_room_takes_the_pipe():
    with process_pool(1) as pool, FileResult(pool, _columns_with_no_room, 100_000) as result:
        got = result.result()
        path = result._path
    np.testing.assert_array_equal(got["sample"], np.arange(100_000))
    assert not os.path.exists(path)


def test_a_file_result_without_a_writable_temporary_folder_takes_the_pipe(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))  # as a read-only or absent TMPDIR
    with process_pool(1) as pool, FileResult(pool, _columns, 1_000) as result:
        got = result.result()
        assert result._path is None  # no file could be made
    np.testing.assert_array_equal(got["sample"], np.arange(1_000))
