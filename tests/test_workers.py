"""Forked children (`workers.fork_call`): what they raise reaches the parent, and a killed one is named."""

import os
import signal
import sys
import threading
import time

import pytest

from occprep.errors import OccprepError
from occprep.workers import ChildTraceback, can_fork, fork_call

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="occprep forks on Linux only")


def _written_by_child(path):
    def write():
        path.write_text(str(os.getpid()))
    return write


def test_the_child_runs_in_another_process_and_its_work_is_seen_after_result(tmp_path):
    marker = tmp_path / "pid"
    fork_call(_written_by_child(marker)).result()
    assert int(marker.read_text()) != os.getpid()


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
    child.result()  # nothing left to wait for


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
