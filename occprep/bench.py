"""`occprep bench`: wall time, peak memory and the stage breakdown of create-infos, on a synthetic
dataset of a given size and density or on a user's own dataset.

Each repeat runs create-infos in its own process (as a user would) and reads that process's
peak resident memory from `os.wait4` and its stage times (read, scan, CAN bus, temporal, write)
from its JSON report; the report gives the median of the repeats.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from occprep.errors import OccprepError
from occprep.fileio import read_json, write_json
from occprep.reporting import Reporter
from occprep.targets import parse_targets

VERSION = "v1.0-trainval"
STAGES = ("read", "scan", "can_bus", "file_check", "temporal", "write")
"""create-infos' stages as its report names them (`Reporter.stage`), in the order they run."""


@dataclass(frozen=True)
class Run:
    """One create-infos process: wall time, s; CPU time (user + system, its workers' included), s; peak
    resident memory of its largest process, MB; wall time per stage, s; and the peak of the memory of all
    its processes together (its workers and forked writer included), MB, sampled (`SAMPLE_S`) as their
    proportional set size, which counts the pages a forked child shares with its parent once (None where
    /proc is not there to read)."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    stages_s: Dict[str, float]
    together_mb: Optional[float] = None


SAMPLE_S = 0.05
"""Least seconds between two readings of the memory of create-infos' processes. A reading of a process of a
few GB takes the kernel about 15 ms, so the sampler waits at least nine times as long as its last reading
took: it uses at most a tenth of a core beside the run it measures."""


@dataclass(frozen=True)
class Dataset:
    """What create-infos is run on: the root with the version folder, the folder holding can_bus/."""

    root_path: Path
    canbus: Path
    version: str


def synthetic_dataset(workdir: Path, scenes: int, reporter: Reporter, boxes_per_sample: Optional[int] = None) -> Dataset:
    """`workdir/synth-<scenes>[-<boxes>boxes]` (nuscenes/, can_bus/), synthesised once and reused
    afterwards while it holds the files the installed synth writes (`synth.FILES_VERSION`)."""
    from occprep.synth import FILES_VERSION, synthesize

    name = f"synth-{scenes}" + (f"-{boxes_per_sample}boxes" if boxes_per_sample is not None else "")
    root = Path(workdir) / name
    marker = root / "synth-complete.json"
    if marker.is_file() and read_json(marker, dict).get("files_version") == FILES_VERSION:
        reporter.info(f"reusing {root}")
    else:
        reporter.info(f"synthesising {scenes} scenes into {root} (once; reused by later runs)")
        summary = synthesize(root, VERSION, scenes=scenes, occ=(), reporter=reporter,
                             boxes_per_sample=boxes_per_sample)
        write_json(marker, {"scenes": summary.scenes, "samples": summary.samples, "files_version": FILES_VERSION})
    return Dataset(root / "nuscenes", root, VERSION)


def user_dataset(root_path: Path, version: str, canbus: Optional[Path]) -> Dataset:
    """A dataset given with `--dataset ROOT`: `ROOT/<version>/` must hold the tables; the CAN bus folder
    is `--canbus`, else ROOT or its parent, whichever holds can_bus/."""
    root_path = Path(root_path)
    if not (root_path / version).is_dir():
        raise OccprepError(f"--dataset {root_path}: no {version}/ folder in it; pass the dataset root that holds "
                           f"the version folder (and --version if it is not {VERSION})")
    if canbus is None:
        canbus = next((folder for folder in (root_path, root_path.parent) if (folder / "can_bus").is_dir()), None)
        if canbus is None:
            raise OccprepError(f"--dataset {root_path}: no can_bus/ in it or beside it; pass --canbus DIR (the "
                               "folder that contains can_bus/)")
    return Dataset(root_path, Path(canbus), version)


def run_once(dataset: Dataset, out_dir: Path, target: str = "bevformer") -> Tuple[Run, dict]:
    """Run create-infos (`--target target`) on `dataset` in a child process; its timing and its JSON report."""
    report = out_dir / "report.json"
    command = [sys.executable, "-m", "occprep", "create-infos", "--root-path", str(dataset.root_path),
               "--canbus", str(dataset.canbus), "--version", dataset.version, "--out-dir", str(out_dir),
               "--no-file-check", "--target", target, "--quiet", "--report", str(report)]
    started = time.perf_counter()
    child = subprocess.Popen(command, stderr=subprocess.PIPE)
    together = None
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        sampled = time.perf_counter()
        memory = _proportional_mb(child.pid)
        together = max(together or 0.0, memory) if memory is not None else together
        time.sleep(max(SAMPLE_S, 9 * (time.perf_counter() - sampled)))
    wall = time.perf_counter() - started
    stderr = child.stderr.read().decode(errors="replace").strip()
    child.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise OccprepError(f"create-infos failed during the benchmark: {stderr.splitlines()[-1] if stderr else status}")
    summary = read_json(report, dict)
    return Run(wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime, peak_rss_mb=usage.ru_maxrss / 1024,
               stages_s=summary.get("stages_s", {}), together_mb=together), summary


def _proportional_mb(pid: int) -> Optional[float]:
    """The proportional set size of process `pid` and of every process it started, MB: a page that n
    processes share counts 1/n in each (from /proc/PID/smaps_rollup; None where there is none to read, as on
    macOS, or when the process is gone)."""
    pids, total = [pid], 0
    try:
        while pids:
            current = pids.pop()
            with open(f"/proc/{current}/smaps_rollup") as rollup:
                total += next(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pids += [int(child) for child in children.read().split()]
    except (OSError, ValueError, StopIteration):
        return None
    return total / 1024


def _mb(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.0f}"


def bench(scenes: int, repeat: int, workdir: Path, reporter: Reporter, target: str = "bevformer",
          dataset: Optional[Dataset] = None, boxes_per_sample: Optional[int] = None) -> Tuple[dict, List[str]]:
    """Median wall time, peak memory and stage times of `repeat` create-infos runs (`--target target`) on
    `dataset`, or on `scenes` synthetic scenes (`boxes_per_sample`: their density)."""
    if repeat < 1:
        raise OccprepError(f"--repeat {repeat}: give 1 or more")
    parse_targets(target)
    if dataset is None:
        dataset = synthetic_dataset(workdir, scenes, reporter, boxes_per_sample)
    runs: List[Run] = []
    with tempfile.TemporaryDirectory(prefix="occprep-bench-") as out:
        for _ in reporter.progress(range(repeat), desc="create-infos runs", unit="run"):
            run, report = run_once(dataset, Path(out), target)
            runs.append(run)
    versions = report["versions"]
    samples = sum(sum(v["samples"].values()) for v in versions)
    scene_count = sum(v["scenes"] for v in versions)
    wall = statistics.median(r.wall_s for r in runs)
    cpu = statistics.median(r.cpu_s for r in runs)
    peak = statistics.median(r.peak_rss_mb for r in runs)
    sampled = [r.together_mb for r in runs if r.together_mb is not None]
    together = statistics.median(sampled) if sampled else None
    stages = {stage: round(statistics.median(r.stages_s.get(stage, 0.0) for r in runs), 3)
              for stage in STAGES if any(stage in r.stages_s for r in runs)}
    summary = {"dataset": str(dataset.root_path), "version": dataset.version, "scenes": scene_count,
               "samples": samples, "repeat": repeat, "target": target, "median_wall_s": round(wall, 3),
               "median_cpu_s": round(cpu, 3), "median_peak_rss_mb": round(peak, 1),
               "median_together_mb": None if together is None else round(together, 1), "median_stages_s": stages,
               "runs": [asdict(r) for r in runs]}
    lines = [f"create-infos --target {target} on {dataset.root_path} ({dataset.version}: {scene_count} scenes, "
             f"{samples} samples), {repeat} run(s):",
             f"  {'run':>6}  {'wall s':>8}  {'cpu s':>8}  {'peak MB':>8}  {'together MB':>11}",
             *(f"  {i + 1:>6}  {r.wall_s:>8.2f}  {r.cpu_s:>8.2f}  {r.peak_rss_mb:>8.0f}  {_mb(r.together_mb):>11}"
               for i, r in enumerate(runs)),
             f"  {'median':>6}  {wall:>8.2f}  {cpu:>8.2f}  {peak:>8.0f}  {_mb(together):>11}",
             "  (peak: the largest process, resident; together: all of them, workers included, proportional, sampled)",
             "  stages (median wall s): " + ", ".join(f"{stage} {seconds:.2f}" for stage, seconds in stages.items())]
    return summary, lines
