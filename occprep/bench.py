"""`occprep bench`: wall time and peak memory of create-infos on a synthetic dataset of a given size.

Each repeat runs create-infos in its own process (as a user would) and reads that process's
peak resident memory from `os.wait4`; the report gives the median of the repeats.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Tuple

from occprep.errors import OccprepError
from occprep.reporting import Reporter
from occprep.targets import parse_targets

VERSION = "v1.0-trainval"


@dataclass(frozen=True)
class Run:
    """One create-infos process: wall time, s; CPU time (user + system), s; peak resident memory, MB."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float


def synthetic_dataset(workdir: Path, scenes: int, reporter: Reporter) -> Path:
    """`workdir/synth-<scenes>` (nuscenes/, can_bus/), synthesised once and reused afterwards while it
    holds the files the installed synth writes (`synth.FILES_VERSION`)."""
    from occprep.synth import FILES_VERSION, synthesize

    root = Path(workdir) / f"synth-{scenes}"
    marker = root / "synth-complete.json"
    if marker.is_file() and json.loads(marker.read_text()).get("files_version") == FILES_VERSION:
        reporter.info(f"reusing {root}")
        return root
    reporter.info(f"synthesising {scenes} scenes into {root} (once; reused by later runs)")
    summary = synthesize(root, VERSION, scenes=scenes, occ=(), reporter=reporter)
    marker.write_text(json.dumps({"scenes": summary.scenes, "samples": summary.samples,
                                  "files_version": FILES_VERSION}))
    return root


def run_once(root: Path, out_dir: Path, target: str = "bevformer") -> Tuple[Run, dict]:
    """Run create-infos (`--target target`) on `root` in a child process; its timing and its JSON report."""
    report = out_dir / "report.json"
    command = [sys.executable, "-m", "occprep", "create-infos", "--root-path", str(root / "nuscenes"),
               "--canbus", str(root), "--version", VERSION, "--out-dir", str(out_dir), "--no-file-check",
               "--target", target, "--quiet", "--report", str(report)]
    started = time.perf_counter()
    child = subprocess.Popen(command, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    stderr = child.stderr.read().decode(errors="replace").strip()
    child.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise OccprepError(f"create-infos failed during the benchmark: {stderr.splitlines()[-1] if stderr else status}")
    return Run(wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime, peak_rss_mb=usage.ru_maxrss / 1024), json.loads(report.read_text())


def bench(scenes: int, repeat: int, workdir: Path, reporter: Reporter,
          target: str = "bevformer") -> Tuple[dict, List[str]]:
    """Median wall time and peak memory of `repeat` create-infos runs (`--target target`) on `scenes`
    synthetic scenes."""
    if repeat < 1:
        raise OccprepError(f"--repeat {repeat}: give 1 or more")
    parse_targets(target)
    root = synthetic_dataset(workdir, scenes, reporter)
    runs: List[Run] = []
    with tempfile.TemporaryDirectory(prefix="occprep-bench-") as out:
        for _ in reporter.progress(range(repeat), desc="create-infos runs", unit="run"):
            run, report = run_once(root, Path(out), target)
            runs.append(run)
    samples = sum(report["versions"][0]["samples"].values())
    wall = statistics.median(r.wall_s for r in runs)
    cpu = statistics.median(r.cpu_s for r in runs)
    peak = statistics.median(r.peak_rss_mb for r in runs)
    summary = {"dataset": str(root), "scenes": scenes, "samples": samples, "repeat": repeat, "target": target,
               "median_wall_s": round(wall, 3), "median_cpu_s": round(cpu, 3), "median_peak_rss_mb": round(peak, 1),
               "runs": [asdict(r) for r in runs]}
    lines = [f"create-infos --target {target} on {scenes} synthetic scenes ({samples} samples), {repeat} run(s):",
             f"  {'run':>6}  {'wall s':>8}  {'cpu s':>8}  {'peak MB':>8}",
             *(f"  {i + 1:>6}  {r.wall_s:>8.2f}  {r.cpu_s:>8.2f}  {r.peak_rss_mb:>8.0f}" for i, r in enumerate(runs)),
             f"  {'median':>6}  {wall:>8.2f}  {cpu:>8.2f}  {peak:>8.0f}"]
    return summary, lines
