"""The `occprep` command line: parses flags and calls the stages; no logic of its own."""

from __future__ import annotations

import functools
import sys
import traceback
from pathlib import Path

import click

from occprep import __version__
from occprep.errors import OccprepError
from occprep.reporting import Reporter

_debug = False


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    global _debug
    _debug = _debug or value


def reporting_options(func):
    """Add --quiet, --report FILE and --debug; pass a `reporter` (Reporter) to the command."""

    @click.option("--quiet", "-q", is_flag=True, help="No progress bars and no summary.")
    @click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
                  help="Also write the summary as JSON to this file.")
    @click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
                  help="Show the full traceback on errors.")
    @functools.wraps(func)
    def wrapper(quiet: bool, report_path: Path, **kwargs):
        command = click.get_current_context().info_name
        return func(reporter=Reporter(command, quiet=quiet, report_path=report_path), **kwargs)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="occprep")
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
              help="Show the full traceback on errors.")
def cli() -> None:
    """Turn nuScenes-format datasets into temporal info pickles and merge occupancy/flow ground truth."""


def main() -> None:
    """Console entry point: one-line errors and a non-zero exit code; tracebacks only with --debug."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except OccprepError as exc:
        if _debug:
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted: nothing was written over existing outputs", err=True)
        sys.exit(130)
    except Exception as exc:
        if _debug:
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc} (a bug in occprep; rerun with --debug "
                   "for the traceback and report it)", err=True)
        sys.exit(1)
