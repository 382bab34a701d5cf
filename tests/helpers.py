"""What several test files share: running the CLI the way a user does, comparing loaded pickles."""

import contextlib
import hashlib
import os
import sys
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from occprep.cli import cli, main


def digest(path: Path) -> str:
    """The SHA-256 of a file. Tests compare files by digest: a failed comparison of whole pickles' bytes
    makes pytest diff megabytes of reprs, which takes a quarter of an hour under CI (no truncation)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def digests(folder: Path, pattern: str = "*") -> dict:
    """Relative path (posix) -> SHA-256 of every file under `folder` whose name matches `pattern` (empty
    when `folder` does not exist)."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): digest(p) for p in sorted(folder.rglob(pattern)) if p.is_file()}


def run_cli(args, monkeypatch, capsys):
    """Run `occprep ARGS` in-process through the console entry point; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["occprep", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@contextlib.contextmanager
def working_directory(path: Path):
    """Run the block from `path`, as a user in that folder would; the previous folder comes back after."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def create_infos_in(base: Path, *args: str) -> None:
    """`occprep create-infos --version v1.0-mini --no-file-check --quiet ARGS` run from `base`; it must succeed."""
    with working_directory(base):
        result = CliRunner().invoke(cli, ["create-infos", "--version", "v1.0-mini", "--no-file-check", "--quiet",
                                          *map(str, args)], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def assert_same(actual, expected, where: str, tolerance: float = 1e-12) -> None:
    """Equal structure, keys, types and values (floats to `tolerance`, NaN equal to NaN; by default 1e-12: a
    converted yaw may differ in the last bit)."""
    if isinstance(expected, dict):
        assert list(actual) == list(expected), where
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}/{key}", tolerance)
    elif isinstance(expected, (list, tuple)):
        assert type(actual) is type(expected) and len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, f"{where}[{i}]", tolerance)
    elif isinstance(expected, np.ndarray):
        assert actual.dtype == expected.dtype and actual.shape == expected.shape, where
        if expected.dtype.kind == "f":
            np.testing.assert_allclose(actual, expected, atol=tolerance, rtol=0, err_msg=where)
        else:
            np.testing.assert_array_equal(actual, expected, err_msg=where)
    elif isinstance(expected, float):
        assert type(actual) is float and (actual == expected or abs(actual - expected) <= tolerance
                                          or (actual != actual and expected != expected)), where
    else:
        assert type(actual) is type(expected) and actual == expected, where


class DiesOnce:
    """A task function that kills its worker process the first time any process runs it (`marker`, a file
    path, records that it did), and afterwards runs `function`: a worker killed mid-task."""

    def __init__(self, function, marker: Path) -> None:
        self.function, self.marker = function, str(marker)

    def __call__(self, item):
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return self.function(item)
        os._exit(1)


class KillingEngine:
    """An engine whose first task kills its worker (`DiesOnce`)."""

    def __init__(self, engine, marker: Path) -> None:
        self.engine, self.marker = engine, marker

    def map(self, function, items, desc):
        return self.engine.map(DiesOnce(function, self.marker), items, desc)


class ElsewhereEngine:
    """An engine whose tasks run with another working directory (as on a cluster's workers)."""

    def __init__(self, engine, folder: Path) -> None:
        self.engine, self.folder = engine, folder

    def map(self, function, items, desc):
        return self.engine.map(InFolder(function, self.folder), items, desc)


class InFolder:
    """A task function that first changes its (worker) process's working directory to `folder`."""

    def __init__(self, function, folder: Path) -> None:
        self.function, self.folder = function, str(folder)

    def __call__(self, item):
        os.chdir(self.folder)
        return self.function(item)
