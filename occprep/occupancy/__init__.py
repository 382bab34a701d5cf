"""Occupancy ground truth as releases lay it out: indexes by sample token, file location, checks.

One module per family of layouts, each giving a `GtLayout` (see `configs/occ-*.json` for grids,
classes and the file names consumers read):

- `openocc_v1`: OpenOcc v1 (OccNet) index JSONs naming three sparse `.npy` files per sample.
- `labels_npz`: dense `labels.npz` trees: Occ3D-nuScenes (`gts/`) and OpenOcc v2 (`openocc_v2/`).
- `voxel_lists`: sparse voxel lists named by the keyframe's LiDAR reading: SurroundOcc and
  OpenOccupancy (nuScenes-Occupancy); their indexes need the LiDAR keyframes (`keyframes`).

Published paths are found on disk with `paths.PathLocator`; `verify_samples` opens and checks the
files found, in tasks of whole scene folders mapped on an engine (`occprep.engines`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple, Union

from occprep.config import occupancy_format
from occprep.engines import DaskEngine, LocalEngine
from occprep.occupancy import labels_npz, openocc_v1, voxel_lists
from occprep.occupancy.gt import GtIndex, GtLayout, GtSample, LidarKeyframe, LidarKeyframes
from occprep.occupancy.keyframes import lidar_keyframes
from occprep.occupancy.paths import PathLocator

LAYOUTS: Dict[str, GtLayout] = {layout.name: layout for layout in (
    openocc_v1.LAYOUT, labels_npz.OCC3D, labels_npz.OPENOCC_V2, voxel_lists.SURROUNDOCC, voxel_lists.OPENOCCUPANCY)}
FORMATS = tuple(LAYOUTS)
TASK_SAMPLES = 100
"""Fewest samples of a verify task (the run's last task may hold fewer): enough work to pay for sending it."""
MAX_TASKS = 256
"""About the most verify tasks of a run: bigger runs get bigger tasks."""

__all__ = ["FORMATS", "LAYOUTS", "GtIndex", "GtLayout", "GtSample", "LidarKeyframe", "LidarKeyframes", "PathLocator",
           "VerifyTask", "lidar_keyframes", "verify_samples", "verify_task", "verify_tasks"]


@dataclass(frozen=True)
class VerifyTask:
    """One verify task: the files of consecutive samples of whole scenes, and the layout that checks them."""

    layout: str
    """A `LAYOUTS` name, which is also its `occupancy_format` name."""
    samples: Tuple[Dict[str, str], ...]
    """Each sample's files: file role -> located path."""


def verify_task(task: VerifyTask) -> List[str]:
    """Open and check the task's samples (runs in a worker); their problems, in sample order."""
    layout, fmt = LAYOUTS[task.layout], occupancy_format(task.layout)
    return [problem for files in task.samples for problem in layout.check(files, fmt)]


def verify_tasks(samples: Sequence[Tuple[str, Dict[str, str]]], layout: str) -> List[VerifyTask]:
    """`samples` ((scene name, file role -> path), in input order) cut into tasks of consecutive samples,
    cut only where the scene changes once a task has `max(TASK_SAMPLES, len / MAX_TASKS)` samples: whole
    scene folders per task when the input is grouped by scene (as create-infos writes it)."""
    size = max(TASK_SAMPLES, math.ceil(len(samples) / MAX_TASKS))
    tasks: List[VerifyTask] = []
    start = 0
    for end in range(1, len(samples) + 1):
        if end == len(samples) or (end - start >= size and samples[end][0] != samples[end - 1][0]):
            tasks.append(VerifyTask(layout, tuple(files for _, files in samples[start:end])))
            start = end
    return tasks


def verify_samples(samples: Sequence[Tuple[str, Dict[str, str]]], layout: str,
                   engine: Union[LocalEngine, DaskEngine]) -> List[str]:
    """Open and check every sample's files ((scene name, file role -> located path)) with `layout` (a
    `LAYOUTS` name), in tasks of whole scenes (`verify_tasks`) mapped on `engine` (not started when there
    is nothing to check); all problems, in input order, each naming its file."""
    tasks = verify_tasks(samples, layout)
    if not tasks:
        return []
    return [problem for found in engine.map(verify_task, tasks, desc="verify") for problem in found]
