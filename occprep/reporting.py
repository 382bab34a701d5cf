"""Progress bars on stderr and the closing summary of a command, as text and as JSON."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional

from tqdm import tqdm

from occprep.fileio import write_json


class _Bar(tqdm):
    """tqdm without its monitor thread, so that a process that shows progress still runs one thread and
    may fork its workers (`workers.can_fork`). The monitor only shortens the pause between redraws."""

    monitor_interval = 0


class Reporter:
    """What one command run tells the user: progress while it works, a summary when done.

    `quiet` silences both; the JSON report (`report_path`) is written either way.
    """

    def __init__(self, command: str, quiet: bool = False, report_path: Optional[Path] = None) -> None:
        self.command = command
        self.quiet = quiet
        self.report_path = report_path
        self.started = time.perf_counter()
        self.stages: Dict[str, float] = {}
        """Stage name -> wall time spent in it so far, s (see `stage`)."""
        self._nested: List[float] = []
        """For each stage block now running, innermost last: the wall time of the stages run inside it, s."""

    def progress(self, iterable: Optional[Iterable] = None, *, desc: str, total: Optional[int] = None,
                 unit: str = "it") -> tqdm:
        """A tqdm bar on stderr (disabled when quiet); unit "B" counts bytes, shown as KB, MB, ..."""
        return _Bar(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, disable=self.quiet,
                    dynamic_ncols=True, leave=False, unit_scale=unit == "B", unit_divisor=1024)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Add the wall time of the block to `stages[name]` (the breakdown the JSON report carries), less
        that of the stages run inside it, which count as theirs: the stages never count a second twice."""
        started = time.perf_counter()
        self._nested.append(0.0)
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.stages[name] = self.stages.get(name, 0.0) + elapsed - self._nested.pop()
            if self._nested:
                self._nested[-1] += elapsed

    def info(self, line: str) -> None:
        """One line of narration on stderr (silenced when quiet)."""
        if not self.quiet:
            print(line, file=sys.stderr)

    @property
    def elapsed(self) -> float:
        """Wall time since the run started, s."""
        return time.perf_counter() - self.started

    def finish(self, summary: dict, lines: List[str]) -> None:
        """Print the summary `lines` and write `summary` (plus command and wall time) as JSON."""
        for line in lines:
            self.info(line)
        if self.report_path is not None:
            stages = {name: round(seconds, 3) for name, seconds in self.stages.items()}
            write_json(self.report_path, {"command": self.command, "wall_time_s": round(self.elapsed, 3),
                                          **({"stages_s": stages} if stages else {}), **summary})
