"""What several test files share: running the CLI the way a user does."""

import sys

from occprep.cli import main


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
