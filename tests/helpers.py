"""What several test files share: running the CLI the way a user does."""

import contextlib
import os
import sys
from pathlib import Path

from click.testing import CliRunner

from occprep.cli import cli, main


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
